"""LocalStore: batched object publication. An object is readable by the writing
store at once, but appears under its final name (for other processes) only after
sync() has made its bytes durable; superseded and deleted pending values vanish."""

from __future__ import annotations

from ckptvc.stores.local import LocalStore

KEY = "objects/ab/" + "c" * 62


def test_pending_object_is_readable_here_and_invisible_elsewhere_until_sync(tmp_path):
    store = LocalStore(tmp_path / "s").ensure()
    other = LocalStore(tmp_path / "s")  # what another process sees
    assert store.write(KEY, [b"head", b"-body"])
    assert store.exists(KEY) and store.read(KEY) == b"head-body" and store.read_prefix(KEY, 4) == b"head"
    assert store.size(KEY) == 9 and store.sizes([KEY]) == {KEY: 9}
    assert not other.exists(KEY)
    assert not store.write(KEY, b"again")  # already there (pending counts)
    store.sync()
    assert other.read(KEY) == b"head-body"
    assert not list((tmp_path / "s" / "tmp").iterdir())


def test_replace_before_sync_publishes_only_the_newest_value(tmp_path):
    store = LocalStore(tmp_path / "s").ensure()
    store.write(KEY, b"first form")
    store.replace(KEY, b"second form")
    assert store.read(KEY) == b"second form"
    assert len(list((tmp_path / "s" / "tmp").iterdir())) == 1  # the superseded temp file is gone
    store.sync()
    assert LocalStore(tmp_path / "s").read(KEY) == b"second form"
    assert not list((tmp_path / "s" / "tmp").iterdir())


def test_delete_of_a_pending_object_leaves_nothing(tmp_path):
    store = LocalStore(tmp_path / "s").ensure()
    store.write(KEY, b"x" * 100)
    store.delete(KEY)
    assert not store.exists(KEY)
    store.sync()
    assert not LocalStore(tmp_path / "s").exists(KEY)
    assert not list((tmp_path / "s" / "tmp").iterdir())


def test_records_outside_objects_are_durable_at_once(tmp_path):
    store = LocalStore(tmp_path / "s").ensure()
    assert store.write("tags/v1", b"record", exclusive=True)
    assert LocalStore(tmp_path / "s").read("tags/v1") == b"record"


def test_a_large_batch_is_published_without_waiting_for_sync(tmp_path, monkeypatch):
    monkeypatch.setattr("ckptvc.stores.local.PUBLISH_EVERY_BYTES", 250)
    store = LocalStore(tmp_path / "s").ensure()
    other = LocalStore(tmp_path / "s")
    keys = [f"objects/ab/{i:062d}" for i in range(5)]
    for key in keys[:2]:
        store.write(key, b"y" * 100)
    assert not any(other.exists(k) for k in keys[:2])  # 200 bytes wait
    store.write(keys[2], b"y" * 100)  # 300 >= 250: the batch is published
    assert all(other.read(k) == b"y" * 100 for k in keys[:3])
    store.write(keys[3], b"z" * 100)
    assert not other.exists(keys[3])  # the count starts again
    assert len(list((tmp_path / "s" / "tmp").iterdir())) == 1  # keys[3], still pending


def test_background_publication_publishes_early_and_a_failed_batch_stays_pending(tmp_path, monkeypatch):
    import errno
    import time

    import pytest

    from ckptvc.errors import CkptvcError

    monkeypatch.setattr("ckptvc.stores.local.PUBLISH_EARLY_BYTES", 150)
    store = LocalStore(tmp_path / "s").ensure()
    other = LocalStore(tmp_path / "s")
    keys = [f"objects/ab/{i:062d}" for i in range(4)]

    def settle():
        deadline = time.time() + 10
        while store._publisher is not None and time.time() < deadline:
            time.sleep(0.01)

    store.write(keys[0], b"a" * 100)
    store.write(keys[1], b"b" * 100)  # 200 >= 150: published in the background
    settle()
    assert other.read(keys[0]) == b"a" * 100 and other.read(keys[1]) == b"b" * 100

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("ckptvc.stores.local._fsync_path", disk_full)
        store.write(keys[2], b"c" * 100)
        store.write(keys[3], b"d" * 100)
        settle()
        assert not other.exists(keys[2])  # not durable, so not published
        assert store.read(keys[2]) == b"c" * 100  # still pending, still readable here
        with pytest.raises(CkptvcError, match="no space left"):
            store.sync()  # the writer's own sync tries again and reports it
    store.sync()  # the disk has room again: the batch is published
    assert other.read(keys[2]) == b"c" * 100 and other.read(keys[3]) == b"d" * 100


def test_a_directory_whose_fsync_failed_is_synced_again(tmp_path, monkeypatch):
    import errno

    import pytest

    from ckptvc.errors import CkptvcError

    store = LocalStore(tmp_path / "s").ensure()
    store.write(KEY, b"x" * 10)
    synced = []

    def failing(path):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr("ckptvc.stores.local.fsync_dir", failing)
        with pytest.raises(CkptvcError, match="cannot sync"):
            store.sync()
    monkeypatch.setattr("ckptvc.stores.local.fsync_dir", synced.append)
    store.sync()
    assert tmp_path / "s" / "objects" / "ab" in synced  # the rename there is made durable
