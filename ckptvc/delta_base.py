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
import posixpath
import re
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


def _shared_bytes(size: int, fmt: str, pieces: set[tuple[str, int]] | None, fe: FileEntry) -> int:
    """Bytes of a new file (its size, format and pieces) that `fe` has in ranges of the
    same name and size: for a tensor file the pieces the base's chunks match, for an
    opaque file all of it when the base has its size."""
    if fe.format != fmt:
        return 0
    if pieces is None:
        return size if fe.size == size else 0
    have = {(c.label, c.size) for c in fe.chunks}
    return sum(length for label, length in pieces if (label, length) in have)


def find_delta_base(file_list: list[tuple[Path, str]],
                    candidates: Iterable[dict[str, FileEntry]]) -> dict[str, FileEntry] | None:
    """The first candidate (entry path -> file of a tracked version) that shares at
    least MIN_SHARED of the bytes of `file_list` (a new artifact's files), or None."""
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
            if fe is not None:
                shared += _shared_bytes(size, fmt, pieces, fe)
        if shared >= MIN_SHARED * total:
            return files
    return None


def same_name_elsewhere(candidate: str, new: str) -> bool:
    """Whether `candidate` has `new`'s file name in another folder ("/"-separated
    paths). Such a file is the likeliest delta base (checkpoint-#/optimizer.pt,
    global_step#/zero_pp_rank_1_optim_states.pt): the number that differs is the
    folder's, the step. A file beside the new one with another number may be another
    rank or shard of the same step: the same layout, unrelated content."""
    return (posixpath.basename(candidate) == posixpath.basename(new)
            and posixpath.dirname(candidate) != posixpath.dirname(new))


_NUMBER = re.compile(r"[0-9]+")


def name_key(entry_path: str) -> str:
    """An entry path with its numbers blanked: checkpoint-500/optimizer.pt and
    checkpoint-1000/optimizer.pt have one key, as have step-10.safetensors and
    step-20.safetensors."""
    return _NUMBER.sub("#", entry_path)


def sibling_file_base(fp: Path, entry_path: str, written: int,
                      known: Iterable[tuple[str, FileEntry, int]]) -> FileEntry | None:
    """A delta base for a new file of a folder artifact that has none at its own path
    (a folder of checkpoints: outputs/checkpoint-1500/ beside checkpoint-1000/): among
    `known` files of the folder, (entry path, entry, when written), the newest one
    written no later than `written` whose path has the same name_key and which holds
    at least MIN_SHARED of the new file's bytes in ranges of the same name and size.
    The shards of one checkpoint share a key but not their tensors: none is a base
    for another."""
    size = fp.stat().st_size
    if size < MIN_BASE_BYTES:
        return None
    key = name_key(entry_path)
    matches = [(when, fe) for path, fe, when in known
               if path != entry_path and when <= written and size // 2 <= fe.size <= size * 2
               and name_key(path) == key]
    if not matches:
        return None
    fmt, pieces = _pieces(fp, size)
    for _, fe in sorted(matches, key=lambda m: (same_name_elsewhere(m[1].path, entry_path), m[0]), reverse=True):
        if _shared_bytes(size, fmt, pieces, fe) >= MIN_SHARED * size:
            return fe
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
