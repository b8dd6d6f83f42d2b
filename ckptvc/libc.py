"""The C library, for the few calls the os module lacks (mallopt, fallocate)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def libc() -> ctypes.CDLL | None:
    """glibc, loaded once with errno kept for ctypes.get_errno(); None off Linux or
    when no C library can be loaded. "libc.so.6" is tried first: find_library runs
    `ldconfig -p` in a subprocess (2-3 ms), and each module that needed libc did that."""
    if not sys.platform.startswith("linux"):
        return None
    for name in ("libc.so.6", ctypes.util.find_library("c")):
        if name:
            try:
                return ctypes.CDLL(name, use_errno=True)
            except OSError:
                continue
    return None
