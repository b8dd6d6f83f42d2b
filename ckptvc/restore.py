"""Checkout: rebuild a file from its chunks, verified, and put it in place atomically.

Chunks are decoded on all cores, written in order to a temp file beside the
destination, and the whole file's blake3 is checked before the rename: a corrupt
object never replaces a workspace file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from ckptvc.errors import CorruptObjectError
from ckptvc.memory import tune_allocator
from ckptvc.objects.manifest import FileEntry
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress

tune_allocator()


def restore_file(objdb: ObjectDB, entry: FileEntry, dest: Path, jobs: int, progress: Progress = NULL_PROGRESS,
                 label: str | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.ckptvc-{uuid.uuid4().hex[:12]}.tmp"
    task = f"checkout {label or dest.name}"
    progress.start(task, entry.size)
    hasher = blake3.blake3()
    try:
        # The whole-file hash runs in its own thread, a chunk behind the writes
        # (blake3 and file writes both release the GIL).
        with open(tmp, "wb") as f, ThreadPoolExecutor(max_workers=1) as hashing:
            pending = None
            for chunk, raw in zip(entry.chunks, ordered_map(lambda c: objdb.get_raw(c.id), entry.chunks, jobs),
                                  strict=True):
                if len(raw) != chunk.size:
                    raise CorruptObjectError(f"object {chunk.id[:12]}: size {len(raw)} != {chunk.size} in manifest")
                f.write(raw)
                if pending is not None:
                    pending.result()
                pending = hashing.submit(hasher.update, raw)
                progress.advance(task, len(raw))
            if pending is not None:
                pending.result()
            f.flush()
            if hasher.hexdigest() != entry.blake3:
                raise CorruptObjectError(f"{label or dest}: restored content does not match its blake3; file not replaced")
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755 if entry.executable else 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        progress.finish(task)
