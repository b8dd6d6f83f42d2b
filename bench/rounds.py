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

sys.path.insert(0, str(HERE))


def timed_rows(s3: bool) -> list[tuple[str, str, str]]:
    """(workload, metric, label) of every timed row the bench's own table prints."""
    if s3:
        import run_s3_bench as sb

        return [(wl, key, label.strip()) for wl in sb.WORKLOADS for key, label, kind in sb.ROWS
                if kind == "s" and key not in sb.NO_RATIO]
    import run_bench as rb

    return [(wl, key, label.strip()) for wl, rows in rb.ROWS.items() for key, label, kind in rows if kind == "s"]


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
             f"{'metric':56s} {'ckptvc s (median)':>18s} {'DVC s (median)':>15s} {'ratio median':>13s} "
             f"{'min':>6s} {'max':>6s}  per round"]
    s3 = ["weed" in d.get("meta", {}) for d in docs]
    if any(s3) and not all(s3):
        raise SystemExit("results of run_bench.py and of run_s3_bench.py mixed: summarize them apart")
    for wl, key, label in timed_rows(all(s3)):
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
        lines.append(f"{wl + ': ' + label:56s} {statistics.median(mine):18.2f} {statistics.median(theirs):15.2f} "
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
