"""Bounded, ordered parallel map: results come back in input order, and at most
`window` items are in flight, so memory stays bounded however large the input."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs(configured: int = 0) -> int:
    return configured if configured > 0 else max(os.cpu_count() or 1, 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], jobs: int, window: int | None = None) -> Iterator[R]:
    window = window or jobs * 2
    if jobs <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
