"""The C byte-plane loops give the numpy loops' bytes, and the codecs round-trip on
either (an install without a compiler runs the numpy ones)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptvc.objects import codecs, planes_kernels

needs_c = pytest.mark.skipif(not planes_kernels.HAVE_C, reason="the C module ckptvc.objects._planes is not built")


@pytest.fixture(params=["c", "numpy"])
def kernels(request, monkeypatch):
    """Run a test once on the C loops (when built) and once on the numpy ones."""
    if request.param == "c" and not planes_kernels.HAVE_C:
        pytest.skip("the C module ckptvc.objects._planes is not built")
    if request.param == "numpy":
        monkeypatch.setattr(planes_kernels, "_c", None)
    return request.param


def _numpy_only(fn, *args):
    c, planes_kernels._c = planes_kernels._c, None
    try:
        return fn(*args)
    finally:
        planes_kernels._c = c


@needs_c
@settings(max_examples=80, deadline=None)
@given(data=st.binary(min_size=0, max_size=4099), width=st.sampled_from([2, 3, 4, 8]))
def test_split_and_join_match_numpy(data, width):
    raw = np.frombuffer(data, dtype=np.uint8)
    n = len(raw) // width
    ours = planes_kernels.split(raw, width)
    ref = _numpy_only(planes_kernels.split, raw, width)
    assert ours.shape == ref.shape == (width, n)
    assert np.array_equal(ours, ref)
    out = np.full(n * width, 0xA5, dtype=np.uint8)
    planes_kernels.join(list(ours), out)
    assert out.tobytes() == data[: n * width]


@needs_c
@settings(max_examples=80, deadline=None)
@given(data=st.binary(min_size=0, max_size=4099), seed=st.integers(0, 2**32 - 1))
def test_word_kernels_match_numpy(data, seed):
    raw = np.frombuffer(data, dtype=np.uint8)
    top, low = planes_kernels.top16(raw), planes_kernels.low16(raw)
    assert np.array_equal(top, _numpy_only(planes_kernels.top16, raw))
    assert np.array_equal(low, _numpy_only(planes_kernels.low16, raw))
    base = np.random.default_rng(seed).integers(0, 2**16, len(top), dtype=np.uint16)
    zz = planes_kernels.zigzag16_sub(top, base)
    assert np.array_equal(zz, _numpy_only(planes_kernels.zigzag16_sub, top, base))
    back = planes_kernels.unzigzag16_add(zz.copy(), base)
    assert np.array_equal(back, top)
    assert np.array_equal(_numpy_only(planes_kernels.unzigzag16_add, zz.copy(), base), top)
    n = len(top)
    planes = planes_kernels.split(low.view(np.uint8), 2)
    out, ref = np.empty(4 * n, dtype=np.uint8), np.empty(4 * n, dtype=np.uint8)
    planes_kernels.join_low_top(planes[0], planes[1], top, out)
    _numpy_only(planes_kernels.join_low_top, planes[0], planes[1], top, ref)
    assert out.tobytes() == ref.tobytes() == data[: 4 * n]


@needs_c
def test_c_loops_refuse_wrong_lengths_without_touching_memory():
    from ckptvc.objects import _planes

    out = bytearray(8)
    with pytest.raises(ValueError):
        _planes.weave(out, [b"ab", b"cd", b"ef"], (1, 1, 1, 1))  # fewer parts than sizes
    with pytest.raises(ValueError):
        _planes.weave(out, [b"ab", b"cd", b"ef", b"g"], (1, 1, 1, 1))  # a short part
    with pytest.raises(ValueError):
        _planes.weave(bytearray(7), [b"ab", b"cd", b"ef", b"gh"], (1, 1, 1, 1))
    with pytest.raises(ValueError):
        _planes.unweave(b"abcdefgh", [bytearray(2), None], (2, 2))
    with pytest.raises(BufferError):
        _planes.unweave(b"abcdefgh", [b"ab", b"cd", b"ef", b"gh"], (1, 1, 1, 1))  # read-only outputs
    with pytest.raises(ValueError):
        _planes.zigzag16_sub(b"abcd", b"ab", bytearray(4))
    with pytest.raises(ValueError):
        _planes.unzigzag16_add(bytearray(3), b"abc")
    assert out == bytearray(8)


# the fixture only picks the loops: nothing in it changes between examples
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 3000), width=st.sampled_from([2, 4, 8]), seed=st.integers(0, 2**32 - 1))
def test_codecs_round_trip_on_either_loops(kernels, n, width, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(n).astype(np.float32)
    new = (base + rng.standard_normal(n).astype(np.float32) * 1e-3).astype(np.float32)
    raw, base_raw = new.tobytes(), base.tobytes()
    enc = codecs.encode_standalone(raw, width, 1)
    assert bytes(codecs.decode(enc.codec, enc.params, memoryview(enc.payload), len(raw), "t", None)) == raw
    split = codecs.encode_split(None, raw, codecs.top16(raw), codecs.top16(base_raw), "ab" * 32, 0, 1)
    got = codecs.decode(split.codec, split.params, memoryview(split.payload), len(raw), "t", lambda _: base_raw)
    assert bytes(got) == raw


@needs_c
def test_stored_bytes_do_not_depend_on_the_loops():
    """An object coded on one install decodes on the other: the two give one payload."""
    raw = (np.random.default_rng(7).standard_normal(10_001).astype(np.float32)).tobytes()
    base = (np.random.default_rng(8).standard_normal(10_001).astype(np.float32)).tobytes()
    standalone = codecs.encode_standalone(raw, 4, 1).payload
    split = codecs.encode_split(None, raw, codecs.top16(raw), codecs.top16(base), "cd" * 32, 0, 1).payload
    ref_standalone = _numpy_only(lambda: codecs.encode_standalone(raw, 4, 1).payload)
    ref_split = _numpy_only(lambda: codecs.encode_split(None, raw, codecs.top16(raw), codecs.top16(base),
                                                        "cd" * 32, 0, 1).payload)
    assert standalone == ref_standalone
    assert split == ref_split
