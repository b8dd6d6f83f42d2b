#!/usr/bin/env python3
"""Where a pull or an add spends its time: wall and CPU per function and thread, in-process.

    python bench/instrument.py pull CLONE [REMOTE]     # ckptvc pull in CLONE (page cache dropped first)
    python bench/instrument.py add REPO PATH           # ckptvc add PATH in REPO

Wraps the functions that do the work (reads, decodes, writes, hashes, codecs, S3 GETs)
with timers that add up wall time and thread CPU time (time.thread_time) by function and
by thread pool, then runs the command through the Python API. Times are inclusive (get_raw
contains read_stored and decode). A function whose wall time
is far above its CPU time waits: for the disk, the network, the GIL or a lock. Sums over a
pool's threads: divide by the pool's size for the time of one thread. The wrappers cost a
few percent. Set CK=DIR to measure the ckptvc tree in DIR.
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("CK", os.path.join(HERE, "..")))
sys.path.insert(1, HERE)

import blake3  # noqa: E402
import run_bench as rb  # noqa: E402

import ckptvc.ingest as ingest  # noqa: E402
import ckptvc.restore as restore  # noqa: E402
from ckptvc.objects import codecs, envelope, objectdb  # noqa: E402
from ckptvc.repo import Repo  # noqa: E402
from ckptvc.stores import local, s3  # noqa: E402

_totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
_lock = threading.Lock()


def _account(label: str, t0: float, c0: float) -> None:
    pool = threading.current_thread().name.rsplit("_", 1)[0]
    with _lock:
        row = _totals[(label, pool)]
        row[0] += time.perf_counter() - t0
        row[1] += time.thread_time() - c0
        row[2] += 1


def wrap(owner, name: str, label: str | None = None) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _account(label or name, t0, c0)

    setattr(owner, name, timed)


class _TimedHasher:
    """The restore's whole-file hasher, timed (restore.py calls blake3.blake3())."""

    def __init__(self) -> None:
        self._h = blake3.blake3()

    def update(self, data) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self._h.update(data)
        _account("file blake3", t0, c0)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def instrument() -> None:
    for name in ("get_raw", "read_stored", "prefetch_chain"):
        wrap(objectdb.ObjectDB, name)
    for name in ("decode", "_interleave", "_plane_bytes", "encode_standalone", "encode_split",
                 "split_hi_decodes_to", "top16_of_planes", "encode_planes_parts", "_compress_plane"):
        wrap(codecs, name)
    wrap(envelope, "pack_parts")
    wrap(objectdb, "check_envelope")
    wrap(restore, "write_in_pieces", "workspace write")
    wrap(local.LocalStore, "_write", "store write")
    wrap(local.LocalStore, "sync", "store sync")
    wrap(s3.S3Store, "_fetch", "S3 GET")
    for name in ("_store_chunk", "_recode_parent", "_split_delta"):
        wrap(ingest.Ingester, name)
    wrap(ingest, "hash_bytes", "chunk id blake3")
    restore.blake3 = type("blake3_module", (), {"blake3": _TimedHasher})


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in ("pull", "add") or (sys.argv[1] == "add" and len(sys.argv) != 4):
        print(__doc__, file=sys.stderr)
        return 2
    what, where = sys.argv[1], sys.argv[2]
    instrument()
    os.chdir(where)
    if what == "pull":
        pc = rb.PageCache(enabled=True)
        pc.drop()
        print(f"page cache drop: {pc.summary()}")
    t0, c0 = time.perf_counter(), time.process_time()
    with Repo.open(".") as repo:
        if what == "pull":
            repo.pull(sys.argv[3] if len(sys.argv) > 3 else None)
        else:
            repo.add([sys.argv[3]])
    print(f"{what}: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} CPU-s (whole process)")
    print(f"{'function':24s} {'thread pool':24s} {'wall s':>8s} {'CPU s':>8s} {'calls':>7s}")
    for (label, pool), (wall, cpu, calls) in sorted(_totals.items(), key=lambda kv: -kv[1][0]):
        print(f"{label:24s} {pool:24s} {wall:8.2f} {cpu:8.2f} {int(calls):7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
