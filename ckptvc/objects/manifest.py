"""Manifests: the object that lists an artifact's files and each file's chunks.

Canonical JSON (sorted keys, no spaces), so equal content gives an equal id.
Schema in docs/formats.md. Decoding validates everything a later step trusts:
ids, sizes, and that file paths stay inside the artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ckptvc.errors import CorruptObjectError
from ckptvc.ids import is_valid_id

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ChunkRef:
    id: str
    size: int
    label: str = ""


@dataclass
class FileEntry:
    path: str  # "" for a single-file artifact, else relative, "/"-separated
    size: int
    blake3: str
    chunks: list[ChunkRef]
    executable: bool = False
    format: str = "raw"
    tensors: dict[str, list] = field(default_factory=dict)  # name -> [dtype, shape]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__
    delta_run: int = 0  # older versions coded as deltas hanging from this one (chain bound)


@dataclass
class Manifest:
    kind: str  # "file" or "dir"
    files: list[FileEntry]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def chunk_ids(self) -> set[str]:
        return {c.id for f in self.files for c in f.chunks}

    def to_bytes(self) -> bytes:
        files = []
        for fe in self.files:
            d = {
                "path": fe.path,
                "size": fe.size,
                "blake3": fe.blake3,
                "chunks": [[c.id, c.size, c.label] for c in fe.chunks],
                "format": fe.format,
            }
            if fe.executable:
                d["executable"] = True
            if fe.tensors:
                d["tensors"] = fe.tensors
            if fe.metadata:
                d["metadata"] = fe.metadata
            if fe.delta_run:
                d["delta_run"] = fe.delta_run
            files.append(d)
        doc = {"ckptvc_manifest": MANIFEST_VERSION, "kind": self.kind, "files": files}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("ckptvc_manifest") != MANIFEST_VERSION:
                raise ValueError("not a version 1 manifest")
            kind = doc["kind"]
            if kind not in ("file", "dir"):
                raise ValueError(f"bad kind {kind!r}")
            files = []
            for d in doc["files"]:
                path = d["path"]
                check_relative_path(path, allow_empty=(kind == "file"))
                chunks = []
                total = 0
                for c in d["chunks"]:
                    cid, size, label = c[0], c[1], c[2]
                    if not is_valid_id(cid):
                        raise ValueError("bad chunk id")
                    if not isinstance(size, int) or size < 0:
                        raise ValueError("bad chunk size")
                    total += size
                    chunks.append(ChunkRef(cid, size, str(label)))
                size = d["size"]
                if total != size or not is_valid_id(d["blake3"]):
                    raise ValueError(f"file {path!r}: chunk sizes do not add up")
                run = d.get("delta_run", 0)
                if not isinstance(run, int) or run < 0:
                    raise ValueError("bad delta_run")
                files.append(FileEntry(path, size, d["blake3"], chunks, bool(d.get("executable", False)),
                                       str(d.get("format", "raw")), dict(d.get("tensors", {})),
                                       dict(d.get("metadata", {})), run))
            if kind == "file" and (len(files) != 1 or files[0].path != ""):
                raise ValueError("a file manifest lists exactly one file with an empty path")
            return cls(kind, files)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CorruptObjectError(f"{where}: malformed manifest: {exc}") from exc


def check_relative_path(path: object, allow_empty: bool = False) -> None:
    """Raise ValueError unless `path` is a safe relative path ("a/b", no "..")."""
    if not isinstance(path, str):
        raise ValueError("path is not a string")
    if path == "":
        if allow_empty:
            return
        raise ValueError("empty path")
    if path.startswith("/") or "\\" in path or "\0" in path or (len(path) > 1 and path[1] == ":"):
        raise ValueError(f"absolute or non-portable path {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"path {path!r} has an empty, '.' or '..' component")
