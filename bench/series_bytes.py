#!/usr/bin/env python3
"""Bytes ckptvc stores for a checkpoint series, in each way a run may lay it out.

    python bench/series_bytes.py SERIES_DIR [--layout over|new|folder]

SERIES_DIR holds ckpt-* files or folders (make_workload.py's finetune/, or a
make_variants.py variant's). Each is added and committed in turn, with the Python API,
into a fresh repository:
  over    written over one path (model.safetensors, or model/ for folders)
  new     each under its own name (ckpt-000, ckpt-001, ...)
  folder  each copied into outputs/, which is tracked as one artifact
and the cache's size is printed after each, as a ratio to the raw bytes and to whole-file
dedup (what DVC and git-lfs store: identical files once).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402

from ckptvc.repo import Repo  # noqa: E402


def files_of(p: Path) -> list[Path]:
    return [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("series", type=Path)
    ap.add_argument("--layout", choices=("over", "new", "folder"), default="over")
    ap.add_argument("--tmp", type=Path, default=None, help="parent of the temp repository")
    a = ap.parse_args()
    srcs = sorted(p for p in a.series.glob("ckpt-*") if p.is_dir() or p.suffix == ".safetensors")
    if not srcs:
        ap.error(f"{a.series}: no ckpt-* files or folders")
    work = Path(tempfile.mkdtemp(prefix="ckptvc-bytes-", dir=a.tmp))
    try:
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        Repo.init(work).close()
        raw = 0
        unique: dict[str, int] = {}
        for src in srcs:
            if a.layout == "over":
                dst = work / ("model" if src.is_dir() else "model.safetensors")
            elif a.layout == "new":
                dst = work / src.name
            else:
                dst = work / "outputs" / src.name
            if dst.is_dir():
                shutil.rmtree(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
            for f in files_of(src):
                raw += f.stat().st_size
                with open(f, "rb") as fh:
                    unique[hashlib.file_digest(fh, "sha256").hexdigest()] = f.stat().st_size
            target = work / "outputs" if a.layout == "folder" else dst
            t0 = time.perf_counter()
            with Repo.open(work) as repo:
                repo.add([target])
                repo.commit(src.name)
            cache = rb.tree_bytes(work / ".ckptvc" / "cache")["apparent"]
            print(f"{src.name}: cache {cache / 2**20:8.1f} MiB = {cache / raw:.3f}x raw, "
                  f"{cache / sum(unique.values()):.3f}x whole-file dedup  (add+commit {time.perf_counter() - t0:.1f} s)",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
