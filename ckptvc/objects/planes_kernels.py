"""The byte-plane loops of the codecs: in C when ckptvc/objects/_planes.c was built,
else in numpy. Both give the same bytes (tests/test_planes_kernels.py holds them to it).

numpy runs a byte-plane join or split as one byte-strided copy per plane; the C loops
are one vectorised pass. On 4 MiB of float32 here (bench/kernels.py): join 1.31 -> 0.35 ms,
split 1.31 -> 0.46 ms, top 16 bits 0.33 -> 0.15-0.17 ms, a split delta's output
0.99 -> 0.19 ms. The C module is optional (an install without a compiler gets the numpy
loops); CKPTVC_NO_C_KERNELS=1 turns it off.
"""

from __future__ import annotations

import os

import numpy as np

_LE16 = np.dtype("<u2")

_c = None
if os.environ.get("CKPTVC_NO_C_KERNELS", "") in ("", "0"):
    try:
        from ckptvc.objects import _planes as _c
    except ImportError:
        _c = None

HAVE_C = _c is not None


def _u8(buf) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8)


# ---------------------------------------------------------------- numpy


def _np_split(raw: np.ndarray, width: int) -> np.ndarray:
    n = len(raw) // width
    grouped = np.empty((width, n), dtype=np.uint8)  # one contiguous row per byte position
    # a transposing copy, one pass and no casts: with numpy 2.4, 0.26-0.39 CPU-s per
    # 384 MiB against 0.44-0.67 s for shifting and narrowing whole words
    grouped[:] = raw[: n * width].reshape(n, width).T
    return grouped


def _np_join(planes: list[np.ndarray], out: np.ndarray) -> None:
    # Plane i copied into byte i of every element, one strided pass per plane: with numpy
    # 2.4 this beat shifting and ORing whole words (0.28-0.37 against 0.41-0.48 CPU-s per
    # 384 MiB of 4 planes). Two planes join faster as 16-bit words, hi << 8 | lo (a
    # 1 MiB chunk: 189 against 420 us; for 4 planes the words lost at 8 MiB).
    if len(planes) == 2:
        words = out.view(_LE16)
        np.left_shift(planes[1], 8, out=words, dtype=_LE16)
        np.bitwise_or(words, planes[0], out=words, dtype=_LE16)
        return
    grid = out.reshape(-1, len(planes))
    for i, plane in enumerate(planes):
        grid[:, i] = plane


def _np_top16(raw: np.ndarray) -> np.ndarray:
    # a strided copy of every other 16-bit word: 1.3-1.9x faster than shifting and
    # narrowing the words
    return raw[: len(raw) // 4 * 4].view(_LE16)[1::2].copy()


def _np_low16(raw: np.ndarray) -> np.ndarray:
    return raw[: len(raw) // 4 * 4].view(_LE16)[0::2].copy()


def _np_join_low_top(lo0: np.ndarray, lo1: np.ndarray, top: np.ndarray, out: np.ndarray) -> None:
    # each output byte written once: the two low byte planes into bytes 0 and 1 of every
    # element, the top halves into bytes 2-3 (no 16-bit low half in between)
    n = len(top)
    grid = out.reshape(n, 4)
    grid[:, 0] = lo0
    grid[:, 1] = lo1
    out.view(_LE16).reshape(n, 2)[:, 1] = top


def _np_zigzag16_sub(own: np.ndarray, base: np.ndarray) -> np.ndarray:
    d = own - base
    return (d << 1) ^ (d.view(np.int16) >> 15).view(np.uint16)


def _np_unzigzag16_add(zz: np.ndarray, base: np.ndarray) -> np.ndarray:
    sign = np.bitwise_and(zz, np.uint16(1))
    np.negative(sign, out=sign)
    np.right_shift(zz, np.uint16(1), out=zz)
    np.bitwise_xor(zz, sign, out=zz)
    np.add(zz, base, out=zz)
    return zz


# ---------------------------------------------------------------- the API


def split(raw, width: int) -> np.ndarray:
    """The byte planes of the first len(raw) // width elements: a (width, n) array,
    row i holding byte i of every element."""
    a = _u8(raw)
    if _c is None or width < 2:
        return _np_split(a, width)
    n = len(a) // width
    grouped = np.empty((width, n), dtype=np.uint8)
    _c.unweave(a[: n * width], list(grouped), (1,) * width)
    return grouped


def join(planes: list[np.ndarray], out: np.ndarray) -> None:
    """out (uint8, n * len(planes) bytes) from byte planes of n bytes, lowest first: the
    inverse of split."""
    if _c is None or len(planes) < 2:
        _np_join(planes, out)
        return
    _c.weave(out, planes, (1,) * len(planes))


def _half16(raw, high: bool) -> np.ndarray:
    a = _u8(raw)
    if _c is None:
        return _np_top16(a) if high else _np_low16(a)
    n = len(a) // 4
    out = np.empty(n, dtype=_LE16)
    _c.unweave(a[: n * 4], [None, out] if high else [out, None], (2, 2))
    return out


def top16(raw) -> np.ndarray:
    """The high 16 bits of each little-endian 32-bit element."""
    return _half16(raw, True)


def low16(raw) -> np.ndarray:
    """The low 16 bits of each little-endian 32-bit element."""
    return _half16(raw, False)


def join_low_top(lo0: np.ndarray, lo1: np.ndarray, top: np.ndarray, out: np.ndarray) -> None:
    """out (uint8, 4 * n bytes): byte planes 0 and 1 of n bytes each, then the high 16
    bits of each element (`top`, n uint16)."""
    if _c is None:
        _np_join_low_top(lo0, lo1, top, out)
        return
    _c.weave(out, [lo0, lo1, top], (1, 1, 2))


def zigzag16_sub(own: np.ndarray, base: np.ndarray) -> np.ndarray:
    """zigzag(own - base) of two uint16 arrays, wrapping: a small step up or down is a
    small number."""
    if _c is None:
        return _np_zigzag16_sub(own, base)
    out = np.empty(len(own), dtype=_LE16)
    _c.zigzag16_sub(own, base, out)
    return out


def unzigzag16_add(zz: np.ndarray, base: np.ndarray) -> np.ndarray:
    """base + unzigzag(zz), computed in place in `zz` (a uint16 scratch array the caller
    owns, not overlapping `base`)."""
    if _c is None:
        return _np_unzigzag16_add(zz, base)
    _c.unzigzag16_add(zz, base)
    return zz
