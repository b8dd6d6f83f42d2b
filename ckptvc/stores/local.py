"""A store in a local directory: the cache, and file:// remotes.

Layout: the key is the relative path. Values are written to `tmp/` inside the store
root, fsynced, then renamed into place, so a value is either whole or absent; a
kill leaves at most a stray file in `tmp/`, which is never read as an object.

Objects (keys under `objects/`) are written in batches: each goes to its temp file at
once and is readable by this process from there, but the fsyncs and renames wait
for sync(), which fsyncs the whole batch concurrently (the filesystem commits them
together instead of one journal commit per object), then renames in write order.
So an object appears under its final name only once its bytes are durable, and
callers sync before they write anything that refers to objects (a manifest).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ckptvc.errors import CkptvcError, UserInputError
from ckptvc.stores.base import Data, Store

TMP_DIR = "tmp"
# Once this many bytes wait unpublished, a background thread publishes the batch
# (fsync, rename): the disk writes them while the writer goes on coding, instead of
# all at the end.
PUBLISH_EARLY_BYTES = 64 << 20
# ...and at this many the writer publishes itself (waiting for a background batch
# first): an add of a checkpoint of hundreds of GB then makes progress a kill does
# not lose, and its temp files never hold more disk than this for clean_tmp.
PUBLISH_EVERY_BYTES = 1 << 30
# read_once reads objects at least this large with O_DIRECT, in whole blocks of this
# alignment (4096 covers every common logical block size)
DIRECT_READ_MIN_BYTES = 64 << 10
DIRECT_ALIGN = 4096


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise UserInputError(f"invalid store key {key!r}")
    if parts[0] == TMP_DIR:
        raise UserInputError(f"invalid store key {key!r}: tmp/ is reserved")


def stale_files(directory: Path, min_age_s: float, moved: bool = False) -> list[Path]:
    """The files in `directory` (none if it is missing) older than `min_age_s`: by their
    last write, or with moved=True by their last change of name (a rename sets ctime,
    not mtime), for files renamed there whose content is older than their stay."""
    cutoff = time.time() - min_age_s
    out = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for p in directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                st = p.lstat()
                if (st.st_ctime if moved else st.st_mtime) < cutoff:
                    out.append(p)
    return out


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_file(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write `data` to `path` through a temp file, fsync and rename (replacing)."""
    tmp_dir = tmp_dir or path.parent
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parallel(fn, items: list) -> None:
    if len(items) > 8:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(fn, items))
    else:
        for item in items:
            fn(item)


def _tail_cached(fd: int, size: int) -> bool:
    """Whether the file's last byte is in the page cache (then, most likely, all of
    it: a header read alone does not bring in the end of a large object)."""
    try:
        return os.preadv(fd, [bytearray(1)], size - 1, os.RWF_NOWAIT) == 1
    except OSError:
        return False  # EAGAIN: not cached; EOPNOTSUPP: cannot tell, read it direct


class LocalStore(Store):
    # a cache on the same filesystem may hard-link this store's values (plain,
    # immutable files) instead of copying them; a store standing in for a network
    # remote (in tests) says no
    lends_files = True
    # read_once reads uncached objects with O_DIRECT; False once the file system
    # refused it (tmpfs, some FUSE and network file systems)
    reads_once_direct = hasattr(os, "O_DIRECT") and hasattr(os, "RWF_NOWAIT")

    def lends_to(self, other: Store) -> bool:
        """Whether `other` may take this store's values as hard links (link_from); on
        another filesystem link_from still says no and the caller copies."""
        return self.lends_files and isinstance(other, LocalStore)

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.url = str(self.root)
        # Renames into these directories are not yet fsynced: sync() does it once per
        # directory. Objects are whole or absent either way; callers sync before they
        # write anything that refers to them (a manifest, a pointer).
        self._dirty: set[Path] = set()
        self._dirty_lock = threading.Lock()
        # key -> temp file holding its value, written but not yet fsynced and renamed
        self._pending: dict[str, Path] = {}
        self._pending_bytes = 0
        self._sync_lock = threading.Lock()
        self._publisher: threading.Thread | None = None

    def ensure(self) -> LocalStore:
        try:
            (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CkptvcError(f"{self.root}: cannot create store directory: {exc.strerror}") from exc
        return self

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def exists(self, key: str) -> bool:
        return key in self._pending or self._path(key).is_file()

    def _open(self, key: str) -> int:
        """A read fd for the value: its pending temp file, else the final file (a sync
        may rename the temp file between the lookup and the open: then look again)."""
        path = self._path(key)
        for _ in range(3):
            tmp = self._pending.get(key)
            for p in ((tmp, path) if tmp else (path,)):
                try:
                    return os.open(p, os.O_RDONLY)
                except FileNotFoundError:
                    continue
            if tmp is None:
                raise KeyError(key)
        raise KeyError(key)

    def read(self, key: str) -> bytes:
        with os.fdopen(self._open(key), "rb") as f:
            return f.read()

    def read_once(self, key: str) -> bytes | memoryview:
        # Streaming gigabytes of objects through the page cache evicts what the user
        # has cached and, on VMs, costs fresh pages for every byte. An object not in
        # the page cache is read with O_DIRECT, straight into our buffer: a cold 2 GiB
        # pull spent 3.7-5.0 s of system CPU with buffered reads, 1.9-2.0 s with direct
        # ones, and took 5.6-6.4 -> 4.3-4.5 s. A cached one (just added, or read
        # before) is read from the cache, then dropped so that the next reads and the
        # restored file reuse its pages.
        fd = self._open(key)
        try:
            if self.reads_once_direct:
                size = os.fstat(fd).st_size
                if size >= DIRECT_READ_MIN_BYTES and not _tail_cached(fd, size):
                    data = self._read_direct(fd, size)
                    if data is not None:
                        return data
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return data
        finally:
            os.close(fd)

    def _read_direct(self, fd: int, size: int) -> memoryview | None:
        """The file's bytes read with O_DIRECT into an aligned buffer, or None (nothing
        read, offset 0) where the file system refuses direct I/O: then this store
        stops trying."""
        # A numpy buffer, not an anonymous mmap: malloc reuses the heap (memory.py), while
        # every fresh mmap costs a page fault per 4 KiB (2 GiB of reads: 3.4 s of system
        # CPU here). Only restores of large objects come here.
        import numpy as np

        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
        except OSError:
            self.reads_once_direct = False
            return None
        want = -(-size // DIRECT_ALIGN) * DIRECT_ALIGN
        buf = np.empty(want + DIRECT_ALIGN, dtype=np.uint8)
        start = -buf.ctypes.data % DIRECT_ALIGN
        view = memoryview(buf[start : start + want])
        got = 0
        try:
            while got < size:
                if got % DIRECT_ALIGN:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)  # a short read mid-file: the rest buffered
                n = os.preadv(fd, [view[got:]], got)
                if n == 0:
                    break
                got += n
        except OSError as exc:
            if got or exc.errno in (errno.EIO, errno.ENOMEM):
                raise
            # direct reads refused (EINVAL: alignment; EOPNOTSUPP and others on some
            # FUSE, network and overlay file systems): read it buffered, as before
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            self.reads_once_direct = False
            return None
        return view[: min(got, size)]

    def _open_random(self, key: str) -> int:
        # Parts of objects (headers, the HI part of a split delta) are read on their
        # own: without this the kernel's readahead (MBs on many disks) reads the rest.
        fd = self._open(key)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        return fd

    def read_range(self, key: str, offset: int, length: int | None) -> bytes:
        fd = self._open_random(key)
        try:
            if length is None:
                length = max(os.fstat(fd).st_size - offset, 0)
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def prefetch(self, key: str, offset: int = 0, length: int | None = None, once: bool = False) -> None:
        # WILLNEED starts asynchronous readahead of the whole file: with a few of these
        # in flight the disk works on the next objects while the current one decodes.
        # Not for read_once when it reads past the page cache: the file would be read
        # twice, into the page cache here and from the disk there.
        if not hasattr(os, "posix_fadvise") or (once and self.reads_once_direct):
            return
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except OSError:
            return
        try:
            os.posix_fadvise(fd, offset, length or 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def read_prefix(self, key: str, length: int) -> bytes:
        fd = self._open_random(key)
        try:
            return os.pread(fd, length, 0)
        finally:
            os.close(fd)

    def write(self, key: str, data: Data, *, exclusive: bool = False) -> bool:
        if self.exists(key):
            return False
        return self._write(key, data, exclusive=exclusive, overwrite=False)

    def replace(self, key: str, data: Data) -> None:
        self._write(key, data, exclusive=False, overwrite=True)

    def _write(self, key: str, data: Data, *, exclusive: bool, overwrite: bool) -> bool:
        path = self._path(key)
        tmp_dir = self.root / TMP_DIR
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
            batched = not exclusive and key.startswith("objects/")
            try:
                with open(tmp, "wb") as f:
                    if isinstance(data, list):
                        f.writelines(data)
                    else:
                        f.write(data)
                    f.flush()
                    size = f.tell()
                    if not batched:
                        os.fsync(f.fileno())
                if batched:
                    with self._dirty_lock:
                        if not overwrite and key in self._pending:
                            return False  # another thread of this process wrote it first
                        old, self._pending[key] = self._pending.pop(key, None), tmp
                        tmp = old  # a value superseded before it was synced is dropped
                        self._pending_bytes += size
                        due = self._pending_bytes >= PUBLISH_EVERY_BYTES
                        early = self._pending_bytes >= PUBLISH_EARLY_BYTES and self._publisher is None
                        if early:
                            self._publisher = threading.Thread(target=self._publish_in_background, daemon=True)
                    # safe mid-ingest: a re-coded object is queued after the new base it
                    # names, and a batch publishes new keys first
                    if due:
                        self.sync()
                    elif early:
                        self._publisher.start()
                    return True
                if exclusive:
                    # link() fails if the name exists: an atomic create-if-absent.
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        return False
                else:
                    os.replace(tmp, path)
            finally:
                if tmp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
            if exclusive or not key.startswith("objects/"):
                fsync_dir(path.parent)  # records (tags) are durable at once
            else:
                with self._dirty_lock:
                    self._dirty.add(path.parent)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise CkptvcError(f"{self.root}: no space left on device while writing {key}") from exc
            raise CkptvcError(f"{self.root}: cannot write {key}: {exc.strerror}") from exc
        return True

    def link_from(self, src: LocalStore, key: str) -> int | None:
        """Store `key` as a hard link to `src`'s file (both on one filesystem): values
        are immutable files, replaced only by rename, so sharing an inode is safe.
        Returns the size, or None when a link is not possible (then copy instead)."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(src._path(key), path)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError:
            return None
        with self._dirty_lock:
            self._dirty.add(path.parent)
        return path.stat().st_size

    def _publish_in_background(self) -> None:
        # a failure here (disk full) leaves the batch pending and its directories
        # dirty: the writer's own sync() does it again and reports what still fails
        with contextlib.suppress(CkptvcError):
            self.sync()
        with self._dirty_lock:
            self._publisher = None

    def sync(self) -> None:
        with self._sync_lock:
            try:
                self._publish_pending()
                self._sync_dirty_dirs()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise CkptvcError(f"{self.root}: no space left on device while syncing objects") from exc
                raise CkptvcError(f"{self.root}: cannot sync objects: {exc.strerror}") from exc

    def _sync_dirty_dirs(self) -> None:
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        try:
            _parallel(fsync_dir, sorted(dirty))
        except OSError:
            with self._dirty_lock:
                self._dirty |= dirty  # not known to be durable: the next sync retries
            raise

    def _publish_pending(self) -> None:
        """fsync the pending temp files together, then rename them into place: first
        the new keys, then (after their directories are synced) the replacements, so a
        re-coded object never becomes durable before a new base it names."""
        with self._dirty_lock:
            batch = list(self._pending.items())
            self._pending_bytes = 0
        if not batch:
            return
        _parallel(_fsync_path, [tmp for _, tmp in batch])
        fresh = [(k, t) for k, t in batch if not self._path(k).exists()]
        fresh_keys = {k for k, _ in fresh}
        again = [(k, t) for k, t in batch if k not in fresh_keys]
        _parallel(self._publish_one, fresh)
        if again:
            self._sync_dirty_dirs()
            _parallel(self._publish_one, again)

    def _publish_one(self, item: tuple[str, Path]) -> None:
        key, tmp = item
        path = self._path(key)
        with self._dirty_lock:
            if self._pending.get(key) != tmp:
                return  # superseded meanwhile: the newer value is published later
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            return  # superseded (and its temp file removed) between the check and here
        with self._dirty_lock:
            if self._pending.get(key) == tmp:
                del self._pending[key]
            self._dirty.add(path.parent)

    def close(self) -> None:
        self.sync()

    def delete(self, key: str) -> None:
        with self._dirty_lock:
            tmp = self._pending.pop(key, None)
        for p in (tmp, self._path(key)):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root
        # walk only below the deepest directory the prefix names ("tags/" must not
        # walk millions of objects)
        start_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / start_rel if start_rel else base
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, base)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != TMP_DIR]
                rel_dir = ""
            for name in filenames:
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    yield key

    def size(self, key: str) -> int | None:
        for _ in range(3):
            tmp = self._pending.get(key)
            for p in ((tmp, self._path(key)) if tmp else (self._path(key),)):
                try:
                    return p.stat().st_size
                except FileNotFoundError:
                    continue
            if tmp is None:
                return None
        return None

    def clean_tmp(self, min_age_s: float = 3600) -> int:
        """Remove temp files that interrupted writes (a kill, a crash) left behind.
        Only old ones: a younger file may belong to a writer still running."""
        n = 0
        for p in stale_files(self.root / TMP_DIR, min_age_s):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
        return n
