"""Checkout: rebuild a file from its chunks, verified, and put it in place atomically.

Chunks are decoded on all cores, written in order to a temp file beside the
destination, and the whole file's blake3 is checked before the rename: a corrupt
object never replaces a workspace file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from ckptvc.errors import CorruptObjectError
from ckptvc.ids import new_hasher
from ckptvc.objects.manifest import FileEntry
from ckptvc.objects.objectdb import ObjectDB
from ckptvc.parallel import ordered_map
from ckptvc.progress import NULL_PROGRESS, Progress


def restore_file(objdb: ObjectDB, entry: FileEntry, dest: Path, jobs: int, progress: Progress = NULL_PROGRESS,
                 label: str | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.ckptvc-{uuid.uuid4().hex[:12]}.tmp"
    task = f"checkout {label or dest.name}"
    progress.start(task, entry.size)
    hasher = new_hasher()
    try:
        with open(tmp, "wb") as f:
            for chunk, raw in zip(entry.chunks, ordered_map(lambda c: objdb.get_raw(c.id), entry.chunks, jobs),
                                  strict=True):
                if len(raw) != chunk.size:
                    raise CorruptObjectError(f"object {chunk.id[:12]}: size {len(raw)} != {chunk.size} in manifest")
                f.write(raw)
                hasher.update(raw)
                progress.advance(task, len(raw))
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
