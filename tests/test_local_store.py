"""LocalStore: batched object publication. An object is readable by the writing
store at once, but appears under its final name (for other processes) only after
sync() has made its bytes durable; superseded and deleted pending values vanish."""

from __future__ import annotations

import pytest

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


# ------------------------------------------------------------ read_once: O_DIRECT

def _uncached_object(tmp_path, monkeypatch, size: int) -> tuple[LocalStore, bytes]:
    """A published object whose pages have been dropped from the page cache (and
    taken as uncached: the kernel may keep a page a moment longer)."""
    import os

    from ckptvc.stores import local

    monkeypatch.setattr(local, "_tail_cached", lambda fd, size: False)
    store = LocalStore(tmp_path / "s").ensure()
    data = os.urandom(size)
    store.write(KEY, data)
    store.sync()
    fd = os.open(store._path(KEY), os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return store, data


@pytest.mark.parametrize("size", [64 << 10, (64 << 10) + 1, 1_000_000, (1 << 20) - 1, 3 << 20])
def test_read_once_reads_an_uncached_object_directly_byte_for_byte(tmp_path, monkeypatch, size):
    store, data = _uncached_object(tmp_path, monkeypatch, size)
    direct = []
    real = LocalStore._read_direct
    monkeypatch.setattr(LocalStore, "_read_direct", lambda self, fd, n: direct.append(n) or real(self, fd, n))
    got = store.read_once(KEY)
    assert bytes(got) == data
    if store.reads_once_direct:  # the file system took O_DIRECT (ext4, xfs...)
        assert direct == [size]


def test_read_once_reads_a_cached_object_from_the_page_cache(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "s").ensure()
    store.write(KEY, b"x" * (1 << 20))
    store.sync()
    assert store.read(KEY)  # its pages are in the page cache now
    monkeypatch.setattr(LocalStore, "_read_direct", lambda *a: pytest.fail("a cached object was read from the disk"))
    assert bytes(store.read_once(KEY)) == b"x" * (1 << 20)


def test_read_once_falls_back_to_buffered_reads_where_o_direct_is_refused(tmp_path, monkeypatch):
    import errno

    from ckptvc.stores import local

    store, data = _uncached_object(tmp_path, monkeypatch, 1 << 20)
    real_fcntl = local.fcntl.fcntl

    def refuse_direct(fd, cmd, arg=0):
        if cmd == local.fcntl.F_SETFL and arg & local.os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(local.fcntl, "fcntl", refuse_direct)
    assert bytes(store.read_once(KEY)) == data
    assert not store.reads_once_direct  # asked once, not again for every object
    assert bytes(store.read_once(KEY)) == data


@pytest.mark.parametrize("code", ["EINVAL", "EOPNOTSUPP"])
def test_read_once_falls_back_to_buffered_reads_where_direct_reads_fail(tmp_path, monkeypatch, code):
    import errno
    import fcntl
    import os

    store, data = _uncached_object(tmp_path, monkeypatch, 1 << 20)
    real_preadv = os.preadv

    def refuse_direct(fd, buffers, offset, *flags):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(os, "preadv", refuse_direct)
    assert bytes(store.read_once(KEY)) == data
    assert not store.reads_once_direct


def test_read_once_reports_a_failing_disk(tmp_path, monkeypatch):
    import errno
    import os

    store, _ = _uncached_object(tmp_path, monkeypatch, 1 << 20)
    monkeypatch.setattr(os, "preadv", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OSError, match="Input/output"):
        store.read_once(KEY)


def test_read_once_finishes_buffered_after_a_short_direct_read(tmp_path, monkeypatch):
    import os

    store, data = _uncached_object(tmp_path, monkeypatch, 1 << 20)
    real_preadv = os.preadv
    calls = []

    def short_first(fd, buffers, offset, *flags):
        calls.append(offset)
        if len(calls) == 1 and not flags:
            real_preadv(fd, [buffers[0][:8192]], offset)
            return 5000  # a short read, ending off the alignment: the rest must be read buffered
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(os, "preadv", short_first)
    assert bytes(store.read_once(KEY)) == data
    assert calls[:2] == [0, 5000]


@pytest.mark.parametrize("once", [False, True])
def test_prefetch_for_read_once_skips_readahead_only_when_reads_go_direct(tmp_path, monkeypatch, once):
    import os

    store = LocalStore(tmp_path / "s").ensure()
    store.write(KEY, b"x" * (1 << 20))
    store.sync()
    hints = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: hints.append(advice) or real(fd, off, n, advice))
    store.prefetch(KEY, once=once)
    skipped = once and store.reads_once_direct
    assert hints == ([] if skipped else [os.POSIX_FADV_WILLNEED])
    hints.clear()
    store.reads_once_direct = False  # a file system that refused direct reads: read_once reads buffered
    store.prefetch(KEY, once=once)
    assert hints == [os.POSIX_FADV_WILLNEED]
