"""The work tree: which artifacts are tracked, and whether files match their pointers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ckptvc.errors import UserInputError
from ckptvc.pointer import POINTER_SUFFIX, Pointer, artifact_path_for, looks_like_pointer, read_pointer

SKIP_DIRS = {".git", ".ckptvc"}


@dataclass
class TrackedArtifact:
    path: str  # relative to the work tree root, "/"-separated
    pointer_path: str
    pointer: Pointer


def rel(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix() if path.is_absolute() else path.as_posix()
    except ValueError:
        raise UserInputError(f"{path}: outside the repository {root}") from None


def find_pointer_files(root: Path, under: Path | None = None) -> list[Path]:
    """Every pointer file below `under` (default: the whole work tree), skipping .git,
    .ckptvc and the inside of directory artifacts."""
    start = under or root
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(start):
        names = set(filenames)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d + POINTER_SUFFIX not in names)
        for name in sorted(filenames):
            if name.endswith(POINTER_SUFFIX) and len(name) > len(POINTER_SUFFIX):
                p = Path(dirpath) / name
                if looks_like_pointer(p):
                    found.append(p)
    return found


def load_tracked(root: Path, pointer_files: list[Path]) -> list[TrackedArtifact]:
    out = []
    for pf in pointer_files:
        rel_pointer = pf.relative_to(root).as_posix()
        ptr = read_pointer(pf, rel_pointer)
        out.append(TrackedArtifact(artifact_path_for(Path(rel_pointer)).as_posix(), rel_pointer, ptr))
    return out
