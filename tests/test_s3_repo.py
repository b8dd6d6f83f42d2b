"""Repository operations through S3 remotes on real servers (moto and SeaweedFS):
a push killed midway resumes and moves only what is missing; a corrupted remote
object is found by fsck --read-data and healed by --repair; push and pull through
a proxy that injects 500s, dropped connections and damaged bytes end in a correct
remote or a clear error, never in a corrupt object accepted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import clone, training_series, write_safetensors

from ckptvc.cli.main import main
from ckptvc.errors import CkptvcError
from ckptvc.objects.objectdb import check_envelope
from ckptvc.repo import Repo

pytest.register_assert_rewrite("s3servers")
pytest_plugins = ["s3servers"]
from s3servers import BUCKET, FaultProxy, s3_work_tree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CKPTVC = [sys.executable, "-m", "ckptvc"]


def _remote_keys(server, prefix: str) -> list[str]:
    client = server.client()
    keys, token = [], None
    while True:
        kw = {"Bucket": BUCKET, "Prefix": f"{prefix}/objects/"}
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def _flip_a_byte(server, key: str) -> None:
    """Damage a stored object in place, behind ckptvc's back (bit rot on the server)."""
    client = server.client()
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x08
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))


def _pushed_and_cloned(s3_server, tmp_path: Path, monkeypatch, versions: int = 1, chunk_size: int | None = None
                       ) -> tuple[str, Path, bytes]:
    """A work tree with `versions` checkpoints of m.safetensors committed and pushed, and
    a fresh clone of it as the cwd. Returns (remote prefix, clone, latest content)."""
    root, prefix = s3_work_tree(tmp_path, s3_server.endpoint, monkeypatch)
    if chunk_size:
        cfg = root / ".ckptvc" / "config.toml"
        cfg.write_text(cfg.read_text().replace("chunk_size = 2097152", f"chunk_size = {chunk_size}"))
    for k, t in enumerate(training_series(versions, scale=8)):
        write_safetensors(root / "m.safetensors", t)
        _cli("add", "m.safetensors")
        _cli("commit", "-m", f"step {k}")
    _cli("push", "--all-commits")
    dest = clone(root, tmp_path / "clone")
    os.chdir(dest)
    return prefix, dest, (root / "m.safetensors").read_bytes()


def _cli(*args: str, ok: bool = True):
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok and r.exit_code != 0:
        raise AssertionError(f"ckptvc {' '.join(args)} exited {r.exit_code}:\n{r.output}")
    return r


def test_s3_push_killed_midway_resumes_with_only_what_is_missing(s3_server, tmp_path, monkeypatch):
    root, prefix = s3_work_tree(tmp_path, s3_server.endpoint, monkeypatch)
    rng = np.random.default_rng(5)
    with open(root / "big.bin", "wb") as f:
        for _ in range(48):
            f.write((rng.standard_normal(1 << 18) * 0.02).astype(np.float32).tobytes())  # 48 MiB
    cfg = root / ".ckptvc" / "config.toml"
    cfg.write_text(cfg.read_text().replace("chunk_size = 2097152", "chunk_size = 262144"))  # many objects
    with Repo.open(root) as repo:
        repo.add([root / "big.bin"])
        manifest = repo.tracked()[0].pointer.manifest
        total = len(repo.objectdb(False).closure(repo.objectdb(False).get_manifest(manifest).chunk_ids())) + 1
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(CKPTVC + ["push", "-r", "origin"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(_remote_keys(s3_server, prefix)) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "push finished before it could be killed"
    # an upload the server had received in full may still land after the client died:
    # count what landed once the listing stops changing
    landed, settled = _remote_keys(s3_server, prefix), False
    while not settled:
        time.sleep(0.5)
        again = _remote_keys(s3_server, prefix)
        landed, settled = again, again == landed
    assert 0 < len(landed) < total
    assert not any(k.endswith(manifest[2:]) for k in landed)  # manifests go last
    done = subprocess.run(CKPTVC + ["push"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"pushed {total - len(landed)} objects" in done.stdout
    assert json.loads(_cli("fsck", "-r", "origin", "--read-data", "--json").output)["ok"]


def test_s3_corrupt_object_found_by_fsck_and_repaired(s3_server, tmp_path, monkeypatch):
    root, prefix = s3_work_tree(tmp_path, s3_server.endpoint, monkeypatch)
    for k, t in enumerate(training_series(2)):
        write_safetensors(root / "m.safetensors", t)
        _cli("add", "m.safetensors")
        _cli("commit", "-m", f"step {k}")
    _cli("push", "--all-commits")
    victim = _remote_keys(s3_server, prefix)[0]
    _flip_a_byte(s3_server, victim)
    r = _cli("fsck", "-r", "origin", "--read-data", "--json", ok=False)
    doc = json.loads(r.output)
    assert r.exit_code == 1 and len(doc["corrupt"]) == 1 and victim.endswith(doc["corrupt"][0]["object"][2:])
    doc = json.loads(_cli("fsck", "-r", "origin", "--read-data", "--repair", "--json").output)
    assert doc["ok"] and len(doc["repaired"]) == 1
    assert json.loads(_cli("fsck", "-r", "origin", "--read-data", "--json").output)["ok"]


def test_s3_push_and_pull_through_faults_end_correct_or_clearly_failed(s3_server, tmp_path, monkeypatch):
    # A request body damaged in transit is refused by a server that checks the checksum
    # sent with it (S3, SeaweedFS); moto stores it anyway, so it gets no such damage
    # (which request meets which fault depends on thread timing: it would be flaky)
    corrupt = 0.04 if s3_server.verifies_checksums else 0.0
    with FaultProxy(s3_server.endpoint, seed=11, error_rate=0.08, drop_rate=0.04, drop_after_rate=0.04,
                    truncate_rate=0.04, corrupt_rate=corrupt, corrupt_response_rate=0.04, max_faults=60) as proxy:
        root, prefix = s3_work_tree(tmp_path, proxy.endpoint, monkeypatch)
        series = training_series(2)
        for k, t in enumerate(series):
            write_safetensors(root / "m.safetensors", t)
            (root / "extra.bin").write_bytes(os.urandom(200_000 + k))
            _cli("add", "m.safetensors", "extra.bin")
            _cli("commit", "-m", f"step {k}")
        want = {n: (root / n).read_bytes() for n in ("m.safetensors", "extra.bin")}
        pushed = False
        for _ in range(4):  # a clear failure may happen; running again must converge
            r = _cli("push", "--all-commits", ok=False)
            assert r.exit_code in (0, 1), r.output
            if r.exit_code == 0:
                pushed = True
                break
            assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
        assert pushed
        dest = clone(root, tmp_path / "clone")
        os.chdir(dest)
        restored = False
        for _ in range(4):
            try:
                with Repo.open(dest) as repo:
                    repo.pull()
                restored = True
                break
            except CkptvcError:
                continue
        assert restored
        for n, data in want.items():
            assert (dest / n).read_bytes() == data
        assert proxy.faults > 0
    # the remote, read directly: every object whole and right
    with Repo.open(root) as repo:
        repo.config.remotes["origin"].options["endpoint_url"] = s3_server.endpoint
        from ckptvc.fsck import fsck

        report = fsck(repo, repo.remote_store("origin")[1], read_data=True)
    assert report.ok, json.dumps(report.to_dict())[:3000]


def test_s3_pull_streams_each_object_once_and_leaves_a_complete_cache(s3_server, tmp_path, monkeypatch):
    # pull from S3 reads objects through as the restore needs them: each one GET, then
    # the cache holds the version (manifest last), so a checkout works with no remote
    _, dest, want = _pushed_and_cloned(s3_server, tmp_path, monkeypatch, versions=3)
    with Repo.open(dest) as repo:
        _, store = repo.remote_store()
        gets: list[str] = []
        # every GET builds its parameters once: through boto3, or to presign the URL of
        # one sent outside it (stores/s3_direct.py), so a GET sent both ways counts twice
        store.client.meta.events.register(
            "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
        repo.pull()
        assert store.direct.gets > 0
        mid = repo.tracked()[0].pointer.manifest
    assert (dest / "m.safetensors").read_bytes() == want
    assert len(gets) == len(set(gets)), sorted(k for k in gets if gets.count(k) > 1)
    with Repo.open(dest) as repo:
        cache_db = repo.objectdb(False)
        assert cache_db.has(mid)
        needed = cache_db.closure(cache_db.get_manifest(mid).chunk_ids())
        assert not cache_db.missing(needed)
    (dest / "m.safetensors").unlink()
    with Repo.open(dest) as repo:
        repo.config.remotes["origin"].options["endpoint_url"] = "http://127.0.0.1:9"  # nothing listens
        repo.checkout()
    assert (dest / "m.safetensors").read_bytes() == want


def test_s3_pull_broken_off_keeps_no_manifest_and_the_next_pull_completes(s3_server, tmp_path, monkeypatch):
    _, dest, want = _pushed_and_cloned(s3_server, tmp_path, monkeypatch)
    with Repo.open(dest) as repo:
        _, store = repo.remote_store()
        seen = []

        def fail_late(params, **_):
            seen.append(params["Key"])
            if len(seen) > 4:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url=s3_server.endpoint)

        store.client.meta.events.register("before-parameter-build.s3.GetObject", fail_late)
        with pytest.raises(CkptvcError):
            repo.pull()
        mid = repo.tracked()[0].pointer.manifest
        assert not repo.objectdb(False).has(mid)  # a manifest in the cache means all its objects are
    assert not (dest / "m.safetensors").exists()
    with Repo.open(dest) as repo:
        repo.pull()
    assert (dest / "m.safetensors").read_bytes() == want


def test_s3_pull_killed_midway_leaves_whole_objects_and_the_next_pull_completes(s3_server, tmp_path,
                                                                                monkeypatch):
    _, dest, want = _pushed_and_cloned(s3_server, tmp_path, monkeypatch, chunk_size=65536)
    tmp_dir = dest / ".ckptvc" / "cache" / "tmp"
    proc = subprocess.Popen(CKPTVC + ["pull"], cwd=dest, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_dir.glob("*"))) < 5:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "pull finished before it could be killed"
    assert not (dest / "m.safetensors").exists()
    with Repo.open(dest) as repo:
        db = repo.objectdb(False)
        assert not db.has(repo.tracked()[0].pointer.manifest)
        for key in repo.cache.list("objects/"):  # whatever was published is whole and right
            check_envelope(repo.cache.read(key), key)
        repo.pull()
    assert (dest / "m.safetensors").read_bytes() == want


def test_s3_pull_of_a_corrupt_remote_object_fails_cleanly(s3_server, tmp_path, monkeypatch):
    # the streaming pull reads objects through into the cache: a damaged one must end the
    # pull with one clear error, no workspace file, no manifest and no bad object cached
    prefix, dest, _ = _pushed_and_cloned(s3_server, tmp_path, monkeypatch)
    client = s3_server.client()
    victim = max(_remote_keys(s3_server, prefix),
                 key=lambda k: client.head_object(Bucket=BUCKET, Key=k)["ContentLength"])
    _flip_a_byte(s3_server, victim)
    r = _cli("pull", ok=False)
    assert r.exit_code != 0 and len([ln for ln in r.output.splitlines() if ln.strip()]) == 1, r.output
    assert "corrupt" in r.output or "checksum" in r.output, r.output
    assert not (dest / "m.safetensors").exists()
    assert not list(dest.glob(".m.safetensors.*"))  # no temp file left behind
    with Repo.open(dest) as repo:
        db = repo.objectdb(False)
        assert not db.has(repo.tracked()[0].pointer.manifest)
        assert not db.has(victim.split("/objects/")[1].replace("/", ""))


def test_s3_pull_of_a_corrupt_remote_manifest_changes_nothing(s3_server, tmp_path, monkeypatch):
    # a streaming pull reads the manifests before anything else: a damaged one ends the
    # pull with one clear error before any object is read or any file written
    prefix, dest, _ = _pushed_and_cloned(s3_server, tmp_path, monkeypatch)
    with Repo.open(dest) as repo:
        mid = repo.tracked()[0].pointer.manifest
    _flip_a_byte(s3_server, f"{prefix}/objects/{mid[:2]}/{mid[2:]}")
    r = _cli("pull", ok=False)
    assert r.exit_code != 0 and len([ln for ln in r.output.splitlines() if ln.strip()]) == 1, r.output
    assert mid[:12] in r.output, r.output
    assert not (dest / "m.safetensors").exists()
    assert not list((dest / ".ckptvc" / "cache" / "objects").rglob("*"))  # nothing was read through
