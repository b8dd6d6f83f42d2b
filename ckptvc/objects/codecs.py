"""Codecs: how an object's raw bytes become its stored payload, and back.

Every codec is lossless; the object id (blake3 of the raw bytes) never depends on
the codec. Codec ids are part of the stored format (docs/formats.md): never reuse
or renumber one, add new ids instead so old repositories stay readable.

  0 RAW         payload = raw bytes
  1 ZSTD        payload = one zstd frame
  2 PLANES      params = width (u8). The bytes of each W-byte element are grouped by
                position ("byte planes": for little-endian floats the last plane holds
                sign+exponent, the first the low mantissa), each plane stored as zstd or
                raw, whichever is smaller; trailing len % W bytes stored raw.
  3 XOR_PLANES  params = base id (32 bytes) + width (u8) + chain depth (u8). payload =
                PLANES of (raw XOR base), base being an object of the same raw size.
                Depth is 1 + the base's depth (standalone objects have depth 0), so
                the bound on delta chains is checked from headers alone.
  4 SUB_PLANES  params as XOR_PLANES, width 2, 4 or 8. payload = PLANES of the
                zigzag-coded element-wise integer difference d = (raw - base) mod 2**(8W),
                read as signed: zz = (d << 1) ^ (d >> (8W - 1)). A small step of a float,
                up or down, has small |d|: zigzag keeps the sign in the lowest bit, so the
                high byte planes are zero instead of 0x00/0xFF noise.

PLANES params may carry a second byte, `skip`: that many leading bytes are stored
raw before the planes, to align elements in a chunk cut at an arbitrary offset.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zstandard

from ckptvc.errors import CorruptObjectError
from ckptvc.objects import envelope

RAW, ZSTD, PLANES, XOR_PLANES, SUB_PLANES = 0, 1, 2, 3, 4
DELTA_CODECS = envelope.DELTA_CODECS
assert DELTA_CODECS == (XOR_PLANES, SUB_PLANES)
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", PLANES: "planes", XOR_PLANES: "xor", SUB_PLANES: "sub"}

_PLANE_RAW, _PLANE_ZSTD = 0, 1
_PLANE_HEAD = struct.Struct("<BI")
# A plane whose sample compresses worse than this is stored raw without trying the rest.
_SAMPLE = 64 << 10
_SAMPLE_GIVE_UP = 0.999
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True)
class Encoded:
    codec: int
    params: bytes
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.params) + len(self.payload)


# ---------------------------------------------------------------- planes


def _split_planes(raw: memoryview | bytes, width: int) -> tuple[list[np.ndarray], bytes]:
    n = len(raw) // width
    arr = np.frombuffer(raw, dtype=np.uint8, count=n * width)
    grouped = arr.reshape(n, width).T.copy()  # one contiguous row per byte position
    tail = bytes(raw[n * width :])
    return [grouped[i] for i in range(width)], tail


def _compress_plane(plane: np.ndarray | bytes, level: int) -> tuple[int, bytes]:
    data = plane if isinstance(plane, bytes) else plane.tobytes()
    if not data:
        return _PLANE_RAW, data
    c = _compressor(level)
    if len(data) > 4 * _SAMPLE:
        sample = c.compress(data[:_SAMPLE])
        if len(sample) > _SAMPLE_GIVE_UP * _SAMPLE:
            return _PLANE_RAW, data
    z = c.compress(data)
    if len(z) < len(data):
        return _PLANE_ZSTD, z
    return _PLANE_RAW, data


def encode_planes_payload(raw: memoryview | bytes, width: int, level: int) -> bytes:
    if width <= 1:
        planes, tail = [np.frombuffer(raw, dtype=np.uint8)], b""
    else:
        planes, tail = _split_planes(raw, width)
    parts: list[bytes] = []
    for plane in planes:
        mode, data = _compress_plane(plane, level)
        parts.append(_PLANE_HEAD.pack(mode, len(data)))
        parts.append(data)
    parts.append(tail)
    return b"".join(parts)


def decode_planes_payload(payload: memoryview, raw_size: int, width: int, where: str) -> np.ndarray:
    """Decoded bytes as a uint8 array of raw_size."""
    width = max(width, 1)
    n = raw_size // width
    out = np.empty((n, width), dtype=np.uint8)
    off = 0
    for i in range(width):
        if off + _PLANE_HEAD.size > len(payload):
            raise CorruptObjectError(f"{where}: truncated plane header")
        mode, length = _PLANE_HEAD.unpack_from(payload, off)
        off += _PLANE_HEAD.size
        data = payload[off : off + length]
        if len(data) != length:
            raise CorruptObjectError(f"{where}: truncated plane data")
        off += length
        if mode == _PLANE_RAW:
            plane = data
        elif mode == _PLANE_ZSTD:
            try:
                plane = _decompressor().decompress(data, max_output_size=n)
            except zstandard.ZstdError as exc:
                raise CorruptObjectError(f"{where}: bad zstd plane: {exc}") from exc
        else:
            raise CorruptObjectError(f"{where}: unknown plane mode {mode}")
        if len(plane) != n:
            raise CorruptObjectError(f"{where}: plane size {len(plane)} != {n}")
        out[:, i] = np.frombuffer(plane, dtype=np.uint8)
    tail = payload[off:]
    if len(tail) != raw_size - n * width:
        raise CorruptObjectError(f"{where}: bad tail length")
    flat = out.reshape(-1)
    if len(tail):
        flat = np.concatenate([flat, np.frombuffer(tail, dtype=np.uint8)])
    return flat


# ---------------------------------------------------------------- deltas


def _uint_view(buf: np.ndarray | bytes | memoryview, width: int) -> np.ndarray:
    dt = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a) // width
    return a[: n * width].view(dt)


def _xor(a: memoryview | bytes | np.ndarray, b: memoryview | bytes | np.ndarray) -> np.ndarray:
    x = np.frombuffer(a, dtype=np.uint8)
    y = np.frombuffer(b, dtype=np.uint8)
    n8 = len(x) // 8 * 8
    out = np.empty(len(x), dtype=np.uint8)
    np.bitwise_xor(x[:n8].view(np.uint64), y[:n8].view(np.uint64), out=out[:n8].view(np.uint64))
    np.bitwise_xor(x[n8:], y[n8:], out=out[n8:])
    return out


_SIGNED = {2: np.int16, 4: np.int32, 8: np.int64}


def _sub(a: memoryview | bytes | np.ndarray, b: memoryview | bytes | np.ndarray, width: int) -> np.ndarray:
    """Zigzag of the element-wise difference a - b (wrapping), as bytes."""
    x, y = np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8)
    n = len(x) // width * width
    out = np.empty(len(x), dtype=np.uint8)
    ux = _uint_view(x, width)
    d = np.subtract(ux, _uint_view(y, width))
    sd = d.view(_SIGNED[width])
    zz = out[:n].view(ux.dtype)
    np.left_shift(d, 1, out=zz)
    np.bitwise_xor(zz, (sd >> (8 * width - 1)).view(ux.dtype), out=zz)
    np.subtract(x[n:], y[n:], out=out[n:])
    return out


def _add(zz_bytes: np.ndarray, b: memoryview | bytes | np.ndarray, width: int) -> np.ndarray:
    """Inverse of _sub: b + unzigzag(zz)."""
    y = np.frombuffer(b, dtype=np.uint8)
    n = len(zz_bytes) // width * width
    out = np.empty(len(zz_bytes), dtype=np.uint8)
    zz = _uint_view(zz_bytes, width)
    one = zz.dtype.type(1)
    d = np.right_shift(zz, one)
    np.bitwise_xor(d, np.negative(np.bitwise_and(zz, one)), out=d)
    np.add(d, _uint_view(y, width), out=out[:n].view(zz.dtype))
    np.add(zz_bytes[n:], y[n:], out=out[n:])
    return out


# ---------------------------------------------------------------- choosing


def _encode_planes(raw: memoryview | bytes, width: int, skip: int, level: int) -> Encoded:
    raw = memoryview(raw)
    if skip:
        return Encoded(PLANES, bytes([width, skip]), bytes(raw[:skip]) + encode_planes_payload(raw[skip:], width, level))
    return Encoded(PLANES, bytes([width]), encode_planes_payload(raw, width, level))


def _encode_zstd(raw: memoryview | bytes, level: int) -> Encoded:
    kind, data = _compress_plane(bytes(raw), level)
    return Encoded(ZSTD, b"", data) if kind == _PLANE_ZSTD else Encoded(RAW, b"", bytes(raw))


_PROBE = 16 << 10


def probe_layout(raw: memoryview | bytes, level: int) -> tuple[int, int]:
    """(width, skip) that codes a sample of bytes of unknown type best; (1, 0) is plain zstd."""
    sample = memoryview(raw)[:_PROBE]
    if len(sample) < 64:
        return 1, 0
    best = (len(_encode_zstd(sample, level).payload), 1, 0)
    for width, skips in ((4, range(4)), (2, range(2)), (8, range(1))):
        for skip in skips:
            size = _encode_planes(sample, width, skip, level).size
            if size < best[0]:
                best = (size, width, skip)
    return best[1], best[2]


def encode_standalone(raw: memoryview | bytes, width: int, level: int, skip: int = 0) -> Encoded:
    """The smallest of raw, zstd and byte planes. width=0 means unknown: probe a sample."""
    if width == 0:
        width, skip = probe_layout(raw, level)
    if width > 1:
        enc = _encode_planes(raw, width, skip, level)
        if width >= 8 or len(raw) < (1 << 16):
            # integer tensors and small chunks: plain zstd sometimes wins; it is cheap to try
            alt = _encode_zstd(raw, level)
            if alt.size < enc.size:
                enc = alt
    else:
        enc = _encode_zstd(raw, level)
    if enc.size >= len(raw):
        return Encoded(RAW, b"", bytes(raw))
    return enc


def encode_delta(raw: memoryview | bytes, base_raw: bytes | memoryview, base_id: str, base_depth: int,
                 width: int, level: int, kinds: tuple[int, ...] = (XOR_PLANES, SUB_PLANES)) -> Encoded | None:
    """The smallest delta encoding against `base_raw`, or None if none applies."""
    if len(base_raw) != len(raw) or not raw or base_depth >= 255:
        return None
    best: Encoded | None = None
    params_tail = bytes([max(width, 1), base_depth + 1])
    base = bytes.fromhex(base_id)
    for kind in kinds:
        if kind == SUB_PLANES and width not in (2, 4, 8):
            continue
        diff = _xor(raw, base_raw) if kind == XOR_PLANES else _sub(raw, base_raw, width)
        payload = encode_planes_payload(memoryview(diff), width, level)
        enc = Encoded(kind, base + params_tail, payload)
        if best is None or enc.size < best.size:
            best = enc
    return best


def decode(codec: int, params: bytes, payload: memoryview, raw_size: int, where: str,
           get_base: Callable[[str], bytes]) -> bytes:
    """Raw bytes of an object. `get_base` returns a base object's verified raw bytes."""
    if codec == RAW:
        if len(payload) != raw_size:
            raise CorruptObjectError(f"{where}: raw payload size mismatch")
        return bytes(payload)
    if codec == ZSTD:
        try:
            out = _decompressor().decompress(payload, max_output_size=max(raw_size, 1))
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"{where}: bad zstd data: {exc}") from exc
        if len(out) != raw_size:
            raise CorruptObjectError(f"{where}: decoded size mismatch")
        return out
    if codec == PLANES:
        if len(params) not in (1, 2):
            raise CorruptObjectError(f"{where}: bad planes params")
        skip = params[1] if len(params) == 2 else 0
        if skip > raw_size or len(payload) < skip:
            raise CorruptObjectError(f"{where}: bad planes skip")
        body = decode_planes_payload(payload[skip:], raw_size - skip, params[0], where)
        return bytes(payload[:skip]) + body.tobytes() if skip else body.tobytes()
    if codec in DELTA_CODECS:
        if len(params) != 34:
            raise CorruptObjectError(f"{where}: bad delta params")
        width = params[32]
        base_raw = get_base(params[:32].hex())
        if len(base_raw) != raw_size:
            raise CorruptObjectError(f"{where}: delta base has the wrong size")
        diff = decode_planes_payload(payload, raw_size, width, where)
        if codec == XOR_PLANES:
            return _xor(diff, base_raw).tobytes()
        if width not in (2, 4, 8):
            raise CorruptObjectError(f"{where}: bad sub width {width}")
        return _add(diff, base_raw, width).tobytes()
    raise CorruptObjectError(f"{where}: unknown codec {codec}")
