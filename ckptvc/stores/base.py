"""The one store interface.

A store maps keys ("objects/ab/cdef...", "tags/NAME") to immutable byte strings.
It knows nothing of what the bytes mean: the object layer (ckptvc.objects) puts
encoded objects here and verifies everything it reads back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

# A value to write: bytes, or a list of buffers written one after the other (no join).
Data = bytes | memoryview | list


def as_bytes(data: Data) -> bytes:
    return b"".join(data) if isinstance(data, list) else bytes(data)


class Store(ABC):
    """Narrow key/value interface over immutable values.

    Writes are atomic: after `write` returns, the key holds the whole value, and a
    crash at any moment leaves either the whole value or nothing under the key.
    """

    url: str

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    def exists_many(self, keys: Iterable[str]) -> set[str]:
        """The subset of `keys` present. Stores override this to batch round trips."""
        return {k for k in keys if self.exists(k)}

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The whole value; raises KeyError when absent."""

    def read_once(self, key: str) -> bytes:
        """Like read(), for a value the caller will not read again soon (a large
        restore streams through it): stores with a page cache may drop it after."""
        return self.read(key)

    def read_range(self, key: str, offset: int, length: int | None) -> bytes:
        """`length` bytes of a value from `offset` (to the end when None; fewer at the
        end of the value); raises KeyError when absent."""
        data = self.read(key)
        return data[offset:] if length is None else data[offset : offset + length]

    def prefetch(self, key: str, offset: int = 0, length: int | None = None,  # noqa: B027
                 once: bool = False) -> None:
        """Hint that (a range of) `key` will be read soon (stores with a page cache start
        reading it); once=True: by read_once. Optional: a no-op by default."""

    def read_prefix(self, key: str, length: int) -> bytes:
        """The first `length` bytes of a value (headers); raises KeyError when absent."""
        return self.read(key)[:length]

    @abstractmethod
    def write(self, key: str, data: Data, *, exclusive: bool = False) -> bool:
        """Store `data` under `key` atomically. Returns False (and writes nothing) when
        the key already exists; with exclusive=True the check-and-create is atomic, so
        two writers racing for one key see exactly one True."""

    @abstractmethod
    def replace(self, key: str, data: Data) -> None:
        """Atomically overwrite `key` with another encoding of the same content (a
        re-encoded object keeps its id). Readers see the old or the new value, whole."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`, in no particular order."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Stored size of a value, or None when absent."""

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """Stored sizes of the keys present. Stores override this to batch round trips."""
        out = {}
        for k in keys:
            n = self.size(k)
            if n is not None:
                out[k] = n
        return out

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Make the writes so far durable (stores that defer directory syncs)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
