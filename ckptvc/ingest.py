"""Add: stream a file into the object store, chunk by chunk, on all cores.

Each chunk is hashed; a chunk already stored costs nothing. A new chunk is coded
standalone and, when the parent version has a same-named chunk of the same size
(same tensor, same piece), also as a delta against it; the smaller form is kept,
within the delta chain bound.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ckptvc.errors import CkptvcError, MissingObjectError
from ckptvc.ids import hash_bytes, new_hasher
from ckptvc.objects import codecs
from ckptvc.objects.chunking import ChunkSpec, iter_chunks
from ckptvc.objects.formats import detect_layout
from ckptvc.objects.manifest import ChunkRef, FileEntry
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress


@dataclass(frozen=True)
class StorePolicy:
    compression_level: int = 1
    max_delta_chain: int = 8
    chunk_size: int = 2 << 20
    jobs: int = 2


@dataclass
class StoredFile:
    entry: FileEntry
    new_bytes: int  # encoded bytes written to the store
    new_objects: int


class Ingester:
    def __init__(self, objdb: ObjectDB, policy: StorePolicy, progress: Progress = NULL_PROGRESS):
        self.objdb = objdb
        self.policy = policy
        self.progress = progress

    def _store_chunk(self, spec: ChunkSpec, data: bytes, parent: ChunkRef | None) -> tuple[ChunkRef, int]:
        oid = hash_bytes(data)
        db = self.objdb
        if db.has(oid):
            try:
                base = db.info(oid).base
            except CkptvcError:
                base = None
            return ChunkRef(oid, len(data), spec.label, base), 0
        level = self.policy.compression_level
        width = spec.width
        skip = 0
        if width == 0:
            width, skip = codecs.probe_layout(data, level)
        best = codecs.encode_standalone(data, width, level, skip)
        base_id = None
        if parent is not None and parent.size == len(data) and parent.id != oid and self.policy.max_delta_chain > 0:
            try:
                info = db.info(parent.id)
                if info.depth < self.policy.max_delta_chain:
                    base_raw = db.get_raw(parent.id)
                    delta = codecs.encode_delta(data, base_raw, parent.id, info.depth, width, level)
                    if delta is not None and delta.size < best.size:
                        best, base_id = delta, parent.id
            except MissingObjectError:
                pass  # parent not in this cache (e.g. never fetched): code standalone
        db.put_encoded(oid, best, len(data))
        return ChunkRef(oid, len(data), spec.label, base_id), best.size

    def store_file(self, path: Path, entry_path: str, parent: FileEntry | None) -> StoredFile:
        st = os.stat(path)
        size = st.st_size
        layout = detect_layout(path, size)
        parents = {c.label: c for c in parent.chunks} if parent else {}
        hasher = new_hasher()
        task = f"add {path.name}"
        self.progress.start(task, size)

        def feed():
            for spec, data in iter_chunks(path, size, layout, self.policy.chunk_size):
                hasher.update(data)
                yield spec, data

        chunks: list[ChunkRef] = []
        new_bytes = new_objects = 0
        for ref, written in ordered_map(lambda item: self._store_chunk(item[0], item[1], parents.get(item[0].label)),
                                        feed(), self.policy.jobs, window=self.policy.jobs * 3):
            chunks.append(ref)
            if written:
                new_bytes += written
                new_objects += 1
            self.progress.advance(task, ref.size)
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
        entry = FileEntry(entry_path, size, hasher.hexdigest(), chunks, bool(st.st_mode & 0o111), fmt, tensors, metadata)
        return StoredFile(entry, new_bytes, new_objects)
