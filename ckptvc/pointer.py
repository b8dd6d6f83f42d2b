"""Pointer files: the small text file committed to git in place of an artifact.

`PATH.ckpt` sits beside the artifact `PATH`. Canonical JSON: the version key
first, then the fixed keys in a fixed order, then any other keys sorted (unknown
keys written by newer versions are kept on rewrite); nested objects sorted; two
spaces of indent; one trailing newline. Same content, same bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptvc.errors import MalformedPointerError
from ckptvc.ids import is_valid_id
from ckptvc.objects.manifest import check_relative_path

POINTER_SUFFIX = ".ckpt"
POINTER_VERSION = 1
MAX_POINTER_SIZE = 1 << 20
_FIXED_KEYS = ("ckptvc", "kind", "size", "blake3", "manifest", "stored_bytes", "meta")
# metadata keys whose values name paths in the repository (lineage edges)
PATH_META_KEYS = ("parent", "tokenizer", "config", "dataset")


@dataclass
class Pointer:
    kind: str  # "file" or "dir"
    size: int
    blake3: str  # of the file's bytes; for a dir, of its manifest's file list
    manifest: str
    stored_bytes: int = 0  # encoded bytes this version added to the store
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, preserved

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "ckptvc": POINTER_VERSION,
            "kind": self.kind,
            "size": self.size,
            "blake3": self.blake3,
            "manifest": self.manifest,
            "stored_bytes": self.stored_bytes,
        }
        if self.meta:
            doc["meta"] = _sorted(self.meta)
        for key in sorted(self.extra):
            doc[key] = _sorted(self.extra[key])
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Pointer:
        def bad(problem: str) -> MalformedPointerError:
            return MalformedPointerError(f"{where}: malformed pointer: {problem}")

        if len(data) > MAX_POINTER_SIZE:
            raise bad("file is too large to be a pointer")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise bad("not UTF-8 text") from None
        for line in text.splitlines():
            if line.startswith(("<<<<<<<", ">>>>>>>", "=======", "|||||||")):
                raise bad("it has merge-conflict markers; resolve the conflict, then run 'ckptvc add' again")
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise bad(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        version = doc.get("ckptvc")
        if version != POINTER_VERSION:
            raise bad(f"unknown pointer version {version!r} (this ckptvc reads version {POINTER_VERSION})")
        kind, size, digest, manifest = doc.get("kind"), doc.get("size"), doc.get("blake3"), doc.get("manifest")
        if kind not in ("file", "dir"):
            raise bad(f"'kind' must be \"file\" or \"dir\", not {kind!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad("'size' must be a non-negative integer")
        if not is_valid_id(digest):
            raise bad("'blake3' must be 64 lowercase hex characters")
        if not is_valid_id(manifest):
            raise bad("'manifest' must be 64 lowercase hex characters")
        stored = doc.get("stored_bytes", 0)
        if not isinstance(stored, int) or isinstance(stored, bool) or stored < 0:
            raise bad("'stored_bytes' must be a non-negative integer")
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise bad("'meta' must be an object")
        for key in PATH_META_KEYS:
            ref = meta.get(key)
            paths = [ref.get("path")] if isinstance(ref, dict) and "path" in ref else []
            for p in paths:
                if isinstance(p, str) and "://" in p:
                    continue
                try:
                    check_relative_path(p)
                except ValueError as exc:
                    raise bad(f"meta.{key}: {exc}") from None
        extra = {k: v for k, v in doc.items() if k not in _FIXED_KEYS}
        return cls(kind, size, digest, manifest, stored, meta, extra)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def pointer_path_for(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + POINTER_SUFFIX)


def artifact_path_for(pointer: Path) -> Path:
    return pointer.with_name(pointer.name[: -len(POINTER_SUFFIX)])


def looks_like_pointer(path: Path) -> bool:
    """A *.ckpt file that is text, not a binary checkpoint that happens to share the
    suffix (PyTorch Lightning writes *.ckpt zips and pickles)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if size > MAX_POINTER_SIZE or not head:
        return size == 0
    return head[:2] != b"PK" and head[:1] != b"\x80" and b"\0" not in head


def read_pointer(path: Path, where: str | None = None) -> Pointer:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MalformedPointerError(f"{where or path}: cannot read pointer: {exc.strerror}") from None
    return Pointer.from_bytes(data, where or str(path))
