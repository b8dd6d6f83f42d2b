"""The console script as a process: it leaves through os._exit once its work is done
(skipping the interpreter's teardown), so what it printed must all be there, its exit
codes must be the documented ones, and background work must have finished."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import commit_versions

CKPTVC = [sys.executable, "-m", "ckptvc"]


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*CKPTVC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_output_is_complete_and_exit_codes_kept(workdir, cli):
    for k in range(40):
        (workdir / f"f{k:02d}.bin").write_bytes(bytes([k]) * 1000)
    cli("add", *[f"f{k:02d}.bin" for k in range(40)])
    r = _run("status", "--json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["artifacts"]) == 40  # every byte of the output arrived
    (workdir / "f00.bin.ckpt").write_text("<<<<<<< HEAD\n")
    r = _run("status", cwd=workdir)
    assert r.returncode == 2 and "f00.bin.ckpt" in r.stderr and "Traceback" not in r.stderr
    r = _run("checkout", "no-such-rev-or-path", cwd=workdir)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1


def test_checkout_process_finishes_its_background_deletes(workdir, cli):
    first, _ = commit_versions(cli, workdir, "m.bin", [b"one" * 300_000, b"two" * 300_000])
    r = _run("checkout", first, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "m.bin").read_bytes() == b"one" * 300_000
    assert list((workdir / ".ckptvc" / "tmp" / "replaced").iterdir()) == []
