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

  5 SPLIT_SUB   params = base id (32) + width W (4) + chain depth (u8) + split H (2).
                Each element's high H bytes are coded against the base, its low W-H bytes
                on their own. payload = u32 length of HI, HI, LO: HI is a planes payload
                (width H) of zz = zigzag((top - base_top) mod 2**(8H)), top being the high H
                bytes of an element read as an integer; LO is a planes payload (width W-H)
                of the low bytes. The low mantissa bytes of floats are close to random:
                coding them against a base gains nothing, and keeping them out of the
                delta means that decoding an old version reads only the small HI parts of
                the newer versions its chain goes through, not their whole objects.

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
from ckptvc.objects import envelope, planes_kernels

RAW, ZSTD, PLANES, XOR_PLANES, SUB_PLANES, SPLIT_SUB = 0, 1, 2, 3, 4, 5
DELTA_CODECS = envelope.DELTA_CODECS
assert DELTA_CODECS == (XOR_PLANES, SUB_PLANES, SPLIT_SUB)
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", PLANES: "planes", XOR_PLANES: "xor", SUB_PLANES: "sub", SPLIT_SUB: "split"}
SPLIT_WIDTH, SPLIT_HIGH = 4, 2  # float32-sized elements: the top 16 bits against the base

_PLANE_RAW, _PLANE_ZSTD = 0, 1
_PLANE_HEAD = struct.Struct("<BI")
# A plane whose sample compresses worse than this is stored raw without trying the rest.
_SAMPLE = 64 << 10
# Near-random planes (low mantissa bytes) still shrink ~0.8% under zstd, but they
# then decode at zstd speed instead of memcpy speed. Standalone objects are what the
# newest version restores from, so restore speed wins there; deltas are what older
# versions are made of, so bytes win there.
GIVE_UP_STANDALONE = 0.99
GIVE_UP_DELTA = 0.999
DELTA_LEVEL_BONUS = 2
_local = threading.local()


# Byte planes have few repeats worth finding: zstd's hash tables sized for text (2**14
# to 2**17 entries at levels 1-3) only miss the CPU caches. With 2**12 entries a plane
# of float bytes codes 30% faster at level 3 and 5-10% at level 1, and no larger (the
# MiniLM series stores the same bytes, +0.004%). Plain zstd of unknown content keeps
# the level's own tables.
PLANE_TABLES_LOG = 12


def _compressor(level: int, plane: bool = False) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    c = cache.get((level, plane))
    if c is None:
        # Byte planes of floats are skewed symbol streams with few real repeats: short
        # matches cost more than the literals they replace, so matches shorter than 7
        # bytes are not sought (measured: 1-2% smaller planes, and faster).
        tables = {"hash_log": PLANE_TABLES_LOG, "chain_log": PLANE_TABLES_LOG} if plane else {}
        params = zstandard.ZstdCompressionParameters.from_level(level, min_match=7, write_content_size=True, **tables)
        c = cache[(level, plane)] = zstandard.ZstdCompressor(compression_params=params)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


Buffer = bytes | memoryview | np.ndarray


@dataclass(frozen=True)
class Encoded:
    """An encoded form. The payload is kept as a list of buffers (plane headers,
    compressed planes, views of raw planes) so that nothing is copied to join them:
    stores write the parts one after the other."""

    codec: int
    params: bytes
    parts: tuple[Buffer, ...]

    @property
    def size(self) -> int:
        return len(self.params) + sum(_nbytes(p) for p in self.parts)

    @property
    def payload(self) -> bytes:
        return b"".join(self.parts)


def _nbytes(buf: Buffer) -> int:
    return buf.nbytes if isinstance(buf, np.ndarray | memoryview) else len(buf)


# ---------------------------------------------------------------- planes


def _split_planes(raw: Buffer, width: int) -> tuple[list[np.ndarray], memoryview]:
    n = _nbytes(raw) // width
    arr = np.frombuffer(raw, dtype=np.uint8)
    grouped = planes_kernels.split(arr, width)
    return [grouped[i] for i in range(width)], memoryview(arr[n * width :])


def _compress_plane(plane: Buffer, level: int, give_up: float = GIVE_UP_STANDALONE,
                    is_plane: bool = True) -> tuple[int, Buffer]:
    size = _nbytes(plane)
    if not size:
        return _PLANE_RAW, b""
    c = _compressor(level, is_plane)
    if size > 4 * _SAMPLE:
        sample = c.compress(memoryview(plane)[:_SAMPLE])
        if len(sample) > give_up * _SAMPLE:
            return _PLANE_RAW, plane
    z = c.compress(plane)
    if len(z) < size:
        return _PLANE_ZSTD, z
    return _PLANE_RAW, plane


def encode_planes_parts(raw: Buffer, width: int, level: int, give_up: float = GIVE_UP_STANDALONE) -> list[Buffer]:
    if width <= 1:
        planes, tail = [np.frombuffer(raw, dtype=np.uint8)], memoryview(b"")
    else:
        planes, tail = _split_planes(raw, width)
    parts: list[Buffer] = []
    for plane in planes:
        mode, data = _compress_plane(plane, level, give_up, is_plane=width > 1)
        parts.append(_PLANE_HEAD.pack(mode, _nbytes(data)))
        parts.append(data)
    if len(tail):
        parts.append(tail)
    return parts


_LE16 = np.dtype("<u2")


def _interleave(planes: list[np.ndarray], out: np.ndarray) -> None:
    """out (a uint8 array of n * len(planes) bytes) from byte planes, lowest first: the
    inverse of _split_planes."""
    planes_kernels.join(planes, out)


def _decoded_planes(payload: memoryview, n: int, width: int, where: str) -> tuple[list[np.ndarray], int]:
    """Each plane's n bytes, and where the tail starts in the payload."""
    planes = []
    off = 0
    for _ in range(width):
        if off + _PLANE_HEAD.size > len(payload):
            raise CorruptObjectError(f"{where}: truncated plane header")
        mode, length = _PLANE_HEAD.unpack_from(payload, off)
        off += _PLANE_HEAD.size
        data = payload[off : off + length]
        if len(data) != length:
            raise CorruptObjectError(f"{where}: truncated plane data")
        off += length
        planes.append(_plane_bytes(data, mode, n, where))
    return planes, off


def decode_planes_into(payload: memoryview, out: np.ndarray, width: int, where: str) -> None:
    """Decode a planes payload into `out` (a uint8 array of the raw size)."""
    width = max(width, 1)
    raw_size = len(out)
    n = raw_size // width
    planes, off = _decoded_planes(payload, n, width, where)
    tail = payload[off:]
    if len(tail) != raw_size - n * width:
        raise CorruptObjectError(f"{where}: bad tail length")
    _interleave(planes, out[: n * width])
    if len(tail):
        out[n * width :] = np.frombuffer(tail, dtype=np.uint8)


def decode_planes_payload(payload: memoryview, raw_size: int, width: int, where: str) -> np.ndarray:
    out = np.empty(raw_size, dtype=np.uint8)
    decode_planes_into(payload, out, width, where)
    return out


# ---------------------------------------------------------------- deltas


def _uint_view(buf: np.ndarray | bytes | memoryview, width: int) -> np.ndarray:
    dt = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a) // width
    return a[: n * width].view(dt)


def _xor(a: memoryview | bytes | np.ndarray, b: memoryview | bytes | np.ndarray,
         out: np.ndarray | None = None) -> np.ndarray:
    """a XOR b, into `out` when given (it may be `a` itself: decoding works in place)."""
    x = np.frombuffer(a, dtype=np.uint8)
    y = np.frombuffer(b, dtype=np.uint8)
    n8 = len(x) // 8 * 8
    out = np.empty(len(x), dtype=np.uint8) if out is None else out
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
    """Inverse of _sub: b + unzigzag(zz), computed in place in `zz_bytes` (a scratch
    array the caller owns)."""
    y = np.frombuffer(b, dtype=np.uint8)
    n = len(zz_bytes) // width * width
    zz = _uint_view(zz_bytes, width)
    one = zz.dtype.type(1)
    sign = np.negative(np.bitwise_and(zz, one))
    np.right_shift(zz, one, out=zz)
    np.bitwise_xor(zz, sign, out=zz)
    np.add(zz, _uint_view(y, width), out=zz)
    np.add(zz_bytes[n:], y[n:], out=zz_bytes[n:])
    return zz_bytes


# ---------------------------------------------------------------- choosing


def _encode_planes(raw: Buffer, width: int, skip: int, level: int) -> Encoded:
    if skip:
        view = memoryview(np.frombuffer(raw, dtype=np.uint8))
        return Encoded(PLANES, bytes([width, skip]), (view[:skip], *encode_planes_parts(view[skip:], width, level)))
    return Encoded(PLANES, bytes([width]), tuple(encode_planes_parts(raw, width, level)))


def _encode_zstd(raw: Buffer, level: int) -> Encoded:
    kind, data = _compress_plane(raw, level, is_plane=False)
    return Encoded(ZSTD, b"", (data,)) if kind == _PLANE_ZSTD else Encoded(RAW, b"", (raw,))


_PROBE = 16 << 10


def probe_layout(raw: Buffer, level: int) -> tuple[int, int]:
    """(width, skip) that codes a sample of bytes of unknown type best; (1, 0) is plain zstd."""
    sample = memoryview(np.frombuffer(raw, dtype=np.uint8))[:_PROBE]
    if len(sample) < 64:
        return 1, 0
    best = (_encode_zstd(sample, level).size, 1, 0)
    for width, skips in ((4, range(4)), (2, range(2)), (8, range(1))):
        for skip in skips:
            size = _encode_planes(sample, width, skip, level).size
            if size < best[0]:
                best = (size, width, skip)
    return best[1], best[2]


def encode_standalone(raw: Buffer, width: int, level: int, skip: int = 0) -> Encoded:
    """The smallest of raw, zstd and byte planes. width=0 means unknown: probe a sample."""
    if width == 0:
        width, skip = probe_layout(raw, level)
    if width > 1:
        enc = _encode_planes(raw, width, skip, level)
        if width >= 8 or _nbytes(raw) < (1 << 16):
            # integer tensors and small chunks: plain zstd sometimes wins; it is cheap to try
            alt = _encode_zstd(raw, level)
            if alt.size < enc.size:
                enc = alt
    else:
        enc = _encode_zstd(raw, level)
    if enc.size >= _nbytes(raw):
        return Encoded(RAW, b"", (raw,))
    return enc


_DELTA_SAMPLE = 256 << 10


def _delta_kinds(raw: Buffer, base_raw: Buffer, width: int, level: int, kinds: tuple[int, ...]) -> tuple[int, ...]:
    """On a large chunk, pick the delta kind on a sample: coding every kind in full
    costs a whole compression pass each."""
    usable = tuple(k for k in kinds if k != SUB_PLANES or width in (2, 4, 8))
    if len(usable) < 2 or _nbytes(raw) <= 4 * _DELTA_SAMPLE:
        return usable
    n = _DELTA_SAMPLE // width * width
    a = np.frombuffer(raw, dtype=np.uint8)[:n]
    b = np.frombuffer(base_raw, dtype=np.uint8)[:n]
    sizes = {k: sum(_nbytes(p) for p in encode_planes_parts(_xor(a, b) if k == XOR_PLANES else _sub(a, b, width),
                                                             width, level, GIVE_UP_DELTA)) for k in usable}
    return (min(sizes, key=sizes.__getitem__),)


def encode_delta(raw: Buffer, base_raw: Buffer, base_id: str, base_depth: int,
                 width: int, level: int, kinds: tuple[int, ...] = (XOR_PLANES, SUB_PLANES)) -> Encoded | None:
    """The smallest delta encoding against `base_raw`, or None if none applies."""
    if _nbytes(base_raw) != _nbytes(raw) or not _nbytes(raw) or base_depth >= 255:
        return None
    width = max(width, 1)
    # Deltas are older versions, read rarely: a little more zstd effort pays there
    # (measured on MiniLM deltas: 0.2% smaller at level 3 than 1, at 70% of the speed).
    level = min(level + DELTA_LEVEL_BONUS, 19)
    best: Encoded | None = None
    params = bytes.fromhex(base_id) + bytes([width, base_depth + 1])
    for kind in _delta_kinds(raw, base_raw, width, level, kinds):
        diff = _xor(raw, base_raw) if kind == XOR_PLANES else _sub(raw, base_raw, width)
        enc = Encoded(kind, params, tuple(encode_planes_parts(diff, width, level, GIVE_UP_DELTA)))
        if best is None or enc.size < best.size:
            best = enc
    return best


# ---------------------------------------------------------------- split deltas

_U32 = struct.Struct("<I")


def top16(raw: Buffer) -> np.ndarray:
    """The high 16 bits of each little-endian 32-bit element."""
    return planes_kernels.top16(raw)


def planes_table(payload: Buffer, width: int, where: str) -> list[tuple[int, int, int]]:
    """(mode, data offset, data length) of each plane of a planes payload."""
    out, off = [], 0
    view = memoryview(payload)
    for _ in range(width):
        if off + _PLANE_HEAD.size > len(view):
            raise CorruptObjectError(f"{where}: truncated plane header")
        mode, length = _PLANE_HEAD.unpack_from(view, off)
        off += _PLANE_HEAD.size
        if off + length > len(view):
            raise CorruptObjectError(f"{where}: truncated plane data")
        out.append((mode, off, length))
        off += length
    return out


def _plane_bytes(view: memoryview, mode: int, n: int, where: str) -> np.ndarray:
    if mode == _PLANE_RAW:
        plane = view
    elif mode == _PLANE_ZSTD:
        try:
            plane = _decompressor().decompress(view, max_output_size=n)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"{where}: bad zstd plane: {exc}") from exc
    else:
        raise CorruptObjectError(f"{where}: unknown plane mode {mode}")
    if len(plane) != n:
        raise CorruptObjectError(f"{where}: plane size {len(plane)} != {n}")
    return np.frombuffer(plane, dtype=np.uint8)


def low_bytes_of_planes(payload: Buffer, raw_size: int, where: str) -> np.ndarray:
    """The lowest byte of each element (plane 0) of a width-4 PLANES payload: a view
    when the plane is stored raw, as near-random low mantissa bytes are."""
    mode, off, length = planes_table(payload, 4, where)[0]
    return _plane_bytes(memoryview(payload)[off : off + length], mode, raw_size // 4, where)


# One element in this many is compared to tell a sparse change from a dense one.
_SPARSE_STRIDE = 61


def mostly_unchanged(low_a: np.ndarray, low_b: np.ndarray) -> bool:
    """Whether most elements of two float32 chunks are bit-identical, judged on the
    lowest byte of a sample of them. After a dense training step the low mantissa
    bytes are close to random (equal 1 time in 256); a change confined to some rows or
    elements (a sparse update) leaves the rest identical, and then a whole-element
    XOR delta, mostly zeros, beats a split delta that keeps every low half."""
    a, b = low_a[::_SPARSE_STRIDE], low_b[::_SPARSE_STRIDE]
    return len(a) > 0 and np.count_nonzero(a == b) * 2 > len(a)


def top16_of_planes(payload: Buffer, raw_size: int, where: str, first_plane: int = 0) -> np.ndarray:
    """The high 16 bits of each element from a width-4 PLANES payload without decoding
    its low planes. `payload` may start at plane `first_plane` (a partial read)."""
    n = raw_size // 4
    table = planes_table(payload, 4 - first_plane, where)
    view = memoryview(payload)
    lo = _plane_bytes(view[table[2 - first_plane][1]:][: table[2 - first_plane][2]], table[2 - first_plane][0], n,
                      where)
    hi = _plane_bytes(view[table[3 - first_plane][1]:][: table[3 - first_plane][2]], table[3 - first_plane][0], n,
                      where)
    out = np.empty(n, dtype=_LE16)
    _interleave([lo, hi], out.view(np.uint8))
    return out


def split_hi_length(payload: Buffer, where: str) -> int:
    if len(payload) < _U32.size:
        raise CorruptObjectError(f"{where}: truncated split payload")
    return _U32.unpack_from(payload, 0)[0]


def split_top16(params: bytes, hi_payload: Buffer, raw_size: int, where: str, base_top: np.ndarray) -> np.ndarray:
    """An element's top 16 bits from the HI part of a SPLIT_SUB payload and the base's."""
    n = raw_size // 4
    if len(base_top) != n:
        raise CorruptObjectError(f"{where}: delta base has the wrong size")
    zz = decode_planes_payload(memoryview(hi_payload), n * 2, 2, where).view(np.uint16)
    return planes_kernels.unzigzag16_add(zz, base_top)


def encode_split(lo_part: Buffer | None, raw: Buffer | None, own_top: np.ndarray, base_top: np.ndarray,
                 base_id: str, base_depth: int, level: int) -> Encoded:
    """SPLIT_SUB of an object against a base. The LO part is given as already coded
    bytes (the low planes of the object's standalone PLANES form, byte for byte the
    planes payload of its low 16 bits) or coded here from `raw`."""
    level = min(level + DELTA_LEVEL_BONUS, 19)
    zz = planes_kernels.zigzag16_sub(own_top, base_top)
    hi = encode_planes_parts(zz.view(np.uint8), 2, level, GIVE_UP_DELTA)
    if lo_part is None:
        lo = encode_planes_parts(planes_kernels.low16(raw).view(np.uint8), 2, level, GIVE_UP_DELTA)
    else:
        lo = [lo_part]
    params = bytes.fromhex(base_id) + bytes([SPLIT_WIDTH, base_depth + 1, SPLIT_HIGH])
    return Encoded(SPLIT_SUB, params, (_U32.pack(sum(_nbytes(p) for p in hi)), *hi, *lo))


def split_hi_decodes_to(enc: Encoded, own_top: np.ndarray, base_top: np.ndarray, where: str) -> bool:
    """Whether the HI part of a SPLIT_SUB form decodes, against `base_top`, to
    `own_top`. With a LO part copied byte for byte from a checked stored form, this
    proves the whole new form without decoding and interleaving the LO part again."""
    if enc.codec != SPLIT_SUB:
        return False
    hi_len = _U32.unpack(bytes(enc.parts[0]))[0]
    hi: list[bytes] = []
    got = 0
    for part in enc.parts[1:]:
        if got >= hi_len:
            break
        hi.append(bytes(part))
        got += _nbytes(part)
    if got != hi_len:
        return False
    try:
        top = split_top16(enc.params, b"".join(hi), len(own_top) * 4, where, base_top)
    except CorruptObjectError:
        return False
    return bool(np.array_equal(top, own_top))


def low_planes_part(payload: Buffer, raw_size: int, where: str) -> memoryview:
    """The bytes of planes 0 and 1 (headers included) of a width-4 PLANES payload: the
    planes payload, width 2, of the elements' low 16 bits."""
    table = planes_table(payload, 4, where)
    mode, off, length = table[1]
    del mode
    return memoryview(payload)[: off + length]


def _decode_split(params: bytes, payload: memoryview, raw_size: int, where: str,
                  base_top: Callable[[str], np.ndarray]) -> memoryview:
    if len(params) != 35 or params[32] != SPLIT_WIDTH or params[34] != SPLIT_HIGH or raw_size % SPLIT_WIDTH:
        raise CorruptObjectError(f"{where}: bad split params")
    n = raw_size // 4
    hi_len = split_hi_length(payload, where)
    if _U32.size + hi_len > len(payload):
        raise CorruptObjectError(f"{where}: truncated split payload")
    top = split_top16(params, payload[_U32.size : _U32.size + hi_len], raw_size, where, base_top(params[:32].hex()))
    lo_payload = payload[_U32.size + hi_len :]
    lo_planes, off = _decoded_planes(lo_payload, n, 2, where)
    if off != len(lo_payload):
        raise CorruptObjectError(f"{where}: bad tail length")
    out = np.empty(raw_size, dtype=np.uint8)
    planes_kernels.join_low_top(lo_planes[0], lo_planes[1], top, out)
    return memoryview(out)


def decode(codec: int, params: bytes, payload: memoryview, raw_size: int, where: str,
           get_base: Callable[[str], Buffer], get_base_top: Callable[[str], np.ndarray] | None = None) -> memoryview:
    """Raw content of an object, as a read-only-agnostic memoryview of raw_size bytes.
    `get_base` returns a base object's raw content; `get_base_top`, when given, only
    the high 16 bits of its elements (all that a SPLIT_SUB object needs of its base)."""
    payload = memoryview(payload)
    if codec == SPLIT_SUB:
        return _decode_split(params, payload, raw_size, where,
                             get_base_top or (lambda base: top16(_sized(get_base(base), raw_size, where))))
    if codec == RAW:
        if len(payload) != raw_size:
            raise CorruptObjectError(f"{where}: raw payload size mismatch")
        return payload
    if codec == ZSTD:
        try:
            out = _decompressor().decompress(payload, max_output_size=max(raw_size, 1))
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"{where}: bad zstd data: {exc}") from exc
        if len(out) != raw_size:
            raise CorruptObjectError(f"{where}: decoded size mismatch")
        return memoryview(out)
    if codec == PLANES:
        if len(params) not in (1, 2):
            raise CorruptObjectError(f"{where}: bad planes params")
        skip = params[1] if len(params) == 2 else 0
        if skip > raw_size or len(payload) < skip:
            raise CorruptObjectError(f"{where}: bad planes skip")
        out = np.empty(raw_size, dtype=np.uint8)
        out[:skip] = np.frombuffer(payload[:skip], dtype=np.uint8)
        decode_planes_into(payload[skip:], out[skip:], params[0], where)
        return memoryview(out)
    if codec in (XOR_PLANES, SUB_PLANES):
        if len(params) != 34:
            raise CorruptObjectError(f"{where}: bad delta params")
        width = params[32]
        base_raw = get_base(params[:32].hex())
        if _nbytes(base_raw) != raw_size:
            raise CorruptObjectError(f"{where}: delta base has the wrong size")
        diff = decode_planes_payload(payload, raw_size, width, where)
        if codec == XOR_PLANES:
            return memoryview(_xor(diff, base_raw, out=diff))
        if width not in (2, 4, 8):
            raise CorruptObjectError(f"{where}: bad sub width {width}")
        return memoryview(_add(diff, base_raw, width))
    raise CorruptObjectError(f"{where}: unknown codec {codec}")


def _sized(buf: Buffer, raw_size: int, where: str) -> Buffer:
    if _nbytes(buf) != raw_size:
        raise CorruptObjectError(f"{where}: delta base has the wrong size")
    return buf
