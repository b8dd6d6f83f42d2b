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


# torch.save's storage classes (as its pickle names them) -> safetensors dtype
TORCH_STORAGE_DTYPE = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}
MAX_TORCH_PICKLE = 4 << 20  # real ones are KBs; the opcode walk is pure Python
_PICKLE_STRINGS = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "BINSTRING", "SHORT_BINSTRING",
                   "STRING"}


def torch_storage_dtypes(pickle_bytes: bytes) -> dict[str, str]:
    """Storage key -> dtype, read from the opcodes of a torch.save data.pkl without
    running it. Each storage is pickled as a persistent id ('storage', <class>, key,
    location, numel): the class (a GLOBAL, or a memo fetch of one) is followed by the
    key string. Anything unexpected gives a partial or empty answer, never an error."""
    import pickletools

    out: dict[str, str] = {}
    memo: dict[int, object] = {}
    recent: list[object] = []  # values pushed lately, for STACK_GLOBAL and the key after a class
    try:
        for op, arg, _ in pickletools.genops(pickle_bytes):
            name = op.name
            if name == "GLOBAL":
                value = str(arg).replace(" ", ".")
            elif name == "STACK_GLOBAL":
                value = ".".join(str(v) for v in recent[-2:]) if len(recent) >= 2 else None
            elif name in _PICKLE_STRINGS:
                value = arg if isinstance(arg, str) else None
                if recent and isinstance(recent[-1], _StorageClass) and value is not None:
                    out[value] = recent[-1].dtype
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = recent[-1] if recent else None
                continue
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
                continue
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                value = memo.get(int(arg))
            else:
                value = None
            if isinstance(value, str) and value.startswith("torch.") and value[6:] in TORCH_STORAGE_DTYPE:
                value = _StorageClass(TORCH_STORAGE_DTYPE[value[6:]])
            recent = [*recent[-1:], value]
    except Exception:  # noqa: BLE001 - a hint: whatever a hostile pickle does, the bytes are probed instead
        pass
    return out


@dataclass(frozen=True)
class _StorageClass:
    dtype: str


def parse_torch_zip(path: str | os.PathLike[str], file_size: int) -> Layout | None:
    """Storages of a torch.save zip: stored (uncompressed) members under */data/.

    Regions are named by their path inside the archive's top folder ("data/3"): torch
    names that folder after the file ("ckpt-000/data/3" in ckpt-000.pt), and a series
    saved under changing names must still pair each storage with its parent's. The
    element width comes from the dtype that data.pkl gives each storage (0, probed
    from the bytes, where it says nothing)."""
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            regions: list[Region] = []
            dtypes: dict[str, str] = {}
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[1] == "data.pkl" and info.file_size <= MAX_TORCH_PICKLE:
                    dtypes = torch_storage_dtypes(zf.read(info))
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
                regions.append(Region("/".join(parts[1:]), start, info.file_size, 0))
    except (zipfile.BadZipFile, OSError, ValueError, struct.error, EOFError, NotImplementedError, RuntimeError):
        return None
    if not regions:
        return None
    typed = []
    for r in regions:
        dtype = dtypes.get(r.name.rsplit("/", 1)[-1], "") if r.name.count("/") == 1 else ""
        width = DTYPE_WIDTH.get(dtype, 0)
        typed.append(Region(r.name, r.offset, r.length, width if width and r.length % width == 0 else 0, dtype))
    typed.sort(key=lambda r: r.offset)
    for a, b in zip(typed, typed[1:], strict=False):
        if a.offset + a.length > b.offset:
            return None
    return Layout("torch", typed)


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
