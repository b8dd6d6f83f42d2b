"""Failure paths: corrupt bytes, kills, concurrent writers, missing data. The rule:
never a wrong file in the workspace, never a partial object under its final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import commit_versions, training_series, write_safetensors

from ckptvc.objects.objectdb import ObjectDB, check_envelope, key_to_id
from ckptvc.repo import Repo
from ckptvc.stores.local import LocalStore

CKPTVC = [sys.executable, "-m", "ckptvc.cli.main"]


def objects_in(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def verify_store(root: Path) -> int:
    """Every object under objects/ is whole and decodes to its id."""
    store = LocalStore(root)
    db = ObjectDB(store)
    n = 0
    for key in store.list("objects/"):
        oid = key_to_id(key)
        assert oid is not None, key
        check_envelope(store.read(key), key)
        db.get_raw(oid)
        n += 1
    return n


def _drop_remote(root: Path) -> None:
    with Repo.open(root) as repo:
        repo.remote_remove("origin")


@pytest.mark.parametrize("streaming", [False, True, "direct"],
                         ids=["small-file-path", "large-file-path", "large-file-direct-reads"])
def test_flipped_byte_in_cache_is_caught_and_workspace_kept(workdir, cli, monkeypatch, streaming):
    import threading

    import ckptvc.restore as restore_mod
    from ckptvc.stores import local

    if streaming:  # the large-file path: objects read once, a prefetcher thread ahead
        monkeypatch.setattr(restore_mod, "STREAM_MIN_BYTES", 1)
    direct_reads = []
    if streaming == "direct":  # and every object read past the page cache (O_DIRECT)
        real_direct = local.LocalStore._read_direct
        monkeypatch.setattr(local, "DIRECT_READ_MIN_BYTES", 1)
        monkeypatch.setattr(local, "_tail_cached", lambda fd, size: False)
        monkeypatch.setattr(local.LocalStore, "_read_direct",
                            lambda self, fd, size: direct_reads.append(size) or real_direct(self, fd, size))
    threads_before = threading.active_count()
    series = training_series(2)
    write_safetensors(workdir / "m.safetensors", series[0])
    cli("add", "m.safetensors")
    first = cli("commit", "-m", "0").output.strip()
    write_safetensors(workdir / "m.safetensors", series[1])
    cli("add", "m.safetensors")
    cli("commit", "-m", "1")
    _drop_remote(workdir)
    current = (workdir / "m.safetensors").read_bytes()
    with Repo.open(workdir) as repo:
        m = repo.objectdb(False).get_manifest(repo.pointers_at(first)["m.safetensors"].manifest)
    victim = workdir / ".ckptvc/cache/objects" / m.files[0].chunks[-1].id[:2] / m.files[0].chunks[-1].id[2:]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    r = cli("checkout", first, ok=False)
    assert r.exit_code == 1
    assert "corrupt" in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert (workdir / "m.safetensors").read_bytes() == current
    assert not list(workdir.glob(".m.safetensors.*.tmp"))
    assert threading.active_count() == threads_before  # no prefetcher or worker left behind
    if streaming == "direct" and local.LocalStore.reads_once_direct:
        assert direct_reads  # the corrupt object came through the direct path


def test_corrupt_cache_object_is_healed_from_remote(workdir, cli):
    (workdir / "a.bin").write_bytes(os.urandom(300_000))
    cli("add", "a.bin")
    cli("commit", "-m", "a")
    cli("push")
    for obj in objects_in(workdir / ".ckptvc/cache"):
        data = bytearray(obj.read_bytes())
        data[-1] ^= 0xFF
        obj.write_bytes(bytes(data))
    want = (workdir / "a.bin").read_bytes()
    (workdir / "a.bin").unlink()
    cli("checkout")
    assert (workdir / "a.bin").read_bytes() == want
    assert verify_store(workdir / ".ckptvc/cache") > 0


def test_corrupt_delta_base_is_detected_not_decoded(workdir, cli):
    series = training_series(3)
    commits = []
    for k in range(3):
        write_safetensors(workdir / "m.safetensors", series[k])
        cli("add", "m.safetensors")
        commits.append(cli("commit", "-m", str(k)).output.strip())
    _drop_remote(workdir)
    with Repo.open(workdir) as repo:
        db = repo.objectdb(False)
        m = db.get_manifest(repo.pointers_at(commits[0])["m.safetensors"].manifest)
        deltas = [c for c in m.files[0].chunks if db.info(c.id).base]
        assert deltas, "the drifting tensors of the oldest version should be delta-coded"
        base = db.info(deltas[0].id).base
        chain = 1
        while db.info(base).base:  # corrupt the root of the chain: the newest version's chunk
            base = db.info(base).base
            chain += 1
        assert chain == 2
        base_raw = db.get_raw(base)
    victim = workdir / ".ckptvc/cache/objects" / base[:2] / base[2:]
    raw = bytearray(victim.read_bytes())
    raw[-5] ^= 0x10
    victim.write_bytes(bytes(raw))
    current = (workdir / "m.safetensors").read_bytes()
    r = cli("checkout", commits[0], ok=False)
    assert r.exit_code == 1 and "corrupt" in r.output, r.output
    assert (workdir / "m.safetensors").read_bytes() == current
    # a well-formed object whose content is wrong (checksum of its payload right)
    # is caught by the id check, at the base and at the file
    from ckptvc.objects import codecs, envelope

    wrong = bytearray(base_raw)
    # a high byte of an element: an older float32 version needs only the high 16 bits
    # of its bases (split deltas), so damage to a base's low bytes cannot reach it
    wrong[len(wrong) // 3 // 4 * 4 + 3] ^= 0x01
    enc = codecs.encode_standalone(bytes(wrong), 4, 1)
    victim.write_bytes(envelope.pack(enc.codec, len(wrong), enc.params, enc.payload))
    r = cli("checkout", commits[0], ok=False)
    assert r.exit_code == 1 and "does not match its id" in r.output and base[:12] in r.output
    assert (workdir / "m.safetensors").read_bytes() == current


def test_truncated_object_is_detected(workdir, cli):
    (workdir / "a.bin").write_bytes(os.urandom(100_000))
    cli("add", "a.bin")
    _drop_remote(workdir)
    for obj in objects_in(workdir / ".ckptvc/cache"):
        obj.write_bytes(obj.read_bytes()[:30])
    (workdir / "a.bin").unlink()
    r = cli("checkout", ok=False)
    assert r.exit_code == 1 and "truncated" in r.output


def test_missing_remote_object_is_a_clear_error(workdir, cli, tmp_path):
    (workdir / "a.bin").write_bytes(os.urandom(100_000))
    cli("add", "a.bin")
    cli("commit", "-m", "a")
    cli("push")
    for obj in objects_in(workdir.parent / "remote"):
        obj.unlink()
    import shutil

    shutil.rmtree(workdir / ".ckptvc/cache")
    (workdir / "a.bin").unlink()
    r = cli("pull", ok=False)
    assert r.exit_code == 1 and "not on remote" in r.output


def test_object_missing_from_a_local_remote_keeps_the_workspace_file(workdir, cli):
    """The restore meets the missing object part way (objects stream in as it needs them):
    one line, exit 1, and the file in the workspace is the one that was there."""
    import shutil

    v1, v2 = os.urandom(300_000), os.urandom(300_000)
    first = commit_versions(cli, workdir, "m.bin", [v1])[0]
    cli("push")
    before = set(objects_in(workdir.parent / "remote"))
    second = commit_versions(cli, workdir, "m.bin", [v2])[0]
    cli("push")
    new = sorted(set(objects_in(workdir.parent / "remote")) - before, key=lambda p: p.stat().st_size)
    new[-1].unlink()  # v2's chunk (the larger of its two objects; the other is its manifest)
    cli("checkout", first)
    assert (workdir / "m.bin").read_bytes() == v1
    shutil.rmtree(workdir / ".ckptvc" / "cache")
    r = cli("pull", second, ok=False)
    assert r.exit_code == 1 and "missing" in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert (workdir / "m.bin").read_bytes() == v1
    assert not list(workdir.glob(".m.bin.*.tmp"))


def _big_float_file(path: Path, mib: int) -> None:
    rng = np.random.default_rng(7)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write((rng.standard_normal(1 << 18) * 0.02).astype(np.float32).tobytes())


def test_kill_during_add_leaves_a_usable_repository(workdir):
    _big_float_file(workdir / "big.bin", 400)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(CKPTVC + ["add", "big.bin"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = workdir / ".ckptvc/cache"
    deadline = time.time() + 60
    # objects wait in tmp/ until a batch is published: count both, so the kill lands
    # mid-add whether or not a batch has been published yet
    while time.time() < deadline and len(objects_in(cache)) + len(list((cache / "tmp").glob("*"))) < 20:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "add finished before it could be killed"
    assert not (workdir / "big.bin.ckpt").exists()
    verify_store(cache)  # whatever landed is whole; stray temp files are not objects
    done = subprocess.run(CKPTVC + ["add", "big.bin"], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    want = (workdir / "big.bin").read_bytes()
    (workdir / "big.bin").unlink()
    subprocess.run(CKPTVC + ["checkout", "big.bin"], cwd=workdir, env=env, check=True, capture_output=True)
    assert (workdir / "big.bin").read_bytes() == want


def test_two_processes_adding_at_once(workdir):
    series = training_series(2, scale=8)
    write_safetensors(workdir / "a.safetensors", series[0])
    write_safetensors(workdir / "b.safetensors", series[1])
    (workdir / "c.bin").write_bytes((workdir / "a.safetensors").read_bytes())  # shares every chunk
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [subprocess.Popen(CKPTVC + ["add", *names], cwd=workdir, env=env, stderr=subprocess.PIPE)
             for names in (["a.safetensors", "b.safetensors"], ["c.bin", "b.safetensors"])]
    for p in procs:
        _, errout = p.communicate(timeout=120)
        assert p.returncode == 0, errout
    verify_store(workdir / ".ckptvc/cache")
    ignored = (workdir / ".gitignore").read_text().splitlines()
    assert {"/a.safetensors", "/b.safetensors", "/c.bin"} <= set(ignored)
    for name in ("a.safetensors", "b.safetensors", "c.bin"):
        want = (workdir / name).read_bytes()
        (workdir / name).unlink()
        subprocess.run(CKPTVC + ["checkout", name], cwd=workdir, env=env, check=True, capture_output=True)
        assert (workdir / name).read_bytes() == want


def test_unwritable_remote_is_one_line_error(workdir, cli, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        target = str(blocker / "remote")
    else:  # pragma: no cover
        target = "/proc/forbidden"
    with Repo.open(workdir) as repo:
        repo.remote_add("bad", target)
    (workdir / "a.bin").write_bytes(b"x" * 1000)
    cli("add", "a.bin")
    r = cli("push", "-r", "bad", ok=False)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize("path", ["../outside.bin", "/etc/passwd"])
def test_add_outside_repository_is_refused(workdir, cli, path):
    r = cli("add", path, ok=False)
    assert r.exit_code == 2 and "outside the repository" in r.output


@pytest.mark.parametrize("where", ["bare", "no_git", "bare_subdir"])
def test_commands_outside_a_work_tree_are_one_line(tmp_path, cli, monkeypatch, where):
    from dulwich import porcelain

    d = tmp_path / "x"
    if where.startswith("bare"):
        porcelain.init(str(d), bare=True)
        if where == "bare_subdir":
            d = d / "refs"
    else:
        d.mkdir()
        if any((p / ".git").exists() for p in d.parents):
            pytest.skip("the temp directory is inside a git work tree")
    monkeypatch.chdir(d)
    r = cli("status", ok=False)
    want = "a bare git repository has no work tree" if where.startswith("bare") else "not inside a git work tree"
    assert r.exit_code == 2 and want in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("dot_git", ["empty_dir", "garbage_file", "names_missing_dir"])
def test_init_over_a_broken_dot_git_is_one_line_and_makes_nothing(tmp_path, cli, monkeypatch, dot_git):
    d = tmp_path / "w"
    d.mkdir()
    missing = tmp_path / "gone" / "gitdir"
    if dot_git == "empty_dir":
        (d / ".git").mkdir()
    else:
        (d / ".git").write_text("not a pointer\n" if dot_git == "garbage_file" else f"gitdir: {missing}\n")
    monkeypatch.chdir(d)
    r = cli("init", ok=False)
    assert r.exit_code == 2 and ".git" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in d.iterdir()) == [".git"]  # nothing made
    assert not missing.parent.exists()


def test_kill_during_checkout_leaves_a_temp_that_a_later_checkout_deletes(workdir):
    """kill -9 mid-restore: the workspace file is the old one, and the hidden temp file
    it leaves (as large as the artifact) is deleted by the next checkout into that
    directory once it is old; a young one (maybe a live restore's) and other files stay."""
    _big_float_file(workdir / "big.bin", 160)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run(CKPTVC + ["add", "big.bin"], cwd=workdir, env=env, check=True, capture_output=True)
    want = (workdir / "big.bin").read_bytes()
    (workdir / "big.bin").write_bytes(b"old content")
    proc = subprocess.Popen(CKPTVC + ["checkout", "--force", "big.bin"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.stat().st_size > 0 for p in workdir.glob(".big.bin.ckptvc-*.tmp")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "checkout finished before it could be killed"
    assert (workdir / "big.bin").read_bytes() == b"old content"
    (left,) = workdir.glob(".big.bin.ckptvc-*.tmp")
    young = workdir / ".big.bin.ckptvc-0123456789ab.tmp"
    young.write_bytes(b"a live restore's")
    mine = workdir / ".big.bin.ckptvc-notes.tmp"  # not our name pattern: never touched
    mine.write_bytes(b"user file")
    old = time.time() - 3600
    os.utime(left, (old, old))
    done = subprocess.run(CKPTVC + ["checkout", "--force", "big.bin"], cwd=workdir, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert (workdir / "big.bin").read_bytes() == want
    assert not left.exists()
    assert young.read_bytes() == b"a live restore's" and mine.read_bytes() == b"user file"


def test_kill_during_push_then_rerun_moves_only_what_is_missing(workdir):
    _big_float_file(workdir / "big.bin", 300)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run(CKPTVC + ["add", "big.bin"], cwd=workdir, env=env, check=True, capture_output=True)
    remote = workdir.parent / "remote"
    proc = subprocess.Popen(CKPTVC + ["push"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not (remote / "objects").exists() or len(objects_in(remote)) < 10):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "push finished before it could be killed"
    landed = len(objects_in(remote))
    verify_store(remote)  # whole objects only
    with Repo.open(workdir) as repo:
        manifest = repo.tracked()[0].pointer.manifest
        total = len(repo.objectdb(False).closure(repo.objectdb(False).get_manifest(manifest).chunk_ids())) + 1
    assert landed < total
    assert not (remote / "objects" / manifest[:2] / manifest[2:]).exists()  # manifests go last
    done = subprocess.run(CKPTVC + ["push"], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"pushed {total - landed} objects" in done.stdout
    assert verify_store(remote) == total


def test_disk_full_during_checkout_is_one_line_and_keeps_the_file(workdir, cli, monkeypatch):
    import errno

    import ckptvc.restore as restore

    first, _ = commit_versions(cli, workdir, "m.bin", [b"one" * 100_000, b"two" * 100_000])

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(workdir / "m.bin"))

    monkeypatch.setattr(restore, "_write_chunks", full)
    r = cli("checkout", first, ok=False)
    assert r.exit_code == 1 and "No space left on device" in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert (workdir / "m.bin").read_bytes() == b"two" * 100_000
    assert not list(workdir.glob(".m.bin.*.tmp"))


def test_full_disk_at_reservation_fails_before_any_write(workdir, cli, monkeypatch):
    import ctypes
    import errno

    import ckptvc.fileio as fileio
    import ckptvc.restore as restore

    first, _ = commit_versions(cli, workdir, "m.bin", [b"one" * 100_000, b"two" * 100_000])
    calls = []

    def no_space(fd, mode, offset, length):
        calls.append(length)
        ctypes.set_errno(errno.ENOSPC)
        return -1

    def never(*a, **k):
        raise AssertionError("wrote after the reservation failed")

    monkeypatch.setattr(fileio, "_fallocate", no_space)
    monkeypatch.setattr(restore, "STREAM_MIN_BYTES", 1)
    monkeypatch.setattr(restore, "_write_chunks", never)
    r = cli("checkout", first, ok=False)
    assert calls == [300_000]
    assert r.exit_code == 1 and "m.bin: No space left on device" in r.output and "Traceback" not in r.output
    assert (workdir / "m.bin").read_bytes() == b"two" * 100_000
    assert not list(workdir.glob(".m.bin.*.tmp"))


def test_reservation_unsupported_is_ignored(tmp_path, monkeypatch):
    import ctypes
    import errno

    import ckptvc.fileio as fileio

    def unsupported(fd, mode, offset, length):
        ctypes.set_errno(errno.EOPNOTSUPP)
        return -1

    monkeypatch.setattr(fileio, "_fallocate", unsupported)
    with open(tmp_path / "f", "wb") as f:
        fileio.reserve(f.fileno(), 1 << 20, tmp_path / "f")
        f.write(b"x")
    assert (tmp_path / "f").read_bytes() == b"x"


def test_checkout_over_a_file_moves_it_aside_and_deletes_it(workdir, cli, monkeypatch):
    import ckptvc.repo as repo_mod
    import ckptvc.restore as restore

    first, second = commit_versions(cli, workdir, "m.bin", [b"one" * 100_000, b"two" * 100_000])
    trash = workdir / ".ckptvc" / "tmp" / "replaced"
    cli("checkout", first)
    restore.wait_for_discards()
    assert (workdir / "m.bin").read_bytes() == b"one" * 100_000
    assert list(trash.iterdir()) == []  # the replaced content went, in the background
    # a killed checkout's leftover goes at the next checkout; a young one may be another's
    trash.mkdir(parents=True, exist_ok=True)
    (trash / "left.old").write_bytes(b"two" * 100_000)
    cli("checkout", second)
    restore.wait_for_discards()
    assert (trash / "left.old").exists()
    monkeypatch.setattr(repo_mod, "REPLACED_GRACE_S", -1)
    cli("checkout", first)
    restore.wait_for_discards()
    assert list(trash.iterdir()) == []
    assert (workdir / "m.bin").read_bytes() == b"one" * 100_000


def test_fsync_checkout_replaces_with_one_atomic_rename(workdir, cli, monkeypatch):
    import ckptvc.restore as restore

    first, second = commit_versions(cli, workdir, "m.bin", [b"one" * 100_000, b"two" * 100_000])
    cfg = workdir / ".ckptvc" / "config.toml"
    cfg.write_text(cfg.read_text().replace("fsync_checkout = false", "fsync_checkout = true"))
    discarded = []
    monkeypatch.setattr(restore, "discard_later", discarded.append)
    cli("checkout", first)
    assert (workdir / "m.bin").read_bytes() == b"one" * 100_000
    assert discarded == []  # nothing moved aside: the path was never absent


def test_failed_rename_into_place_puts_the_old_file_back(workdir, cli, monkeypatch):
    import errno

    first, _ = commit_versions(cli, workdir, "m.bin", [b"one" * 100_000, b"two" * 100_000])
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    r = cli("checkout", first, ok=False)
    assert r.exit_code == 1 and "Input/output error" in r.output
    assert (workdir / "m.bin").read_bytes() == b"two" * 100_000  # the old content, where it was
    assert not list(workdir.glob(".m.bin.*.tmp"))
    assert not list((workdir / ".ckptvc" / "tmp" / "replaced").iterdir())


def test_stale_temp_files_are_cleaned_young_ones_kept(workdir, cli):
    tmp = workdir / ".ckptvc" / "cache" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale, fresh = tmp / "stale.tmp", tmp / "fresh.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 100)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    (workdir / "a.bin").write_bytes(b"a" * 10)
    cli("add", "a.bin")
    assert not stale.exists() and fresh.exists()  # a young one may belong to a running writer


def test_kill_while_recoding_the_parent_loses_no_version(workdir):
    """Adding v2 re-codes v1's chunks as deltas against v2's: a kill in the middle
    must leave every object whole and decodable, v1 restorable, and the next add fine."""
    series = training_series(2, scale=100)  # ~90 MB per version, many chunks
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    write_safetensors(workdir / "m.safetensors", series[0])
    v1 = (workdir / "m.safetensors").read_bytes()
    subprocess.run(CKPTVC + ["add", "m.safetensors"], cwd=workdir, env=env, check=True, capture_output=True)
    subprocess.run(CKPTVC + ["commit", "-m", "v1"], cwd=workdir, env=env, check=True, capture_output=True)
    cache = workdir / ".ckptvc/cache"
    before = len(objects_in(cache))
    write_safetensors(workdir / "m.safetensors", series[1])
    proc = subprocess.Popen(CKPTVC + ["add", "m.safetensors"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    # new and re-coded objects wait in tmp/ until the batch is published: count both
    while time.time() < deadline and len(objects_in(cache)) + len(list((cache / "tmp").glob("*"))) < before + 4:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "add finished before it could be killed"
    verify_store(cache)  # re-coded or not, every object decodes to its id
    v2 = (workdir / "m.safetensors").read_bytes()
    _drop_remote(workdir)  # v1 must come back from the cache alone
    with Repo.open(workdir) as repo:
        repo.checkout("HEAD", force=True)
    assert (workdir / "m.safetensors").read_bytes() == v1
    (workdir / "m.safetensors").write_bytes(v2)
    done = subprocess.run(CKPTVC + ["add", "m.safetensors"], cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    verify_store(cache)
    (workdir / "m.safetensors").unlink()
    subprocess.run(CKPTVC + ["checkout", "m.safetensors"], cwd=workdir, env=env, check=True, capture_output=True)
    assert (workdir / "m.safetensors").read_bytes() == v2


class _SlowRemote(LocalStore):
    """A remote whose reads take a while, and whose first `fail_first` reads fail."""

    lends_files = False  # a network remote: objects are downloaded, not linked

    def __init__(self, root: Path, fail_first: int = 0):
        super().__init__(root)
        self.reads = 0
        self.fail_first = fail_first

    def read(self, key: str) -> bytes:
        self.reads += 1
        time.sleep(0.2)
        if self.reads <= self.fail_first:
            raise OSError("connection reset")
        return super().read(key)


def _remote_with_one_object(tmp_path: Path, fail_first: int = 0) -> tuple[_SlowRemote, str, bytes]:
    remote = _SlowRemote(tmp_path / "remote", fail_first).ensure()
    data = np.random.default_rng(3).standard_normal(50_000).astype(np.float32).tobytes()
    oid = ObjectDB(remote).put_raw(data, 4)
    remote.sync()
    return remote, oid, data


def test_readers_of_one_missing_object_share_one_download(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    remote, oid, data = _remote_with_one_object(tmp_path)
    db = ObjectDB(LocalStore(tmp_path / "cache").ensure(), [remote])
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: db.read_stored(oid), range(4)))
    assert remote.reads == 1
    assert len(set(got)) == 1 and bytes(db.get_raw(oid)) == data
    assert not db._inflight


def test_a_failed_download_lets_a_waiting_reader_download_itself(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    remote, oid, data = _remote_with_one_object(tmp_path, fail_first=1)
    db = ObjectDB(LocalStore(tmp_path / "cache").ensure(), [remote])

    def read(_):
        try:
            return db.read_stored(oid)
        except OSError:
            return None

    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(read, range(2)))
    assert got.count(None) == 1 and remote.reads == 2  # the owner failed, the waiter read it again
    assert bytes(db.get_raw(oid)) == data and not db._inflight


def test_corrupt_file_lent_by_a_local_remote_is_healed_from_the_next_remote(tmp_path):
    """A linked object shares its inode with the local remote: a bad one is replaced in
    the cache by rename from a remote with a good copy, and the lending remote's file is
    left as it was (a read never writes into a shared inode)."""
    data = np.random.default_rng(5).standard_normal(60_000).astype(np.float32).tobytes()
    near, far = LocalStore(tmp_path / "near").ensure(), LocalStore(tmp_path / "far").ensure()
    oid = ObjectDB(near).put_raw(data, 4)
    ObjectDB(far).put_raw(data, 4)
    near.sync()
    far.sync()
    (path,) = objects_in(tmp_path / "near")
    bad = bytearray(path.read_bytes())
    bad[-10] ^= 0xFF
    path.write_bytes(bytes(bad))
    cache = LocalStore(tmp_path / "cache").ensure()
    db = ObjectDB(cache, [near, far])
    stored = db.read_stored(oid)  # checked: the linked copy fails, the far one is taken
    check_envelope(stored, "test")
    assert bytes(db.get_raw(oid)) == data
    cache.sync()  # the healed copy is published (renamed over the link) by the sync
    (cached,) = objects_in(tmp_path / "cache")
    assert not os.path.samefile(cached, path) and cached.read_bytes() == stored
    assert path.read_bytes() == bytes(bad)
