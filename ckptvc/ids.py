"""Content ids: the blake3 of uncompressed content, as 64 lowercase hex characters."""

from __future__ import annotations

import re

import blake3

ID_HEX_LEN = 64
_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# Above this size a hash uses blake3's own worker threads (it releases the GIL).
_THREADED_HASH_MIN = 1 << 20


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def hash_bytes(data: bytes | memoryview) -> str:
    if len(data) >= _THREADED_HASH_MIN:
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
    return blake3.blake3(data).hexdigest()


def new_hasher() -> blake3.blake3:
    return blake3.blake3(max_threads=blake3.blake3.AUTO)
