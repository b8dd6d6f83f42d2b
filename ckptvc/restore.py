"""Checkout: rebuild a file from its chunks, verified, and put it in place atomically.

Chunks are decoded on all cores, written in order to a temp file beside the
destination, and the whole file's blake3 is checked before the rename: a corrupt
object never replaces a workspace file.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from ckptvc.errors import CorruptObjectError
from ckptvc.fileio import reserve, write_in_pieces
from ckptvc.memory import tune_allocator
from ckptvc.objects.manifest import FileEntry
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import WorkerPools, ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress
from ckptvc.state import fs_clock_ns

tune_allocator()


# How many chunks ahead of the writer the prefetcher may start reads.
PREFETCH_AHEAD = 24
PREFETCH_THREADS = 4


class _Prefetcher:
    """Starts the reads of the next chunks' objects (and their delta bases) a few
    chunks ahead of the decoders: the decoders read one object at a time each, which
    leaves a disk idle between requests; a few more in flight keep it busy."""

    def __init__(self, objdb: ObjectDB, entry: FileEntry, pools: WorkerPools, once: bool):
        # streaming from a remote: more requests in flight, further ahead
        self.threads = objdb.fetch_ahead_jobs or PREFETCH_THREADS
        self.budget = threading.Semaphore(max(PREFETCH_AHEAD, 4 * self.threads))
        self.stopped = False
        # a chain is walked header by header (each a small read that waits for the
        # disk): several chains at once keep the disk's queue full
        pool = pools.get("prefetch", self.threads)
        self.thread = threading.Thread(target=self._run, args=(objdb, entry, pool, once), daemon=True)
        self.thread.start()

    def _run(self, objdb: ObjectDB, entry: FileEntry, pool: ThreadPoolExecutor, once: bool) -> None:
        for chunk in entry.chunks:
            self.budget.acquire()
            if self.stopped:
                return
            pool.submit(objdb.prefetch_chain, chunk.id, once=once)

    def advance(self) -> None:
        self.budget.release()

    def stop(self) -> None:
        self.stopped = True
        self.budget.release()
        self.thread.join()


def _write_chunks(f, entry: FileEntry, read_chunk, jobs: int, progress: Progress, task: str, pools: WorkerPools,
                  prefetcher: _Prefetcher | None = None) -> str:
    """Write the chunks in order; return the blake3 of what was written. The hash runs
    in its own thread, a chunk behind the writes (both release the GIL)."""
    if f.tell():
        # a second pass over a partly written file. Never truncate a fresh one: ext4
        # treats truncate-to-zero then write as a rewrite in place and, on close,
        # allocates and starts writing back every block at once (measured: 0.11 s
        # per 273 MB in the close of a restore)
        f.seek(0)
        f.truncate()
    hasher = blake3.blake3()
    hashing = pools.get("hash", 1)
    pending = None
    try:
        decoded = ordered_map(read_chunk, entry.chunks, jobs, pool=pools.get("decode", jobs) if jobs > 1 else None)
        for chunk, raw in zip(entry.chunks, decoded, strict=True):
            if len(raw) != chunk.size:
                raise CorruptObjectError(f"object {chunk.id[:12]}: size {len(raw)} != {chunk.size} in manifest")
            write_in_pieces(f, raw)
            if pending is not None:
                pending.result()
            pending = hashing.submit(hasher.update, raw)
            progress.advance(task, len(raw))
            if prefetcher is not None:
                prefetcher.advance()
        if pending is not None:
            pending.result()
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                pending.result()  # the workers outlive this file: nothing of it runs on
        if prefetcher is not None:
            prefetcher.stop()
    return hasher.hexdigest()


# Files at least this large stream their objects through the page cache once.
STREAM_MIN_BYTES = 32 << 20


_discarder: ThreadPoolExecutor | None = None
_discarder_lock = threading.Lock()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def discard_later(path: Path) -> None:
    """Delete a file in the background. The worker is joined when the interpreter
    exits, so nothing is left behind by a process that ends normally."""
    global _discarder
    with _discarder_lock:
        if _discarder is None:
            _discarder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptvc-discard")
        _discarder.submit(_unlink_quietly, path)


def wait_for_discards() -> None:
    """Block until every background delete has finished."""
    global _discarder
    with _discarder_lock:
        pool, _discarder = _discarder, None
    if pool is not None:
        pool.shutdown(wait=True)


def _move_aside(dest: Path, trash_dir: Path) -> Path | None:
    """Rename the file at `dest` into `trash_dir`; None when there is none to move, or it
    cannot be moved there (another file system)."""
    try:
        if stat.S_ISDIR(os.lstat(dest).st_mode):
            return None
    except FileNotFoundError:
        return None
    trash_dir.mkdir(parents=True, exist_ok=True)
    aside = trash_dir / f"{uuid.uuid4().hex}.old"
    try:
        os.rename(dest, aside)
    except OSError:
        return None
    return aside


def _put_in_place(tmp: Path, dest: Path, trash_dir: Path | None) -> None:
    """Rename the finished temp file to `dest`. An existing file at `dest` is first
    renamed into `trash_dir` and deleted in the background. Renaming straight over it
    was slow twice on ext4: overwriting a name makes ext4 allocate and start writing
    the new file's blocks at once (auto_da_alloc, its guard for programs that do not
    fsync), which then tied the next fsync of any file (SQLite's, recording the
    state) to that writeback, 0.3 s each per 273 MB here; and freeing the old file's
    blocks (trimmed on a `discard` mount) took 0.03-0.2 s more in the foreground."""
    aside = _move_aside(dest, trash_dir) if trash_dir is not None else None
    if aside is None:
        os.replace(tmp, dest)
        return
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(aside, dest)  # keep the old content where it was
        raise
    discard_later(aside)


# The temp file a restore writes beside its destination. One left by a killed
# process is deleted by a later checkout into the same directory, once it has not
# been written for TEMP_GRACE_S (a live restore writes it every few milliseconds).
_TEMP_NAME = re.compile(r"\..+\.ckptvc-[0-9a-f]{12}\.tmp")
TEMP_GRACE_S = 60.0


def _temp_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.ckptvc-{uuid.uuid4().hex[:12]}.tmp"


def sweep_stale_temps(directory: Path, grace_s: float = TEMP_GRACE_S) -> list[Path]:
    """Delete the restore temp files in `directory` that nothing has written for
    `grace_s` seconds (left by a restore that was killed); return them."""
    cutoff = time.time() - grace_s
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as entries:
        for e in entries:
            if not _TEMP_NAME.fullmatch(e.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
    return removed


def _stamp_just_before_now(path: Path) -> None:
    """Set the file's mtime one nanosecond before the file system's clock (read by
    touching the file): any later write, even within the same clock tick, then moves
    the mtime. The stat cache records the restored file right after this; without it
    the record usually fell within the tick of the last write (11 of 16 checkouts of a
    273 MB file here), was kept as racy, and the next status, add or checkout hashed
    the whole file again to trust it."""
    with contextlib.suppress(OSError):  # then the stamp is racy: hashed again, never trusted wrongly
        now = fs_clock_ns(path)
        os.utime(path, ns=(now, now - 1))


def restore_file(objdb: ObjectDB, entry: FileEntry, dest: Path, jobs: int, progress: Progress = NULL_PROGRESS,
                 label: str | None = None, fsync: bool = False, trash_dir: Path | None = None,
                 pools: WorkerPools | None = None) -> os.stat_result:
    """Rebuild `entry` at `dest`; return the stat of the file as written (before any
    other process could write to `dest`), for the stat cache. The file's blake3 is
    checked before it replaces anything; it covers every byte, so chunks are first decoded without hashing each
    one again. Only on a mismatch is the file rebuilt with every chunk (and every
    delta base) proven against its id, which names the corrupt object, or heals it
    from a remote that has a good copy. fsync=True makes the file durable before
    the rename (the workspace is a copy of verified objects: by default, as with
    git and DVC, it is not). `trash_dir` (on the same file system) receives the file
    being replaced, to be deleted in the background; without it, it is replaced by
    one rename. `pools`: worker threads to use and keep (a checkout of many files);
    without, the file's own are started and stopped."""
    if pools is None:
        with WorkerPools() as own:
            return restore_file(objdb, entry, dest, jobs, progress, label, fsync, trash_dir, own)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(dest)
    task = f"checkout {label or dest.name}"
    progress.start(task, entry.size)
    try:
        once = entry.size >= STREAM_MIN_BYTES
        with open(tmp, "wb+") as f:
            if once:
                reserve(f.fileno(), entry.size, dest)
            try:
                prefetcher = _Prefetcher(objdb, entry, pools, once) if once or objdb.fetch_ahead_jobs else None
                digest = _write_chunks(f, entry, lambda c: objdb.get_raw(c.id, verify=False, once=once), jobs,
                                       progress, task, pools, prefetcher)
            except CorruptObjectError:
                digest = None
            if digest != entry.blake3:
                digest = _write_chunks(f, entry, lambda c: objdb.get_raw(c.id), jobs, progress, task, pools)
            if digest != entry.blake3:
                raise CorruptObjectError(f"{label or dest}: restored content does not match its blake3; file not replaced")
            f.flush()
            _stamp_just_before_now(tmp)
            if fsync:
                os.fsync(f.fileno())
            written = os.fstat(f.fileno())
        os.chmod(tmp, 0o755 if entry.executable else 0o644)
        # fsync asked for durability: keep the one atomic rename (a crash between two
        # renames could leave the path absent)
        _put_in_place(tmp, dest, None if fsync else trash_dir)
        return written
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        progress.finish(task)
