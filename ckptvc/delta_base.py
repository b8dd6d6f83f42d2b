"""A delta base for an artifact at a new path.

Training runs often write each checkpoint under its own name (step-1000.safetensors,
step-2000.safetensors, or checkpoint-N/ folders) instead of over one path. Such a
checkpoint has no previous version, so without a base every one is stored on its own,
sharing only the chunks that are byte-identical (frozen tensors). Here a neighbour
with the same layout (the same tensors, by name and size) is chosen as the base: the
ingester then codes the neighbour's chunks as deltas against the new ones, exactly as
for a new version at one path. The base is a storage choice only, never a lineage
claim: `--parent` says what a checkpoint was trained from.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ckptvc.objects.chunking import plan_tensor_chunks
from ckptvc.objects.formats import detect_layout
from ckptvc.objects.manifest import FileEntry
from ckptvc.pointer import POINTER_SUFFIX

# Pointers read at most, per directory looked in, when looking for a base.
MAX_NEIGHBOURS = 32
# Smaller artifacts are stored without looking for one: little to gain, and adding
# thousands of small files must not read their neighbours' pointers thousands of times.
MIN_BASE_BYTES = 1 << 20
# A base must hold at least this fraction of the new artifact's bytes in ranges of the
# same name and size (a file of another model, or another format, is no base).
MIN_SHARED = 0.5


def _pieces(fp: Path, size: int) -> tuple[str, set[tuple[str, int]] | None]:
    """The file's format and its tensor-aligned ranges as (label, size) (None when
    the format is not understood: its chunks are content-defined)."""
    layout = detect_layout(fp, size)
    if layout is None:
        return "raw", None
    return layout.format, {(c.label, c.length) for c in plan_tensor_chunks(layout, size)}


def find_delta_base(file_list: list[tuple[Path, str]],
                    candidates: Iterable[dict[str, FileEntry]]) -> dict[str, FileEntry] | None:
    """The first candidate (entry path -> file of a tracked version) that shares at
    least MIN_SHARED of the bytes of `file_list` (a new artifact's files), or None. A
    tensor file shares the ranges whose name and size the base's chunks have; an
    opaque file all of itself when the base's file has its size."""
    wanted: list[tuple[str, int, str, set[tuple[str, int]] | None]] = []
    total = 0
    for fp, entry in file_list:
        size = fp.stat().st_size
        fmt, pieces = _pieces(fp, size)
        wanted.append((entry, size, fmt, pieces))
        total += size
    if total == 0:
        return None
    for files in candidates:
        shared = 0
        for entry, size, fmt, pieces in wanted:
            fe = files.get(entry)
            if fe is None or fe.format != fmt:
                continue
            if pieces is None:
                shared += size if fe.size == size else 0
            else:
                have = {(c.label, c.size) for c in fe.chunks}
                shared += sum(length for label, length in pieces if (label, length) in have)
        if shared >= MIN_SHARED * total:
            return files
    return None


def _entries(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return []


def _newest(paths: Iterable[str], own: str) -> list[Path]:
    stamped = []
    for path in paths:
        if path == own:
            continue
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            stamped.append((st.st_mtime_ns, path))
    stamped.sort(reverse=True)
    return [Path(path) for _, path in stamped[:MAX_NEIGHBOURS]]


def sibling_pointers(p: Path, root: Path) -> list[Path]:
    """Pointers beside `p`, then pointers of `p`'s name in the other subdirectories of
    its parent's parent (inside `root`, the work tree), each group newest first and
    at most MAX_NEIGHBOURS long; `p`'s own pointer excluded."""
    own = str(p.parent / (p.name + POINTER_SUFFIX))
    beside = [e.path for e in _entries(p.parent) if e.name.endswith(POINTER_SUFFIX)]
    cousins: list[str] = []
    if p.parent != root and root in p.parent.parents:
        cousins = [os.path.join(e.path, p.name + POINTER_SUFFIX) for e in _entries(p.parent.parent)
                   if e.is_dir(follow_symlinks=False)]
    return _newest(beside, own) + _newest(cousins, own)
