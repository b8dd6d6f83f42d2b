"""End to end on real files and real stores: add -> commit -> push -> fresh clone
-> pull gives the same bytes, for awkward sizes and for checkpoint series."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
from conftest import cache_bytes, clone, commit_versions, training_series, write_safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptvc.ids import hash_bytes
from ckptvc.objects.chunking import GROUP_MAX, SMALL
from ckptvc.repo import Repo
from ckptvc.state import FileStamp

AVG = 64 << 10  # small CDC chunks so that sizes "around chunk boundaries" stay small


def _use_small_chunks(root):
    cfg = root / ".ckptvc" / "config.toml"
    cfg.write_text(cfg.read_text().replace("chunk_size = 2097152", f"chunk_size = {AVG}"))


SIZES = [0, 1, 2, 3, 7, AVG // 4 - 1, AVG // 4, AVG - 1, AVG, AVG + 1, 4 * AVG - 1, 4 * AVG, 4 * AVG + 1,
         SMALL - 1, SMALL + 1, GROUP_MAX + 3]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.sampled_from(SIZES) | st.integers(0, 600_000), min_size=1, max_size=3),
       seed=st.integers(0, 1000))
def test_round_trip_sizes_through_fresh_clone(tmp_path_factory, sizes, seed):
    base = tmp_path_factory.mktemp("rt")
    root = base / "work"
    from dulwich import porcelain

    porcelain.init(str(root))
    repo = Repo.init(root, str(base / "remote"))
    _use_small_chunks(root)
    repo.close()
    rng = np.random.default_rng(seed)
    expected = {}
    for i, size in enumerate(sizes):
        # half random, half compressible, so every codec path is exercised
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        data = data[: size // 2] + bytes(size - size // 2)
        (root / f"f{i}.bin").write_bytes(data)
        expected[f"f{i}.bin"] = data
    with Repo.open(root) as repo:
        repo.add([root / n for n in expected])
        repo.commit("data")
        repo.push()
    dest = clone(root, base / "clone")
    with Repo.open(dest) as repo:
        res = repo.pull()
    assert sorted(res.restored) == sorted(expected)
    for name, data in expected.items():
        assert (dest / name).read_bytes() == data


def test_checkpoint_series_round_trip_every_version(workdir, cli, tmp_path):
    series = training_series(4)
    commits = []
    for k, tensors in enumerate(series):
        write_safetensors(workdir / "ckpt" / "model.safetensors", tensors, {"step": str(k)})
        cli("add", "ckpt/model.safetensors")
        commits.append(cli("commit", "-m", f"step {k}").output.strip())
    cli("push", "--all-commits")
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    cli("pull")
    for k, sha in enumerate(commits):
        cli("checkout", sha)
        want = write_safetensors(tmp_path / f"want{k}.safetensors", series[k], {"step": str(k)}).read_bytes()
        assert (dest / "ckpt" / "model.safetensors").read_bytes() == want, k


def test_directory_artifact_round_trip(workdir, cli, tmp_path):
    tok = workdir / "tokenizer"
    (tok / "sub").mkdir(parents=True)
    (tok / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(5000)))
    (tok / "sub" / "merges.txt").write_bytes(os.urandom(3000))
    (tok / "empty.json").write_bytes(b"")
    cli("add", "tokenizer")
    assert (workdir / "tokenizer.ckpt").exists()
    cli("commit", "-m", "tok")
    cli("push")
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    cli("pull")
    for p in ("vocab.txt", "sub/merges.txt", "empty.json"):
        assert (dest / "tokenizer" / p).read_bytes() == (tok / p).read_bytes()
    r = cli("status", "--json")
    assert '"workspace": "clean"' in r.output


def test_a_sharded_folder_is_added_and_restored_by_one_set_of_workers(workdir, cli, monkeypatch):
    """Workers started per file each kept a malloc arena of their own: peak RSS grew
    with every shard. One add (and one checkout) of a folder runs on `jobs` threads."""
    import threading

    from ckptvc.ingest import Ingester
    from ckptvc.objects.objectdb import ObjectDB

    series = training_series(1, scale=4)[0]
    names = sorted(series)
    shards = workdir / "model"
    shards.mkdir()
    for i in range(3):
        write_safetensors(shards / f"model-{i + 1:05d}-of-00003.safetensors", {n: series[n] for n in names[i::3]})
    coders: set[threading.Thread] = set()
    store_chunk = Ingester._store_chunk

    def on_coder(self, *a, **k):
        coders.add(threading.current_thread())  # objects, not idents: idents are reused
        return store_chunk(self, *a, **k)

    monkeypatch.setattr(Ingester, "_store_chunk", on_coder)
    with Repo.open(workdir) as repo:
        jobs = repo.jobs
        repo.add(["model"])
    assert 1 <= len(coders) <= jobs
    cli("commit", "-m", "shards")
    decoders: set[threading.Thread] = set()
    get_raw = ObjectDB.get_raw

    def on_decoder(self, *a, **k):
        if threading.current_thread() is not threading.main_thread():  # manifests are read there
            decoders.add(threading.current_thread())
        return get_raw(self, *a, **k)

    want = {f.name: f.read_bytes() for f in shards.iterdir()}
    shutil.rmtree(shards)
    monkeypatch.setattr(ObjectDB, "get_raw", on_decoder)
    cli("checkout", "model")
    assert {f.name: f.read_bytes() for f in shards.iterdir()} == want
    assert 1 <= len(decoders) <= jobs


def test_copy_under_another_name_costs_almost_nothing(workdir, cli):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(25 * 2**20) * 0.02).astype(np.float32).tobytes()  # 100 MiB
    (workdir / "a.bin").write_bytes(data)
    cli("add", "a.bin")
    before = cache_bytes(workdir)
    shutil.copyfile(workdir / "a.bin", workdir / "b.bin")
    cli("add", "b.bin")
    grown = cache_bytes(workdir) - before
    assert grown < 1 << 20, grown


def test_reading_unchanged_file_again_uses_stat_cache(workdir, cli, monkeypatch):
    (workdir / "a.bin").write_bytes(os.urandom(1 << 20))
    os.utime(workdir / "a.bin", (1e9, 1e9))  # written a while ago: its stamp is not racy
    cli("add", "a.bin")
    import ckptvc.ingest as ingest

    def boom(*a, **k):
        raise AssertionError("re-read an unchanged file")

    monkeypatch.setattr(ingest.Ingester, "store_file", boom)
    r = cli("add", "a.bin")
    assert "unchanged" in r.output


def test_a_file_rewritten_within_one_clock_tick_is_not_taken_as_unchanged(workdir, cli):
    """A trainer that saves over one path can rewrite a file with the same size, inode
    and mtime (the file system's clock has not ticked): the stat cache must not call
    it unchanged. Here the tick is frozen by giving both writes the same mtime, in the
    future: the stamp is recorded as racy and the content is read again."""
    path = workdir / "m.bin"
    ahead = time.time_ns() + 3_600 * 10**9
    path.write_bytes(b"first content " * 10_000)
    os.utime(path, ns=(ahead, ahead))
    cli("add", "m.bin")
    ino = path.stat().st_ino
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(b"other content " * 10_000)
    os.utime(path, ns=(ahead, ahead))
    assert (path.stat().st_ino, path.stat().st_size) == (ino, 140_000)
    assert cli("status", "--json").output.count('"workspace": "modified"') == 1
    cli("add", "m.bin")
    with Repo.open(workdir) as repo:
        assert repo.tracked()[0].pointer.blake3 == hash_bytes(b"other content " * 10_000)


def test_a_restored_file_is_known_unchanged_without_hashing_it_again(workdir, cli):
    """The stamp a checkout records for the file it wrote is trusted, not racy: the
    next status, add or checkout knows the file without reading it again. The record
    used to fall within the clock tick of the restore's last write, and then the whole
    file was hashed again by the next command (most checkouts of a 273 MB file)."""
    shas = commit_versions(cli, workdir, "m.bin", [os.urandom(300_000), os.urandom(300_000)])
    for k in range(6):
        cli("checkout", shas[k % 2])
        st = (workdir / "m.bin").stat()
        with Repo.open(workdir) as repo:
            assert repo.state.lookup("m.bin", FileStamp.of(st)) is not None, k
        assert abs(st.st_mtime - time.time()) < 60  # still the time it was restored


def test_a_restore_that_cannot_set_the_file_times_still_restores_and_trusts_nothing(workdir, cli, monkeypatch):
    """Setting the restored file's times fails (a file system that refuses it): the
    checkout still completes with the right bytes, and the stamp it records (racy or
    not, by the clock) describes those bytes."""
    import ckptvc.restore as restore

    def refused(path):
        raise PermissionError(1, "Operation not permitted", str(path))

    data = [os.urandom(300_000), os.urandom(300_000)]
    shas = commit_versions(cli, workdir, "m.bin", data)
    with monkeypatch.context() as patched:
        patched.setattr(restore, "fs_clock_ns", refused)
        cli("checkout", shas[0])
    assert (workdir / "m.bin").read_bytes() == data[0]
    with Repo.open(workdir) as repo:
        known = repo.state.lookup("m.bin", FileStamp.of((workdir / "m.bin").stat()))
    assert known is None or known[0] == hash_bytes(data[0])
    assert cli("status", "--json").output.count('"workspace": "clean"') == 1


def test_a_write_between_the_restore_and_its_record_is_not_taken_as_the_restored_content(
        workdir, cli, monkeypatch):
    """Another process writes the file right after the restore renames it into place,
    keeping its size and setting an old mtime (as `tar x` or `rsync -t` do): the stamp
    recorded for the restored content must not describe that write."""
    import ckptvc.restore as restore

    shas = commit_versions(cli, workdir, "m.bin", [b"a" * 50_000, b"b" * 50_000])
    put_in_place = restore._put_in_place

    def and_then_another_writer(tmp, dest, trash_dir):
        put_in_place(tmp, dest, trash_dir)
        with open(dest, "r+b") as f:
            f.write(b"c" * 50_000)
        os.utime(dest, ns=(10**18, 10**18))  # 2001: not racy

    with monkeypatch.context() as patched:
        patched.setattr(restore, "_put_in_place", and_then_another_writer)
        cli("checkout", shas[0])
    assert (workdir / "m.bin").read_bytes() == b"c" * 50_000
    assert cli("status", "--json").output.count('"workspace": "modified"') == 1


def test_a_write_between_an_add_and_its_record_is_not_taken_as_the_added_content(workdir, cli, monkeypatch):
    """As above, for add: a write after the file was read and before its stamp is
    recorded, keeping the size and setting an old mtime, must not pass for the content
    that was stored."""
    from ckptvc.ingest import Ingester

    path = workdir / "m.bin"
    path.write_bytes(b"a" * 50_000)
    os.utime(path, ns=(10**18 + 10**9, 10**18 + 10**9))  # written a while ago: not racy
    store_file = Ingester.store_file

    def and_then_another_writer(self, fp, *args, **kwargs):
        stored = store_file(self, fp, *args, **kwargs)
        with open(fp, "r+b") as f:
            f.write(b"c" * 50_000)
        os.utime(fp, ns=(10**18, 10**18))
        return stored

    with monkeypatch.context() as patched:
        patched.setattr(Ingester, "store_file", and_then_another_writer)
        cli("add", "m.bin")
    assert cli("status", "--json").output.count('"workspace": "modified"') == 1


def test_without_a_readable_clock_no_stamp_is_trusted(workdir, cli):
    """The file system's clock cannot be read (the clock is a link to a path under
    /dev/null): every stamp is kept as racy, so a rewrite that keeps an old stamp is
    still found (with a clock, such a stamp is trusted, as git trusts it)."""
    (workdir / ".ckptvc" / "state").mkdir(parents=True, exist_ok=True)
    (workdir / ".ckptvc" / "state" / "clock").symlink_to("/dev/null/clock")
    path = workdir / "m.bin"
    path.write_bytes(b"first content " * 10_000)
    os.utime(path, ns=(10**18, 10**18))  # 2001: long before any clock reading
    cli("add", "m.bin")
    with open(path, "r+b") as f:
        f.write(b"other content " * 10_000)
    os.utime(path, ns=(10**18, 10**18))
    assert cli("status", "--json").output.count('"workspace": "modified"') == 1


def test_pull_or_push_of_an_unknown_path_is_one_line_and_changes_nothing(workdir, cli):
    commit_versions(cli, workdir, "m.bin", [b"one" * 1000])
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*") if ".git" not in p.parts)
    for cmd in ("pull", "fetch", "push"):
        r = cli(cmd, "no-such-file", ok=False)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and "no-such-file" in lines[0], (cmd, r.output)
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*") if ".git" not in p.parts) == before
    assert not (workdir.parent / "remote" / "objects").exists()


def test_checkout_revision_restores_old_version_without_moving_head(workdir, cli):
    first, _ = commit_versions(cli, workdir, "m.bin", [b"version one" * 1000, b"version two" * 1000])
    head = (workdir / ".git" / "HEAD").read_bytes()
    cli("checkout", first)
    assert (workdir / "m.bin").read_bytes() == b"version one" * 1000
    assert (workdir / ".git" / "HEAD").read_bytes() == head
    cli("checkout", "HEAD")
    assert (workdir / "m.bin").read_bytes() == b"version two" * 1000


def test_checkout_refuses_to_overwrite_local_changes(workdir, cli):
    (workdir / "m.bin").write_bytes(b"committed" * 100)
    cli("add", "m.bin")
    first = cli("commit", "-m", "one").output.strip()
    (workdir / "m.bin").write_bytes(b"precious unsaved work")
    r = cli("checkout", first, ok=False)
    assert r.exit_code == 1 and "not added" in r.output
    assert (workdir / "m.bin").read_bytes() == b"precious unsaved work"
    cli("checkout", "--force", "m.bin")
    assert (workdir / "m.bin").read_bytes() == b"committed" * 100


def test_push_moves_only_missing_objects(workdir, cli):
    series = training_series(2)
    write_safetensors(workdir / "m.safetensors", series[0])
    cli("add", "m.safetensors")
    cli("commit", "-m", "0")
    first = cli("push").output
    assert "pushed" in first
    again = cli("push").output
    assert "pushed 0 objects" in again
    write_safetensors(workdir / "m.safetensors", series[1])
    cli("add", "m.safetensors")
    cli("commit", "-m", "1")
    remote = workdir.parent / "remote" / "objects"
    before = sum(1 for _ in remote.rglob("*") if _.is_file())
    cli("push")
    after = sum(1 for _ in remote.rglob("*") if _.is_file())
    assert 0 < after - before < 20  # frozen tensors were not sent again


def test_all_commits_push_makes_every_version_restorable(workdir, cli, tmp_path):
    commit_versions(cli, workdir, "m.bin", [f"v{k}".encode() * 5000 for k in range(3)])
    cli("push", "--all-commits")
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    with Repo.open(dest) as repo:
        entries = repo.log("m.bin")
    assert [e.message for e in entries] == ["v2", "v1", "v0"]
    for k, e in enumerate(reversed(entries)):
        cli("checkout", "--force", e.commit)
        assert (dest / "m.bin").read_bytes() == f"v{k}".encode() * 5000
        assert hash_bytes((dest / "m.bin").read_bytes()) == e.blake3


def test_push_fetch_and_pull_of_one_path_move_only_that_artifact(workdir, cli, tmp_path):
    """A run that saved checkpoints under their own names: one of them is pushed,
    fetched and pulled by path, and nothing of the others moves."""
    rng = np.random.default_rng(5)
    payloads = {f"checkpoint-{k}": rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes() for k in (1, 2)}
    for name, data in payloads.items():
        (workdir / name).mkdir()
        (workdir / name / "optimizer.pt").write_bytes(data)
        cli("add", name)
    cli("commit", "-m", "two checkpoints")
    remote = workdir.parent / "remote"
    assert "pushed" in cli("push", "checkpoint-2").output
    with Repo.open(workdir) as repo:
        statuses = {s.path: s for s in repo.status()[1]}
    assert statuses["checkpoint-2"].on_remote and not statuses["checkpoint-1"].on_remote
    cli("push")  # the rest, for the clone
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    before = sum(1 for _ in remote.rglob("*") if _.is_file())
    cli("fetch", "checkpoint-1")
    with Repo.open(dest) as repo:
        cached = {s.path: s.in_cache for s in repo.status()[1]}
    assert cached == {"checkpoint-1": True, "checkpoint-2": False}
    out = cli("pull", "checkpoint-2").output
    assert "restored   checkpoint-2" in out and "checkpoint-1" not in out
    assert (dest / "checkpoint-2" / "optimizer.pt").read_bytes() == payloads["checkpoint-2"]
    assert not (dest / "checkpoint-1").exists()
    assert sum(1 for _ in remote.rglob("*") if _.is_file()) == before  # reads only
    head = cli("pull", "HEAD").output  # a revision still works as the first argument
    assert "restored   checkpoint-1" in head
    assert (dest / "checkpoint-1" / "optimizer.pt").read_bytes() == payloads["checkpoint-1"]


def test_commit_works_with_plain_git_add_too(workdir, cli):
    from dulwich import porcelain

    (workdir / "m.bin").write_bytes(b"x" * 100)
    cli("add", "m.bin")
    porcelain.add(str(workdir), paths=[str(workdir / "m.bin.ckpt"), str(workdir / ".gitignore")])
    porcelain.commit(str(workdir), message=b"plain", author=b"T <t@e>", committer=b"T <t@e>")
    with Repo.open(workdir) as repo:
        assert "m.bin" in repo.pointers_at("HEAD")
        assert [e.message for e in repo.log()] == ["plain"]
    ignored = (workdir / ".gitignore").read_text().splitlines()
    assert "/m.bin" in ignored


def test_commit_stages_pointers_and_refuses_when_nothing_changed(workdir, cli):
    from dulwich import porcelain

    (workdir / "m.bin").write_bytes(b"x" * 100)
    cli("add", "m.bin")
    first = cli("commit", "-m", "one").output.strip()
    result = cli("commit", "-m", "again", ok=False)
    assert result.exit_code != 0 and "nothing to commit" in result.output
    # a file staged with plain git is a change: it is committed along
    (workdir / "notes.txt").write_text("lr 3e-4\n")
    porcelain.add(str(workdir), paths=[str(workdir / "notes.txt")])
    second = cli("commit", "-m", "notes").output.strip()
    assert second != first
    # a removed artifact's pointer is unstaged and the removal committed
    (workdir / "m.bin.ckpt").unlink()
    cli("commit", "-m", "drop m")
    with Repo.open(workdir) as repo:
        assert "m.bin" not in repo.pointers_at("HEAD")
        assert "m.bin" in repo.pointers_at(second)
        assert [e.message for e in repo.log()][:1] == ["one"]
        head = repo.git.head()
        assert repo.git.repo[head.tree][b"notes.txt"][1] is not None


def test_commit_with_unmerged_paths_is_refused_and_changes_nothing(workdir, cli):
    from dulwich import porcelain
    from dulwich.index import ConflictedIndexEntry
    from dulwich.repo import Repo as GitRepo

    (workdir / "notes.txt").write_text("lr 3e-4\n")
    porcelain.add(str(workdir), paths=[str(workdir / "notes.txt")])
    (workdir / "m.bin").write_bytes(b"x" * 100)
    cli("add", "m.bin")
    head = cli("commit", "-m", "one").output.strip()
    (workdir / "m.bin").write_bytes(b"y" * 100)
    cli("add", "m.bin")
    git = GitRepo(str(workdir))
    index = git.open_index()
    entry = index[b"notes.txt"]
    index[b"notes.txt"] = ConflictedIndexEntry(ancestor=entry, this=entry, other=entry)  # a merge in progress
    index.write()
    r = cli("commit", "-m", "two", ok=False)
    assert r.exit_code == 2 and "unmerged paths" in r.output and "Traceback" not in r.output
    assert git.head().decode() == head


def test_status_reports_each_state(workdir, cli):
    for n in ("a", "b", "c"):
        (workdir / f"{n}.bin").write_bytes(n.encode() * 1000)
    cli("add", "a.bin", "b.bin", "c.bin")
    cli("commit", "-m", "x")
    cli("push")
    (workdir / "b.bin").write_bytes(b"changed")
    (workdir / "c.bin").unlink()
    (workdir / "d.bin").write_bytes(b"d" * 10)
    cli("add", "d.bin")
    import json

    doc = json.loads(cli("status", "--json").output)
    states = {a["path"]: a for a in doc["artifacts"]}
    assert states["a.bin"]["workspace"] == "clean" and states["a.bin"]["on_remote"] is True
    assert states["b.bin"]["workspace"] == "modified"
    assert states["c.bin"]["workspace"] == "missing"
    assert states["d.bin"]["on_remote"] is False and states["d.bin"]["in_cache"] is True
    # a file replaced by a directory; a file replaced (new inode) by other bytes of
    # the same size and mtime: the stat cache misses on the inode and rehashes
    (workdir / "d.bin").unlink()
    (workdir / "d.bin").mkdir()
    a_stat = (workdir / "a.bin").stat()
    tmp = workdir / "a.tmp"
    tmp.write_bytes(b"A" * 1000)
    os.utime(tmp, ns=(a_stat.st_atime_ns, a_stat.st_mtime_ns))
    os.replace(tmp, workdir / "a.bin")
    states = {a["path"]: a for a in json.loads(cli("status", "--json").output)["artifacts"]}
    assert states["d.bin"]["workspace"] == "modified"
    assert states["a.bin"]["workspace"] == "modified"
    shutil.rmtree(workdir / ".ckptvc" / "cache")
    doc = json.loads(cli("status", "--json").output)
    assert all(not a["in_cache"] for a in doc["artifacts"])


def test_git_checkout_old_commit_then_ckptvc_checkout_replaces_stored_content(workdir, cli, tmp_path):
    """After `git checkout OLD`, the workspace holds a version ckptvc stored: replacing
    it loses nothing, so no --force is needed (as with `dvc checkout`)."""
    from dulwich import porcelain

    first, _ = commit_versions(cli, workdir, "m.bin", [b"one" * 1000, b"two" * 1000])
    cli("push", "--all-commits")
    porcelain.checkout(str(workdir), first) if hasattr(porcelain, "checkout") else porcelain.reset(
        str(workdir), "hard", first)
    assert b'"size": 3000' in (workdir / "m.bin.ckpt").read_bytes()
    cli("checkout")
    assert (workdir / "m.bin").read_bytes() == b"one" * 1000
    # a fresh clone that pulled the latest behaves the same
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    cli("pull")
    with Repo.open(dest) as repo:
        repo.checkout(first)
        assert (dest / "m.bin").read_bytes() == b"one" * 1000
    # real local edits are still protected
    (dest / "m.bin").write_bytes(b"precious")
    r = cli("checkout", "HEAD", ok=False)
    assert r.exit_code == 1 and (dest / "m.bin").read_bytes() == b"precious"


def test_large_restore_streams_objects_and_fsyncs_only_when_configured(workdir, cli, monkeypatch):
    import ckptvc.restore as restore_mod
    from ckptvc.stores.local import LocalStore

    data = np.random.default_rng(3).standard_normal(300_000).astype(np.float32).tobytes()
    commit_versions(cli, workdir, "m.bin", [data])
    monkeypatch.setattr(restore_mod, "STREAM_MIN_BYTES", 1)
    streamed, synced = [], []
    real_read_once, real_fsync = LocalStore.read_once, os.fsync
    monkeypatch.setattr(LocalStore, "read_once", lambda self, key: streamed.append(key) or real_read_once(self, key))
    monkeypatch.setattr(restore_mod.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))

    (workdir / "m.bin").unlink()
    cli("checkout", "m.bin")
    assert (workdir / "m.bin").read_bytes() == data
    assert streamed and not synced

    cfg = workdir / ".ckptvc" / "config.toml"
    cfg.write_text(cfg.read_text().replace("fsync_checkout = false", "fsync_checkout = true"))
    (workdir / "m.bin").unlink()
    cli("checkout", "m.bin")
    assert (workdir / "m.bin").read_bytes() == data
    assert any(".m.bin.ckptvc-" in p for p in synced)


def test_read_once_returns_the_value_and_keyerror_when_absent(tmp_path):
    from ckptvc.stores.local import LocalStore

    store = LocalStore(tmp_path / "s").ensure()
    store.write("objects/ab/cd", b"payload" * 1000)
    assert store.read_once("objects/ab/cd") == b"payload" * 1000
    try:
        store.read_once("objects/ab/ef")
    except KeyError:
        pass
    else:
        raise AssertionError("read_once of a missing key must raise KeyError")


def test_large_file_path_restores_every_version_of_a_delta_chain(workdir, cli, monkeypatch):
    import ckptvc.restore as restore_mod

    monkeypatch.setattr(restore_mod, "STREAM_MIN_BYTES", 1)
    monkeypatch.setattr(restore_mod, "PREFETCH_AHEAD", 2)
    paths = []
    for k, tensors in enumerate(training_series(4)):
        p = workdir / f"v{k}.safetensors"
        write_safetensors(p, tensors)
        paths.append(p.read_bytes())
        p.unlink()
    shas = commit_versions(cli, workdir, "m.safetensors", paths)
    with Repo.open(workdir) as repo:
        db = repo.objectdb(False)
        m = db.get_manifest(repo.pointers_at(shas[0])["m.safetensors"].manifest)
        def chain_length(oid):
            n = 0
            while (oid := db.info(oid).base) is not None:
                n += 1
            return n

        assert max(chain_length(c.id) for c in m.files[0].chunks) >= 2, "expected a delta chain to test"
    for sha, data in zip(shas, paths, strict=True):
        cli("checkout", sha)
        assert (workdir / "m.safetensors").read_bytes() == data


def test_pull_from_a_local_remote_links_objects_as_it_restores(workdir, cli, tmp_path):
    """A local remote on the same filesystem lends its files: the fresh clone's cache
    holds hard links to them (no copy), and the restored files are byte-identical."""
    rng = np.random.default_rng(11)
    versions = [rng.standard_normal(300_000).astype(np.float32).tobytes() for _ in range(2)]
    versions[1] = versions[0][:600_000] + versions[1][600_000:]  # a delta against v1
    first, _ = commit_versions(cli, workdir, "w.bin", versions)
    cli("push", "--all-commits")
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    cli("pull")
    assert (dest / "w.bin").read_bytes() == versions[1]
    cli("pull", first)
    assert (dest / "w.bin").read_bytes() == versions[0]
    remote = Repo.open(dest).remote_store(None)[1].root
    cached = sorted(p for p in (dest / ".ckptvc" / "cache" / "objects").rglob("*") if p.is_file())
    copied = [p for p in cached if not os.path.samefile(p, remote / p.relative_to(dest / ".ckptvc" / "cache"))]
    assert len(cached) > 4
    with Repo.open(dest) as repo:
        db = repo.objectdb()
        for p in copied:  # only manifests are written anew (after the objects they name)
            assert db.get_manifest(p.parent.name + p.name).files
    assert len(copied) <= 2


def test_pull_of_an_old_version_leaves_a_complete_cache_without_walking_its_chains_again(workdir, cli, tmp_path,
                                                                                        monkeypatch):
    """An older version decodes through newer ones (delta chains): after its pull the
    cache holds every object the version needs, so it checks out with the remote gone,
    and the fetch that ends the pull looked at none of what the restore decoded."""
    from ckptvc.objects.objectdb import ObjectDB

    series = training_series(4, seed=5)
    blobs = []
    for k, tensors in enumerate(series):
        write_safetensors(workdir / f"s{k}.safetensors", tensors)
        blobs.append((workdir / f"s{k}.safetensors").read_bytes())
    shas = commit_versions(cli, workdir, "m.safetensors", blobs)
    cli("push", "--all-commits")
    dest = clone(workdir, tmp_path / "fresh")
    os.chdir(dest)
    cli("pull")
    walked: list[set[str]] = []
    closure = ObjectDB.closure

    def spy(self, oids, store=None, complete=frozenset()):
        out = closure(self, oids, store, complete)
        walked.append(out)
        return out

    monkeypatch.setattr(ObjectDB, "closure", spy)
    cli("pull", shas[0])
    assert (dest / "m.safetensors").read_bytes() == blobs[0]
    assert walked == [set()]  # every chunk was decoded, with its chain: nothing left to walk
    monkeypatch.setattr(ObjectDB, "closure", closure)
    with Repo.open(dest) as repo:
        db = repo.objectdb(False)
        chunk_ids = db.get_manifest(repo.pointers_at(shas[0])["m.safetensors"].manifest).chunk_ids()
        needed = db.closure(chunk_ids)
        assert len(needed) > len(chunk_ids)  # chains: bases beyond the version's own chunks
        assert not db.missing(needed)
        shutil.rmtree(repo.remote_store(None)[1].root)
    (dest / "m.safetensors").unlink()
    cli("checkout", shas[0], "--force")
    assert (dest / "m.safetensors").read_bytes() == blobs[0]
