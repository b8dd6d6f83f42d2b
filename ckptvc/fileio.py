"""Writing large files: reserving their space, and the size of each write."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import BinaryIO

from ckptvc.libc import libc

_fallocate = getattr(libc(), "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    _fallocate.restype = ctypes.c_int


def reserve(fd: int, size: int, path: str | os.PathLike[str] | None = None) -> None:
    """Allocate `size` bytes to the open file `fd` before it is written.

    Why: a restore of a 2 GiB file spent 0.3 s less in the kernel when its blocks
    were allocated in one call instead of write by write (ext4), and a full disk is
    reported before anything is written. Linux's fallocate(2) is called directly:
    glibc's posix_fallocate would emulate it, where the file system lacks it, by
    writing a byte into every block. Raises OSError(ENOSPC) naming `path` on a full
    disk; any other failure (no support) is ignored: the writes allocate as they go."""
    if _fallocate is None or size <= 0:
        return
    if _fallocate(fd, 0, 0, size) != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(code, os.strerror(code), None if path is None else os.fspath(path))


# Large buffers are written in pieces of this size. Measured on ext4 (Linux 6.18,
# 2-core VM), restoring a 2 GiB file written chunk by chunk (~2 MiB per write()):
# 2.98-4.14 s of system CPU; in 256 KiB pieces: 2.82-3.11 s, and 5.76-6.22 ->
# 5.21-5.65 s of wall time over 7 alternating pairs. The pieces are views: nothing
# is copied in user space.
WRITE_PIECE = 256 << 10


def write_in_pieces(f: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write all of `data` to the binary file `f`, WRITE_PIECE bytes per call."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    for start in range(0, len(view), WRITE_PIECE):
        f.write(view[start : start + WRITE_PIECE])
