"""The stored form of every object: a fixed header, codec parameters, a payload.

    offset size  field
    0      4     magic b"CKVO"
    4      1     envelope version (1)
    5      1     codec id (see codecs.py)
    6      2     length of codec params, little-endian
    8      8     raw (decoded) size, little-endian
    16     32    blake3 of the payload: transfers and fsck check stored bytes
                 without decoding (a delta would need its base for that)
    48     P     codec params
    48+P   ...   payload

The object's id is NOT in here: it is the blake3 of the decoded content and the
key under which the store keeps the envelope. Codecs change the envelope, never the id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3

from ckptvc.errors import CorruptObjectError

MAGIC = b"CKVO"
ENVELOPE_VERSION = 1
HEADER = struct.Struct("<4sBBHQ32s")
HEADER_SIZE = HEADER.size  # 48
# Chunks are at most 16 MiB raw; manifests of huge directories may be larger.
MAX_RAW_SIZE = 1 << 30


@dataclass(frozen=True)
class Envelope:
    codec: int
    raw_size: int
    params: bytes
    payload: memoryview | bytes


# Codec ids whose params start with a 32-byte base id, then width, then chain depth
# (see codecs.py). Kept here so header-only readers need not import the codecs.
DELTA_CODECS = (3, 4, 5)
DELTA_PARAMS_LEN = {3: 34, 4: 34, 5: 35}


def delta_base(codec: int, params: bytes) -> str | None:
    """The id of the object a stored object depends on, if any."""
    if codec in DELTA_CODECS and len(params) == DELTA_PARAMS_LEN[codec]:
        return params[:32].hex()
    return None


def chain_depth(codec: int, params: bytes) -> int:
    """How many delta bases a decode of this object reads (0 for standalone)."""
    if codec in DELTA_CODECS and len(params) == DELTA_PARAMS_LEN[codec]:
        return params[33]
    return 0


def pack_parts(codec: int, raw_size: int, params: bytes, parts) -> list:
    """The envelope as a list of buffers: header, params, payload parts (not joined)."""
    h = blake3.blake3()
    for part in parts:
        h.update(part)
    header = HEADER.pack(MAGIC, ENVELOPE_VERSION, codec, len(params), raw_size, h.digest())
    return [header, params, *parts]


def pack(codec: int, raw_size: int, params: bytes, payload) -> bytes:
    parts = payload if isinstance(payload, list | tuple) else [payload]
    return b"".join(pack_parts(codec, raw_size, params, parts))


def parse_header(data: bytes | memoryview, where: str) -> tuple[int, int, bytes, int]:
    """(codec, raw_size, params, payload_offset) from the head of an envelope."""
    if len(data) < HEADER_SIZE:
        raise CorruptObjectError(f"{where}: truncated object header")
    magic, version, codec, plen, raw_size, _ = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptObjectError(f"{where}: not a ckptvc object (bad magic)")
    if version != ENVELOPE_VERSION:
        raise CorruptObjectError(f"{where}: unknown object envelope version {version}")
    if raw_size > MAX_RAW_SIZE:
        raise CorruptObjectError(f"{where}: implausible raw size {raw_size}")
    if len(data) < HEADER_SIZE + plen:
        raise CorruptObjectError(f"{where}: truncated codec params")
    params = bytes(data[HEADER_SIZE : HEADER_SIZE + plen])
    return codec, raw_size, params, HEADER_SIZE + plen


def unpack(data: bytes, where: str, check: bool = True) -> Envelope:
    """Parse and (unless the caller verifies the decoded content against its id
    anyway) check the payload checksum; raises CorruptObjectError."""
    codec, raw_size, params, off = parse_header(data, where)
    payload = memoryview(data)[off:]
    expected = bytes(data[16:48])
    if check and blake3.blake3(payload).digest() != expected:
        raise CorruptObjectError(f"{where}: stored bytes are corrupt (payload checksum mismatch)")
    return Envelope(codec, raw_size, params, payload)
