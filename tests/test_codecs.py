"""Every codec round-trips byte for byte; corrupt bytes are detected, never decoded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ckptvc.errors import CorruptObjectError
from ckptvc.ids import hash_bytes
from ckptvc.objects import codecs, envelope

FLOAT_DTYPES = [np.float32, np.float16, np.float64]


def _decode(enc: codecs.Encoded, raw_size: int, bases: dict[str, bytes] | None = None) -> bytes:
    blob = envelope.pack(enc.codec, raw_size, enc.params, enc.payload)
    env = envelope.unpack(blob, "test")
    return codecs.decode(env.codec, env.params, env.payload, env.raw_size, "test", (bases or {}).__getitem__)


@settings(max_examples=80, deadline=None)
@given(arr=hnp.arrays(st.sampled_from(FLOAT_DTYPES + [np.int64, np.int8, np.uint16]),
                      hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40)),
       level=st.sampled_from([1, 3]))
def test_standalone_round_trip_any_dtype_and_shape(arr, level):
    raw = arr.tobytes()
    for width in (0, 1, arr.dtype.itemsize):
        enc = codecs.encode_standalone(raw, width, level)
        assert _decode(enc, len(raw)) == raw


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=5000), skip=st.integers(0, 3), width=st.sampled_from([2, 4]))
def test_planes_with_skip_and_odd_tails(data, skip, width):
    # an odd skip decodes into an output that starts at an odd address (two planes
    # are joined as 16-bit words there)
    skip = min(skip, len(data))
    enc = codecs._encode_planes(data, width, skip, 1)
    assert _decode(enc, len(data)) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000), width=st.sampled_from([2, 3, 4, 8]))
def test_plane_layout_is_the_stored_format(data, width):
    # plane i holds byte i of every element, in order, then the tail: the layout old
    # repositories were written with, whatever copy or shift produces it
    planes, tail = codecs._split_planes(data, width)
    n = len(data) // width
    assert [p.tobytes() for p in planes] == [data[i : n * width : width] for i in range(width)]
    assert bytes(tail) == data[n * width :]
    out = np.empty(len(data), dtype=np.uint8)
    codecs.decode_planes_into(memoryview(b"".join(bytes(p) for p in codecs.encode_planes_parts(data, width, 1))),
                              out, width, "test")
    assert out.tobytes() == data


def test_special_float_values_survive():
    vals = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3.4e38, 1.17e-38],
                    dtype=np.float32)
    raw = np.tile(vals, 1000).tobytes() + b"\x01\x02\x03"  # odd tail
    for width in (0, 4):
        assert _decode(codecs.encode_standalone(raw, width, 1), len(raw)) == raw
    # NaN payloads are bit patterns: a signalling NaN with a payload must come back exact
    odd_nan = np.array([0x7FA00001, 0xFFC12345], dtype=np.uint32).tobytes()
    assert _decode(codecs.encode_standalone(odd_nan, 4, 1), 8) == odd_nan


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), width=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**32 - 1))
def test_delta_round_trip(n, width, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, n * width + rng.integers(0, width), dtype=np.uint8).tobytes()
    new = bytearray(base)
    for i in rng.integers(0, max(len(new), 1), min(len(new), 50)):
        new[i] = (new[i] + 1) % 256
    new = bytes(new)
    bid = hash_bytes(base)
    for kind in (codecs.XOR_PLANES, codecs.SUB_PLANES):
        enc = codecs.encode_delta(new, base, bid, 0, width, 1, kinds=(kind,))
        if enc is None:
            assert n == 0 or kind == codecs.SUB_PLANES and width == 1 or not new
            continue
        assert envelope.delta_base(enc.codec, enc.params) == bid
        assert envelope.chain_depth(enc.codec, enc.params) == 1
        assert _decode(enc, len(new), {bid: base}) == new


def test_delta_of_drifting_floats_is_smaller_than_standalone():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(1 << 18) * 0.02).astype(np.float32)
    b = (a + rng.standard_normal(a.shape).astype(np.float32) * 1e-5).astype(np.float32)
    alone = codecs.encode_standalone(b.tobytes(), 4, 1)
    delta = codecs.encode_delta(b.tobytes(), a.tobytes(), hash_bytes(a.tobytes()), 0, 4, 1)
    assert delta is not None and delta.size < 0.8 * alone.size


def test_corrupt_payload_is_detected():
    raw = np.arange(10000, dtype=np.float32).tobytes()
    enc = codecs.encode_standalone(raw, 4, 1)
    blob = bytearray(envelope.pack(enc.codec, len(raw), enc.params, enc.payload))
    blob[-10] ^= 0x40
    with pytest.raises(CorruptObjectError, match="checksum"):
        envelope.unpack(bytes(blob), "x")


def test_corrupt_header_is_detected():
    blob = envelope.pack(codecs.RAW, 3, b"", b"abc")
    with pytest.raises(CorruptObjectError, match="magic"):
        envelope.unpack(b"XXXX" + blob[4:], "x")
    with pytest.raises(CorruptObjectError, match="truncated"):
        envelope.unpack(blob[:20], "x")
    with pytest.raises(CorruptObjectError):
        _decode(codecs.Encoded(codecs.RAW, b"", (b"abc",)), 4)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1), special=st.booleans())
def test_split_delta_round_trip_both_ways_of_coding_the_low_part(n, seed, special):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(n).astype(np.float32)
    new = (base + rng.standard_normal(n).astype(np.float32) * np.float32(1e-3)).astype(np.float32)
    if special and n:
        picks = rng.integers(0, n, min(n, 20))
        new[picks] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -3.4e38], np.float32),
                                len(picks))
        new.view(np.uint32)[picks[:1]] = 0x7FA00001  # a signalling NaN with a payload
    raw, base_raw = new.tobytes(), base.tobytes()
    bid = hash_bytes(base_raw)
    standalone = codecs.encode_standalone(raw, 4, 1)
    forms = [codecs.encode_split(None, raw, codecs.top16(raw), codecs.top16(base_raw), bid, 0, 1)]
    if standalone.codec == codecs.PLANES:  # the low planes reused byte for byte
        payload = memoryview(standalone.payload)
        forms.append(codecs.encode_split(codecs.low_planes_part(payload, len(raw), "t"), None,
                                         codecs.top16_of_planes(payload, len(raw), "t"), codecs.top16(base_raw),
                                         bid, 0, 1))
    for enc in forms:
        assert enc.codec == codecs.SPLIT_SUB
        assert envelope.delta_base(enc.codec, enc.params) == bid and envelope.chain_depth(enc.codec, enc.params) == 1
        assert _decode(enc, len(raw), {bid: base_raw}) == raw
        # the partial path: only the base's high halves
        blob = envelope.pack(enc.codec, len(raw), enc.params, enc.payload)
        env = envelope.unpack(blob, "t")
        out = codecs.decode(env.codec, env.params, env.payload, env.raw_size, "t", {}.__getitem__,
                            {bid: codecs.top16(base_raw)}.__getitem__)
        assert bytes(out) == raw


def test_split_delta_with_a_wrong_base_decodes_to_wrong_bytes_not_an_exception_or_right_ones():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(1000).astype(np.float32).tobytes()
    new = (np.frombuffer(base, np.float32) * np.float32(1.001)).astype(np.float32).tobytes()
    bid = hash_bytes(base)
    enc = codecs.encode_split(None, new, codecs.top16(new), codecs.top16(base), bid, 0, 1)
    other = bytearray(base)
    other[7] ^= 0x40  # a high byte of element 1
    assert _decode(enc, len(new), {bid: bytes(other)}) != new  # the id check downstream catches it
    with pytest.raises(CorruptObjectError):
        _decode(enc, len(new), {bid: base[:-4]})
