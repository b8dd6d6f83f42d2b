"""Content-defined chunking of opaque files: streamed cuts equal whole-buffer cuts,
and the chunks are the file, byte for byte."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from ckptvc.objects.chunking import iter_cdc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 3 << 20), repeat=st.booleans(),
       block=st.sampled_from([1, 100 << 10, 1 << 20, 16 << 20]))
def test_streamed_cdc_equals_whole_buffer_cdc(tmp_path, seed, size, repeat, block):
    rng = __import__("random").Random(seed)
    data = rng.randbytes(size)
    if repeat and size > 1000:
        data = data[: size // 2] * 2  # a repeated half: dedup depends on stable cuts
    path = tmp_path / f"f{seed}.bin"
    path.write_bytes(data)
    avg = 16 << 10
    chunks = [(spec, bytes(view)) for spec, view in iter_cdc(path, avg, block)]
    assert b"".join(c for _, c in chunks) == data
    offsets = [s.offset for s, _ in chunks]
    assert offsets == [sum(len(c) for _, c in chunks[:i]) for i in range(len(chunks))]
    whole = [(c.offset, c.length) for c in FastCDC(avg_size=avg).cut_buf(data)] if data else []
    assert [(s.offset, s.length) for s, _ in chunks] == whole
    os.unlink(path)


def test_opaque_float_file_is_probed_once_per_few_chunks_and_round_trips(workdir, monkeypatch):
    import numpy as np

    from ckptvc.objects import codecs
    from ckptvc.repo import Repo

    rng = np.random.default_rng(7)
    floats = rng.normal(0, 0.02, 3 << 20).astype(np.float32).tobytes()  # 12 MiB
    data = b"header of unknown format\n" * 7 + floats  # elements not aligned to the file start
    path = workdir / "weights.bin"
    path.write_bytes(data)
    probes = []
    real = codecs.probe_layout
    monkeypatch.setattr(codecs, "probe_layout", lambda raw, level: probes.append(1) or real(raw, level))
    with Repo.open(workdir) as repo:
        repo.config.core["chunk_size"] = 256 << 10
        repo.add([path])
        entry = repo.objectdb().get_manifest(repo.tracked()[0].pointer.manifest).files[0]
    assert len(entry.chunks) > 16
    assert len(probes) < len(entry.chunks) / 2  # reused, not one probe per chunk
    from ckptvc.objects.objectdb import object_key

    stored = sum(repo.cache.size(object_key(c.id)) for c in entry.chunks)
    assert 0.5 * len(data) < stored < 0.95 * len(data)  # byte planes were used: plain zstd barely shrinks floats
    path.unlink()
    with Repo.open(workdir) as repo:
        repo.checkout(paths=["weights.bin"])
    assert path.read_bytes() == data
