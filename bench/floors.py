#!/usr/bin/env python3
"""What this machine allows, whatever the tool: the floors under the speed targets.

    python bench/floors.py --remote DIR        # reads of a local remote's objects
    python bench/floors.py --s3                # a SeaweedFS server's CPU per MiB, and the client's per request

--remote DIR: every object of 1 MiB or more in DIR/objects/, read in name order after
the page cache is dropped, with O_DIRECT and buffered, by 1, 2, 4 and 8 threads. A
restore from that remote reads these bytes, so the best of these times is a floor under
its wall time (add Python's start, ~0.2 s).

--s3: starts SeaweedFS (tests/s3servers.py) on 127.0.0.1, PUTs 200 MiB as 100 objects of
2 MiB and as 25 of 8 MiB, then GETs the 2 MiB ones, 8 at a time with boto3, then as a
ckptvc S3 store reads objects (through boto3, and outside it: stores/s3_direct.py), reading
the server's CPU from /proc around each step. On a machine where the server shares the
cores with the tool, server CPU-s plus client CPU-s over the core count is a floor under
a push's or pull's wall time.
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_bench as rb  # noqa: E402


def object_files(remote: Path) -> list[Path]:
    files = sorted(p for p in (remote / "objects").glob("*/*") if p.stat().st_size >= 1 << 20)
    if not files:
        raise SystemExit(f"{remote}: no objects of 1 MiB or more under objects/")
    return files


def read_all(files: list[Path], threads: int, direct: bool) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of reading every file once."""
    local = threading.local()

    def one(path: Path) -> int:
        if not direct:
            with open(path, "rb", buffering=0) as f:
                return len(f.read())
        buf = getattr(local, "buf", None)
        size = path.stat().st_size
        want = -(-size // 4096) * 4096
        if buf is None or len(buf) < want:
            buf = local.buf = mmap.mmap(-1, max(want, 8 << 20))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            return min(os.preadv(fd, [memoryview(buf)[:want]], 0), size)
        finally:
            os.close(fd)

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(one, files))
    return time.perf_counter() - t0, time.process_time() - c0, total


def remote_floor(remote: Path) -> None:
    files = object_files(remote)
    pc = rb.PageCache(enabled=True)
    pc.drop()
    print(f"{remote}: {len(files)} objects of 1 MiB or more; page cache drop: {pc.summary()}")
    for direct in (True, False):
        for threads in (1, 2, 4, 8):
            pc.drop()
            try:
                wall, cpu, total = read_all(files, threads, direct)
            except OSError as exc:  # EINVAL: a file system that refuses O_DIRECT (tmpfs, some FUSE)
                print(f"  {'O_DIRECT' if direct else 'buffered'} reads refused: {exc.strerror}")
                break
            print(f"  {'O_DIRECT' if direct else 'buffered'} {threads} threads: {total / 2**20:7.0f} MiB in "
                  f"{wall:5.2f} s = {total / wall / 1e6:5.0f} MB/s, {cpu:4.2f} CPU-s")


def s3_floor() -> None:
    # the S3 bench's server helpers (it makes tests/s3servers.py importable without pytest)
    from run_s3_bench import proc_cpu_s, s3servers

    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                 ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    with tempfile.TemporaryDirectory(prefix="ckptvc-floors-") as tmp:
        server = s3servers.start_seaweedfs(Path(tmp))
        try:
            server.create_bucket("floors")
            client = server.client()
            pid = server.proc.pid
            small = [os.urandom(2 << 20) for _ in range(100)]
            big = [b"".join(small[i:i + 4]) for i in range(0, 100, 4)]

            def step(label: str, fn, items) -> None:
                s0, c0, t0 = proc_cpu_s(pid), time.process_time(), time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(fn, items))
                wall, cpu, server_cpu = time.perf_counter() - t0, time.process_time() - c0, proc_cpu_s(pid) - s0
                print(f"  {label}: {wall:5.2f} s, client {cpu:4.2f} CPU-s ({cpu / len(items) * 1000:4.1f} ms per "
                      f"request), server {server_cpu:4.2f} CPU-s ({server_cpu / 200 * 1000:4.1f} ms per MiB)")

            print(f"SeaweedFS at {server.endpoint}, 8 requests at a time, 200 MiB each step:")
            step("PUT 100 x 2 MiB", lambda i: client.put_object(Bucket="floors", Key=f"s/{i}", Body=small[i]),
                 range(100))
            step("PUT  25 x 8 MiB", lambda i: client.put_object(Bucket="floors", Key=f"b/{i}", Body=big[i]),
                 range(25))
            step("GET 100 x 2 MiB", lambda i: client.get_object(Bucket="floors", Key=f"s/{i}")["Body"].read(),
                 range(100))
            # the same objects as a ckptvc S3 store reads them: through boto3, then outside it
            from ckptvc.stores.s3 import S3Store

            keys = [f"objects/{i:02x}/{'0' * 62}" for i in range(100)]
            step("PUT 100 x 2 MiB (store)", lambda i: client.put_object(Bucket="floors", Key=keys[i], Body=small[i]),
                 range(100))
            for label, direct in (("boto3", "0"), ("direct", "1"), ("boto3", "0"), ("direct", "1")):
                os.environ["CKPTVC_S3_DIRECT_GET"] = direct
                store = S3Store.from_url("s3://floors", endpoint_url=server.endpoint)
                store.read(keys[0])  # the client made before the clock starts
                step(f"GET 100 x 2 MiB, store, {label:6s}", lambda i, st=store: st.read(keys[i]), range(100))
                store.close()
            os.environ.pop("CKPTVC_S3_DIRECT_GET")
        finally:
            server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--remote", type=Path, help="a local remote (or cache) directory with objects/")
    ap.add_argument("--s3", action="store_true", help="measure a local SeaweedFS server")
    a = ap.parse_args()
    if not a.remote and not a.s3:
        ap.error("give --remote DIR, --s3, or both")
    if a.remote:
        remote_floor(a.remote)
    if a.s3:
        s3_floor()
    return 0


if __name__ == "__main__":
    sys.exit(main())
