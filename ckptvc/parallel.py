"""Bounded, ordered parallel map: results come back in input order, and at most
`window` items are in flight, so memory stays bounded however large the input."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs(configured: int = 0) -> int:
    return configured if configured > 0 else max(os.cpu_count() or 1, 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], jobs: int, window: int | None = None,
                pool: ThreadPoolExecutor | None = None) -> Iterator[R]:
    """`pool`: run on these workers (kept by the caller across calls) instead of
    workers started for this call."""
    window = window or jobs * 2
    if jobs <= 1:
        for item in items:
            yield fn(item)
        return
    with contextlib.nullcontext(pool) if pool is not None else ThreadPoolExecutor(max_workers=jobs) as workers:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(workers.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
            if pool is not None:
                # the caller's workers outlive this call: what was cancelled too late
                # must not run on after the caller has moved on
                for f in pending:
                    with contextlib.suppress(BaseException):
                        f.result()


class WorkerPools:
    """Named thread pools kept across calls (the files of one folder artifact, the
    artifacts of one checkout) and shut down together. Threads started per file each
    brought their own malloc arena, which kept what the file's buffers had used:
    peak RSS grew with every file of a sharded checkpoint."""

    def __init__(self) -> None:
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def get(self, name: str, workers: int) -> ThreadPoolExecutor:
        key = f"{name}-{workers}"
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ckptvc-{key}")
        return pool

    def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=True)

    def __enter__(self) -> WorkerPools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
