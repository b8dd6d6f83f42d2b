"""Large-file writing helpers: every byte lands, in order, whatever the buffer."""

from __future__ import annotations

import array
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptvc import fileio


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from([0, 1, fileio.WRITE_PIECE - 1, fileio.WRITE_PIECE, fileio.WRITE_PIECE + 1,
                             3 * fileio.WRITE_PIECE + 17]), seed=st.integers(0, 1000))
def test_write_in_pieces_writes_every_byte_in_order(tmp_path, size, seed):
    data = os.urandom(size)
    path = tmp_path / f"w{seed}-{size}"
    with open(path, "wb") as f:
        fileio.write_in_pieces(f, memoryview(data))
    assert path.read_bytes() == data


def test_write_in_pieces_takes_buffers_of_wider_items(tmp_path):
    words = array.array("I", range(200_000))  # 800,000 bytes in 4-byte items
    with open(tmp_path / "w", "wb") as f:
        fileio.write_in_pieces(f, memoryview(words))
    assert (tmp_path / "w").read_bytes() == words.tobytes()


def test_reserve_gives_the_file_its_size_and_writes_replace_the_zeros(tmp_path):
    path = tmp_path / "r"
    with open(path, "wb+") as f:
        fileio.reserve(f.fileno(), 1 << 20, path)
        fileio.write_in_pieces(f, b"\x01" * (1 << 20))
    assert path.read_bytes() == b"\x01" * (1 << 20)
