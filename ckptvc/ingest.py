"""Add: stream a file into the object store, chunk by chunk, on all cores.

Each chunk is hashed; a chunk already stored costs nothing. A new chunk is stored
standalone: the newest version of an artifact always restores without reading any
other object. Deltas point backwards: the parent version's same-named chunk (same
tensor, same piece, same size) is re-coded as a delta against the new chunk when
that is smaller (XOR or zigzag integer difference, byte planes, zstd). Older
versions thus hang off newer ones in runs of at most `max_delta_chain` versions;
the run length is kept in each manifest, so a restore of any version reads at most
max_delta_chain + 1 objects per chunk.

Re-coding replaces an object's stored form, never its content or id. It happens
only to standalone objects, against standalone bases, under a lock on the cache,
after the new form has been decoded and checked against the old content, so no
cycle and no wrong byte can be introduced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckptvc.errors import CkptvcError, CorruptObjectError, MissingObjectError
from ckptvc.ids import hash_bytes, new_hasher
from ckptvc.memory import tune_allocator
from ckptvc.objects import codecs, envelope
from ckptvc.objects.chunking import ChunkSpec, iter_chunks
from ckptvc.objects.formats import detect_layout
from ckptvc.objects.manifest import ChunkRef, FileEntry
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import WorkerPools, ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress

tune_allocator()

# Re-code an old object only when the delta saves at least this fraction.
_MIN_SAVING = 0.005


class _LayoutGuess:
    """The element width and alignment of an opaque file (no format understood),
    learnt from probes of its content-defined chunks. A chunk takes the last probe's
    answer, its skip derived from its own offset; every REPROBE_EVERY-th chunk is
    probed again, so a file whose layout changes part way is followed. Probing every
    chunk cost ~15% of coding it (2 GiB of float32: 0.77 of 5.3 CPU-s)."""

    REPROBE_EVERY = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._width = 0
        self._phase = 0
        self._count = 0

    def layout(self, offset: int, data: bytes | memoryview, level: int) -> tuple[int, int]:
        with self._lock:
            n, width, phase = self._count, self._width, self._phase
            self._count += 1
        if width > 1 and n % self.REPROBE_EVERY:
            # only a byte-plane answer is reused: "plain zstd" may just mean the probed
            # sample was a header, and the next chunk is probed as before
            return width, (phase - offset) % width
        width, skip = codecs.probe_layout(data, level)
        with self._lock:
            self._width, self._phase = width, (offset + skip) % width
        return width, skip


@dataclass(frozen=True)
class StorePolicy:
    compression_level: int = 1
    max_delta_chain: int = 8
    chunk_size: int = 2 << 20
    jobs: int = 2


@dataclass
class StoredFile:
    entry: FileEntry
    new_bytes: int  # net growth of the store: new objects minus bytes saved by re-coding
    new_objects: int
    recoded: list[str]  # parent objects re-coded as deltas (push re-sends them)


class Ingester:
    def __init__(self, objdb: ObjectDB, policy: StorePolicy, progress: Progress = NULL_PROGRESS,
                 lock_path: Path | None = None):
        self.objdb = objdb
        self.policy = policy
        self.progress = progress
        self.lock_path = lock_path
        self._recode_lock = threading.Lock()
        # one set of workers for every file this ingester stores (parallel.WorkerPools):
        # per file, peak RSS of a 3-shard checkpoint's add grew 131, 158, 191 MiB
        self._pools = WorkerPools()

    def close(self) -> None:
        self._pools.close()

    def __enter__(self) -> Ingester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _cache_lock(self) -> Iterator[None]:
        """Serialise re-coding across processes sharing this cache."""
        if self.lock_path is None:
            yield
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # ------------------------------------------------------------ one chunk

    def _store_chunk(self, spec: ChunkSpec, data: bytes | memoryview, parent: ChunkRef | None,
                     recode: bool, guess: _LayoutGuess) -> tuple[ChunkRef, int, int]:
        """(ref, bytes written, bytes saved by re-coding the parent chunk)."""
        oid = hash_bytes(data)
        db = self.objdb
        level = self.policy.compression_level
        store = not db.has(oid)
        recode_parent = bool(recode and parent is not None and parent.size == len(data) and parent.id != oid and data)
        width, skip = spec.width, 0
        if width == 0 and data and (store or recode_parent):  # a chunk stored already needs no layout
            width, skip = guess.layout(spec.offset, data, level)
        written = saved = 0
        if store:
            enc = codecs.encode_standalone(data, width, level, skip)
            db.put_encoded(oid, enc, len(data))
            written = envelope.HEADER_SIZE + enc.size
        if recode_parent:
            saved = self._recode_parent(parent.id, oid, data, max(width, 1))
        return ChunkRef(oid, len(data), spec.label), written, saved

    def _recode_parent(self, pid: str, nid: str, n_raw: bytes | memoryview, width: int) -> int:
        db = self.objdb
        try:
            with self._recode_lock:
                if db.info(pid).depth != 0 or db.info(nid).depth != 0:
                    return 0  # already a delta, or the new chunk is one: no chains of chains here
                current = db.stored_size(pid) or 0
            proven = False
            if width == codecs.SPLIT_WIDTH and len(n_raw) % codecs.SPLIT_WIDTH == 0:
                enc, p_raw, sparse = self._split_delta(pid, nid, n_raw)
                proven = p_raw is None
                if sparse:
                    # most elements unchanged: a whole-element delta may be far smaller
                    if p_raw is None:
                        p_raw = db.get_raw(pid)
                    alt = codecs.encode_delta(p_raw, n_raw, nid, 0, width, self.policy.compression_level)
                    if alt is not None and alt.size < enc.size:
                        enc, proven = alt, False
            else:
                p_raw = db.get_raw(pid)
                enc = codecs.encode_delta(p_raw, n_raw, nid, 0, width, self.policy.compression_level)
        except (MissingObjectError, CorruptObjectError):
            return 0  # parent not (intact) in this cache: nothing to re-code
        if enc is None:
            return 0
        new_size = envelope.HEADER_SIZE + enc.size
        if new_size > current * (1 - _MIN_SAVING):
            return 0
        if proven:
            ok = True  # _split_delta checked the only part it coded anew
        else:
            check = codecs.decode(enc.codec, enc.params, memoryview(enc.payload), len(n_raw),
                                  f"object {pid[:12]}", lambda _: n_raw)
            ok = np.array_equal(np.frombuffer(check, np.uint8), np.frombuffer(p_raw, np.uint8))
        if not ok:
            # a codec bug must never cost data: keep the old form
            raise CkptvcError(f"object {pid[:12]}: delta re-coding failed its check; nothing was changed")
        with self._recode_lock:
            if db.info(pid).depth != 0 or db.info(nid).depth != 0:
                return 0
            db.replace_encoded(pid, enc, len(n_raw))
        return current - new_size

    def _split_delta(self, pid: str, nid: str,
                     n_raw: bytes | memoryview) -> tuple[codecs.Encoded, bytes | memoryview | None, bool]:
        """The parent as a SPLIT_SUB delta against the new chunk, the parent's raw
        content when it had to be decoded (the caller checks the new form against it),
        and whether most elements are unchanged (codecs.mostly_unchanged).
        A parent stored as width-4 planes gives its two low planes as they are (they
        are the LO part, byte for byte, already behind the stored form's checksum) and
        its two high planes decoded: then only the HI part is new, and it is checked
        here, so nothing else of the parent is decoded. None means proven."""
        where = f"object {pid[:12]}"
        env = envelope.unpack(self.objdb.read_stored(pid), where, check=False)  # read_stored checked it
        level = self.policy.compression_level
        n_top = codecs.top16(n_raw)
        n_low = np.frombuffer(n_raw, dtype=np.uint8)[:: codecs.SPLIT_WIDTH]
        if env.codec == codecs.PLANES and env.params == bytes([codecs.SPLIT_WIDTH]):
            lo_part = codecs.low_planes_part(env.payload, env.raw_size, where)
            p_top = codecs.top16_of_planes(env.payload, env.raw_size, where)
            enc = codecs.encode_split(lo_part, None, p_top, n_top, nid, 0, level)
            if not codecs.split_hi_decodes_to(enc, p_top, n_top, where):
                # a codec bug must never cost data: keep the old form
                raise CkptvcError(f"{where}: delta re-coding failed its check; nothing was changed")
            p_low = codecs.low_bytes_of_planes(env.payload, env.raw_size, where)
            return enc, None, codecs.mostly_unchanged(p_low, n_low)
        p_raw = self.objdb.get_raw(pid)
        p_low = np.frombuffer(p_raw, dtype=np.uint8)[:: codecs.SPLIT_WIDTH]
        enc = codecs.encode_split(None, p_raw, codecs.top16(p_raw), n_top, nid, 0, level)
        return enc, p_raw, codecs.mostly_unchanged(p_low, n_low)

    # ------------------------------------------------------------ one file

    def store_file(self, path: Path, entry_path: str, parent: FileEntry | None) -> StoredFile:
        st = os.stat(path)
        size = st.st_size
        layout = detect_layout(path, size)
        limit = self.policy.max_delta_chain
        recode = parent is not None and limit > 0 and parent.delta_run < limit
        run = parent.delta_run + 1 if recode and parent is not None else 0
        parents = {c.label: c for c in parent.chunks} if parent else {}
        hasher = new_hasher()
        task = f"add {path.name}"
        self.progress.start(task, size)

        def feed():
            for spec, data in iter_chunks(path, size, layout, self.policy.chunk_size):
                if recode and spec.label in parents:
                    # the worker re-coding this chunk's parent reads it whole: start that
                    # read now, a window of chunks ahead (cold, 228 reads of ~1.7 MB
                    # each kept the workers waiting on the disk one at a time)
                    self.objdb.prefetch(parents[spec.label].id)
                hasher.update(data)
                yield spec, data

        chunks: list[ChunkRef] = []
        new_bytes = new_objects = 0
        recoded: list[str] = []
        lock = self._cache_lock() if recode else contextlib.nullcontext()
        with lock:
            guess = _LayoutGuess()
            # up to 4 chunks per worker in flight: with 2 a slow chunk (a 4 MiB tensor
            # piece re-coding its parent) soon left the other worker idle behind it. At
            # most 16 beyond 2 per worker: memory in flight grows with the window
            jobs = self.policy.jobs
            work = ordered_map(lambda item: self._store_chunk(item[0], item[1], parents.get(item[0].label), recode,
                                                              guess),
                               feed(), jobs, window=max(2 * jobs, min(4 * jobs, 16)),
                               pool=self._pools.get("add", jobs) if jobs > 1 else None)
            for ref, written, saved in work:
                chunks.append(ref)
                new_bytes += written - saved
                new_objects += bool(written)
                if saved:
                    recoded.append(parents[ref.label].id)
                self.progress.advance(task, ref.size)
            if recode:
                # publish re-coded forms while the lock is held: another process must
                # not judge a parent's form (standalone or delta) from a stale copy
                self.objdb.cache.sync()
        self.progress.finish(task)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns) or sum(c.size for c in chunks) != size:
            raise CkptvcError(f"{path}: the file changed while it was being added; add it again when it is complete")
        tensors = {}
        metadata: dict[str, str] = {}
        fmt = "raw"
        if layout is not None:
            fmt = layout.format
            metadata = layout.metadata
            if layout.format == "safetensors":
                tensors = {r.name: [r.dtype, list(r.shape)] for r in layout.regions}
        entry = FileEntry(entry_path, size, hasher.hexdigest(), chunks, bool(st.st_mode & 0o111), fmt, tensors,
                          metadata, run)
        return StoredFile(entry, new_bytes, new_objects, recoded)
