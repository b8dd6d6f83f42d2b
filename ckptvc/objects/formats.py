"""Checkpoint file formats: where the tensors are, read from headers alone.

Parsers are defensive: a header that lies (offsets out of range or overlapping,
huge length, bad JSON) yields None, and the file is chunked as opaque bytes.
Nothing here reads tensor data.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field

# safetensors dtype -> element width in bytes
DTYPE_WIDTH = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
MAX_SAFETENSORS_HEADER = 100 << 20


@dataclass(frozen=True)
class Region:
    """A byte range of a file holding one tensor (or storage) of known element width.
    width 0 means the element type is unknown and the codec probes it."""

    name: str
    offset: int
    length: int
    width: int
    dtype: str = ""
    shape: tuple[int, ...] = ()


@dataclass
class Layout:
    format: str
    regions: list[Region]
    metadata: dict[str, str] = field(default_factory=dict)


def _read_exact(f, n: int) -> bytes | None:
    data = f.read(n)
    return data if len(data) == n else None


def parse_safetensors(path: str | os.PathLike[str], file_size: int) -> Layout | None:
    try:
        with open(path, "rb") as f:
            head = _read_exact(f, 8)
            if head is None:
                return None
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > MAX_SAFETENSORS_HEADER or 8 + n > file_size:
                return None
            raw = _read_exact(f, n)
    except OSError:
        return None
    if raw is None or raw[:1] != b"{":
        return None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    data_start = 8 + n
    data_len = file_size - data_start
    metadata: dict[str, str] = {}
    regions: list[Region] = []
    for name, info in header.items():
        if name == "__metadata__":
            if isinstance(info, dict):
                metadata = {str(k): str(v) for k, v in info.items()}
            continue
        if not isinstance(info, dict):
            return None
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_WIDTH or not isinstance(shape, list) or not isinstance(offs, list) or len(offs) != 2:
            return None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            return None
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offs):
            return None
        begin, end = offs
        if not 0 <= begin <= end <= data_len:
            return None
        numel = 1
        for d in shape:
            numel *= d
        if numel * DTYPE_WIDTH[dtype] != end - begin:
            return None
        regions.append(Region(name, data_start + begin, end - begin, DTYPE_WIDTH[dtype], dtype, tuple(shape)))
    regions.sort(key=lambda r: r.offset)
    for a, b in zip(regions, regions[1:], strict=False):
        if a.offset + a.length > b.offset:
            return None  # overlapping tensors: the header lies
    return Layout("safetensors", regions, metadata)


def parse_torch_zip(path: str | os.PathLike[str], file_size: int) -> Layout | None:
    """Storages of a torch.save zip: stored (uncompressed) members under */data/."""
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            regions: list[Region] = []
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) < 3 or parts[-2] != "data" or info.compress_type != zipfile.ZIP_STORED:
                    continue
                f.seek(info.header_offset)
                local = _read_exact(f, 30)
                if local is None or local[:4] != b"PK\x03\x04":
                    return None
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_len + extra_len
                if start + info.file_size > file_size:
                    return None
                regions.append(Region(info.filename, start, info.file_size, 0))
    except (zipfile.BadZipFile, OSError, ValueError, struct.error, EOFError):
        return None
    if not regions:
        return None
    regions.sort(key=lambda r: r.offset)
    for a, b in zip(regions, regions[1:], strict=False):
        if a.offset + a.length > b.offset:
            return None
    return Layout("torch", regions)


def detect_layout(path: str | os.PathLike[str], file_size: int) -> Layout | None:
    """The tensor layout of a checkpoint file, or None for opaque bytes."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    if magic[:2] == b"PK":
        return parse_torch_zip(path, file_size)
    if len(magic) == 4 and file_size >= 10:
        layout = parse_safetensors(path, file_size)
        if layout is not None:
            return layout
    return None
