"""Content-defined chunking of opaque files: streamed cuts equal whole-buffer cuts,
and the chunks are the file, byte for byte."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from ckptvc.objects.chunking import iter_cdc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 3 << 20), repeat=st.booleans())
def test_streamed_cdc_equals_whole_buffer_cdc(tmp_path, seed, size, repeat):
    rng = __import__("random").Random(seed)
    data = rng.randbytes(size)
    if repeat and size > 1000:
        data = data[: size // 2] * 2  # a repeated half: dedup depends on stable cuts
    path = tmp_path / f"f{seed}.bin"
    path.write_bytes(data)
    avg = 16 << 10
    chunks = list(iter_cdc(path, avg))
    assert b"".join(c for _, c in chunks) == data
    offsets = [s.offset for s, _ in chunks]
    assert offsets == [sum(len(c) for _, c in chunks[:i]) for i in range(len(chunks))]
    whole = [(c.offset, c.length) for c in FastCDC(avg_size=avg).cut_buf(data)] if data else []
    assert [(s.offset, s.length) for s, _ in chunks] == whole
    os.unlink(path)
