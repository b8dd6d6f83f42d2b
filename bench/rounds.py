#!/usr/bin/env python3
"""The same bench, several rounds, and the median of each ratio: one run says little on a
noisy machine (this project's VMs: the same tree's MiniLM add+commit 10.4-13.5 s in four
runs in a row).

    python bench/rounds.py -n 3 -- --workload /work/wl --ckptvc-rev HEAD --tmp /work/bt --only minilm,big
    python bench/rounds.py --s3 -n 2 -- --workload /work/wl --ckptvc-rev HEAD --tmp /work/bt
    python bench/rounds.py --from bench/out/results-A.json bench/out/results-B.json   # no new runs

Everything after `--` goes to bench/run_bench.py (or run_s3_bench.py with --s3), run once per
round; each round is one side-by-side run of both tools, as ever. Prints, per workload and
timed metric, each round's ckptvc/DVC ratio and their median, min and max.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (workload, metric, label): the timed rows that have targets, of run_bench.py's results ...
LOCAL_ROWS = [
    ("minilm", "add_commit_s", "MiniLM add+commit, series"),
    ("minilm", "restore_latest_s", "MiniLM pull latest"),
    ("minilm", "restore_step2_s", "MiniLM step 2 pull"),
    ("minilm", "restore_step0_s", "MiniLM step 0 pull"),
    ("minilm", "restore_others_mean_s", "MiniLM other older pulls (mean)"),
    ("minilm", "local_checkout_mean_s", "MiniLM checkout, cache has all (mean)"),
    ("big", "add_commit_s", "2 GiB add+commit v1 + v2"),
    ("big", "restore_latest_s", "2 GiB fresh clone + pull"),
    ("big", "restore_v1_s", "2 GiB checkout v1 + pull"),
    ("status", "status_best_s", "status, 100 files"),
]
# ... and of run_s3_bench.py's (SeaweedFS)
S3_ROWS = [
    ("minilm", "push_s", "MiniLM push to S3"),
    ("minilm", "pull_s", "MiniLM pull from S3"),
    ("big", "push_s", "2 GiB push to S3"),
    ("big", "pull_s", "2 GiB pull from S3"),
]


def run_round(script: Path, args: list[str]) -> Path:
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-400:] if proc.returncode else "")
    found = re.findall(r"^results: (\S+?)(?:;|$)", proc.stdout, re.M)
    if not found:
        raise SystemExit(f"{script.name} printed no results file (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return Path(found[-1])


def summarize(paths: list[Path]) -> str:
    docs = [json.loads(p.read_text()) for p in paths]
    lines = [f"{len(docs)} rounds: " + ", ".join(p.name for p in paths), "",
             f"{'metric':40s} {'ckptvc s (median)':>18s} {'DVC s (median)':>15s} {'ratio median':>13s} "
             f"{'min':>6s} {'max':>6s}  per round"]
    s3 = ["weed" in d.get("meta", {}) for d in docs]
    if any(s3) and not all(s3):
        raise SystemExit("results of run_bench.py and of run_s3_bench.py mixed: summarize them apart")
    for wl, key, label in (S3_ROWS if all(s3) else LOCAL_ROWS):
        mine, theirs, ratios = [], [], []
        for d in docs:
            tools = d.get("workloads", {}).get(wl, {})
            a = tools.get("ckptvc", {}).get("metrics", {}).get(key)
            b = tools.get("dvc", {}).get("metrics", {}).get(key)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
                mine.append(a)
                theirs.append(b)
                ratios.append(a / b)
        if not ratios:
            continue
        lines.append(f"{label:40s} {statistics.median(mine):18.2f} {statistics.median(theirs):15.2f} "
                     f"{statistics.median(ratios):13.2f} {min(ratios):6.2f} {max(ratios):6.2f}  "
                     + " ".join(f"{r:.2f}" for r in ratios))
    return "\n".join(lines)


def main() -> int:
    argv = sys.argv[1:]
    passthrough: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--rounds", type=int, default=3)
    ap.add_argument("--s3", action="store_true", help="run bench/run_s3_bench.py instead of run_bench.py")
    ap.add_argument("--from", dest="from_files", nargs="+", type=Path, metavar="RESULTS_JSON",
                    help="summarize these results files instead of running")
    a = ap.parse_args(argv)
    if a.from_files:
        paths = a.from_files
    else:
        script = HERE / ("run_s3_bench.py" if a.s3 else "run_bench.py")
        paths = []
        for k in range(a.rounds):
            print(f"round {k + 1}/{a.rounds} ...", flush=True)
            paths.append(run_round(script, passthrough))
    print(summarize(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
