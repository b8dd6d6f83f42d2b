"""`ckptvc demo`: the main job end to end, on the embedded default (local cache and a
local-directory remote, no server), in a temp folder. Runs the real CLI commands,
shows each one, and checks the result byte for byte."""

from __future__ import annotations

import json
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ckptvc.ids import new_hasher


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    header: dict = {"__metadata__": metadata}
    off = 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())
    tmp.replace(path)  # as a trainer does: the new checkpoint replaces the old path


def training_run(steps: int, seed: int = 1234):
    """A small transformer-shaped model trained with AdamW: frozen embeddings, drifting
    weights, moving optimizer moments (about 19 MB per checkpoint)."""
    rng = np.random.default_rng(seed)
    shapes = {"embed.weight": (8192, 128)}
    for i in range(4):
        shapes |= {f"layer{i}.attn.qkv.weight": (384, 128), f"layer{i}.attn.out.weight": (128, 128),
                   f"layer{i}.mlp.up.weight": (512, 128), f"layer{i}.mlp.down.weight": (128, 512),
                   f"layer{i}.norm.weight": (128,)}
    params = {k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in shapes.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    for step in range(1, steps + 1):
        for _ in range(10):
            for k, p in params.items():
                if k.startswith("embed"):
                    continue  # frozen
                g = (rng.standard_normal(p.shape) * 0.01).astype(np.float32)
                m[k] = (0.9 * m[k] + 0.1 * g).astype(np.float32)
                v2[k] = (0.999 * v2[k] + 0.001 * g * g).astype(np.float32)
                params[k] = (p - 5e-4 * m[k] / (np.sqrt(v2[k]) + 1e-8) - 5e-6 * p).astype(np.float32)
        tensors = {f"model.{k}": p for k, p in params.items()}
        tensors |= {f"optim.{k}.exp_avg": m[k] for k in params if not k.startswith("embed")}
        tensors |= {f"optim.{k}.exp_avg_sq": v2[k] for k in params if not k.startswith("embed")}
        yield step * 10, tensors, 2.5 / (1 + 0.1 * step)


def _blake3(path: Path) -> str:
    h = new_hasher()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def _quiet_clone(src: Path, dest: Path) -> None:
    import io

    from dulwich import porcelain

    porcelain.clone(str(src), str(dest), checkout=True, errstream=io.BytesIO()).close()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_demo(workdir: Path | None = None, keep: bool = False, say: Callable[[str], None] = print) -> int:
    base = Path(workdir or tempfile.mkdtemp(prefix="ckptvc-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    repo, remote, clone_dir = base / "project", base / "remote", base / "fresh-clone"
    ckptvc = [sys.executable, "-m", "ckptvc.cli.main"]
    env_note = "GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com"
    import os

    env = dict(os.environ, GIT_AUTHOR_NAME="ckptvc demo", GIT_AUTHOR_EMAIL="demo@example.com", COLUMNS="120")

    def run(args: list[str], cwd: Path) -> str:
        shown = "ckptvc " + " ".join(shlex.quote(a) for a in args)
        say(f"\n$ {shown}")
        res = subprocess.run(ckptvc + args, cwd=cwd, env=env, capture_output=True, text=True)
        text = (res.stdout + res.stderr).rstrip()
        if text:
            say(text)
        if res.returncode != 0:
            raise SystemExit(f"demo failed: {shown} exited {res.returncode}")
        return res.stdout

    from dulwich import porcelain

    say(f"ckptvc demo in {base}  ({env_note})")
    porcelain.init(str(repo)).close()
    say(f"\n$ git init {repo.name}   (dulwich)")
    run(["init", "--remote", str(remote)], repo)
    ckpt = repo / "runs" / "r7" / "model.safetensors"
    ckpt.parent.mkdir(parents=True)
    tok = repo / "tokenizer"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(8192)) + "\n")
    (tok / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512, "lowercase": True}))
    (repo / "train.yaml").write_text("lr: 5.0e-4\nbatch_size: 32\noptimizer: adamw\nweight_decay: 0.01\n")
    digests, commits = [], []
    raw_total = 0
    t0 = time.perf_counter()
    for step, tensors, loss in training_run(4):
        _write_safetensors(ckpt, tensors, {"step": str(step), "loss": f"{loss:.4f}"})
        (repo / "eval.json").write_text(json.dumps({"loss": round(loss, 4), "step": step}))
        raw_total += ckpt.stat().st_size
        digests.append(_blake3(ckpt))
        say(f"\n# trainer wrote step {step}: {ckpt.relative_to(repo)} ({ckpt.stat().st_size / 2**20:.1f} MiB)")
        run(["add", str(ckpt.relative_to(repo)), "--tokenizer", "tokenizer", "--config", "train.yaml",
             "--metrics", "eval.json", "--dataset", "s3://corpus/wiki-2026@sha256:9f2c41d0", "--seed", "1234"], repo)
        commits.append(run(["commit", "-m", f"r7 step {step} loss {loss:.3f}"], repo).strip())
        if step == 20:
            run(["tag", "baseline-step20", str(ckpt.relative_to(repo)), "-m", "r7 at step 20"], repo)
    run(["push", "--all-commits"], repo)
    run(["log", str(ckpt.relative_to(repo)), "--sort", "loss"], repo)
    run(["lineage", str(ckpt.relative_to(repo)), "--ancestors"], repo)
    run(["du"], repo)
    run(["fsck", "-r", "origin", "--read-data"], repo)
    stored = _dir_bytes(remote / "objects")
    say(f"\n# {len(digests)} checkpoints, {raw_total / 2**20:.1f} MiB raw -> {stored / 2**20:.1f} MiB on the remote "
        f"({raw_total / max(stored, 1):.2f}x smaller)")

    say(f"\n$ git clone {repo.name} {clone_dir.name}   (dulwich)")
    _quiet_clone(repo, clone_dir)
    run(["status"], clone_dir)
    run(["pull"], clone_dir)
    restored = clone_dir / ckpt.relative_to(repo)
    ok_latest = _blake3(restored) == digests[-1]
    run(["checkout", commits[0]], clone_dir)
    ok_old = _blake3(restored) == digests[0]
    run(["checkout", "baseline-step20"], clone_dir)
    ok_tag = _blake3(restored) == digests[1]
    ok_tok = all((clone_dir / "tokenizer" / p.name).read_bytes() == p.read_bytes() for p in tok.iterdir())
    say(f"\n# latest checkpoint in the fresh clone: blake3 {'matches' if ok_latest else 'DIFFERS'}")
    say(f"# step-10 checkpoint ({commits[0][:10]}): blake3 {'matches' if ok_old else 'DIFFERS'}")
    say(f"# tag baseline-step20: checkpoint blake3 {'matches' if ok_tag else 'DIFFERS'}, "
        f"tokenizer {'identical' if ok_tok else 'DIFFERS'}")
    say(f"# done in {time.perf_counter() - t0:.1f}s")
    ok = ok_latest and ok_old and ok_tag and ok_tok
    if not keep and workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    else:
        say(f"# kept {base}")
    return 0 if ok else 1
