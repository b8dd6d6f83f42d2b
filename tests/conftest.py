"""Shared fixtures: real git repositories (made with dulwich), real stores on disk,
small checkpoints written by hand (numpy + a safetensors header)."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dulwich import porcelain

from ckptvc.cli.main import main
from ckptvc.repo import Repo

DTYPE_CODES = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64", "int32": "I32",
               "int8": "I8", "uint8": "U8", "int16": "I16", "bool": "BOOL"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict | None = None,
                      bf16: set[str] | None = None) -> Path:
    """A safetensors file as the format spec defines it. Names in `bf16` are uint16
    arrays holding bfloat16 bits."""
    header: dict = {}
    blobs = []
    off = 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        dtype = "BF16" if bf16 and name in bf16 else DTYPE_CODES[str(arr.dtype)]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    return path


def torch_like_zip(path: Path, storages: dict[str, bytes] | list, root: str = "archive") -> None:
    """The layout torch.save writes: a zip whose storages (bytes, or arrays listed in
    key order) are stored uncompressed under ROOT/data/, ROOT being the folder torch
    names after the file."""
    if isinstance(storages, list):
        storages = {str(i): s.tobytes() for i, s in enumerate(storages)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{root}/data.pkl", b"\x80\x02}q\x00." + bytes(100))
        zf.writestr(f"{root}/version", b"3\n")
        for key, data in storages.items():
            zf.writestr(f"{root}/data/{key}", data)


def training_series(n: int, seed: int = 0, scale: int = 1) -> list[dict[str, np.ndarray]]:
    """Checkpoints that look like training: weights drift a little each step,
    Adam moments move, a frozen embedding never changes."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((256 * scale, 256)) * 0.02).astype(np.float32)
    frozen = (rng.standard_normal((512 * scale, 64)) * 0.02).astype(np.float32)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    out = []
    for _ in range(n):
        g = (rng.standard_normal(w.shape) * 0.01).astype(np.float32)
        m = (0.9 * m + 0.1 * g).astype(np.float32)
        v = (0.999 * v + 0.001 * g * g).astype(np.float32)
        w = (w - 1e-3 * m / (np.sqrt(v) + 1e-8)).astype(np.float32)
        out.append({"model.w": w.copy(), "model.frozen": frozen, "optim.w.exp_avg": m.copy(),
                    "optim.w.exp_avg_sq": v.copy(), "model.bias": np.zeros(256, np.float32),
                    "model.position_ids": np.arange(512, dtype=np.int64)})
    return out


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"ckptvc {' '.join(args)} exited {result.exit_code}:\n{result.output}")
        return result

    return run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh git work tree with ckptvc initialised and a local remote; cwd inside it."""
    root = tmp_path / "work"
    porcelain.init(str(root))
    remote = tmp_path / "remote"
    monkeypatch.chdir(root)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    Repo.init(root, str(remote)).close()
    return root


def commit_versions(cli, root: Path, name: str, contents: list[bytes]) -> list[str]:
    """Write, add and commit each content in turn at `name`; the commit ids."""
    shas = []
    for k, data in enumerate(contents):
        (root / name).write_bytes(data)
        cli("add", name)
        shas.append(cli("commit", "-m", f"v{k}").output.strip())
    return shas


def clone(src: Path, dest: Path) -> Path:
    porcelain.clone(str(src), str(dest), checkout=True).close()
    return dest


def cache_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root / ".ckptvc" / "cache" / "objects"):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total
