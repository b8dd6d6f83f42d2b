"""Compare delta codings of one checkpoint against the next, per FP32 tensor.

For each float32 tensor that changed between OLD and NEW (safetensors), codes OLD
  - whole-element: the smaller of XOR and zigzag difference (codecs 3/4),
  - split: high 16 bits as a zigzag difference, low 16 bits on their own (codec 5),
  - standalone (byte planes, zstd level 1),
and prints the totals per tensor group (weights, exp_avg, exp_avg_sq) in MB.

    python bench/delta_kinds.py /work/wl/finetune/ckpt-004.safetensors /work/wl/finetune/ckpt-005.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ckptvc.objects import codecs  # noqa: E402
from ckptvc.objects.formats import detect_layout  # noqa: E402


def group_of(name: str) -> str:
    if "exp_avg_sq" in name:
        return "exp_avg_sq"
    return "exp_avg" if "exp_avg" in name else "weights"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    a = ap.parse_args()
    layout = detect_layout(a.old, a.old.stat().st_size)
    if layout is None or layout.format != "safetensors":
        ap.error(f"{a.old}: not a safetensors file")
    old = np.memmap(a.old, np.uint8, "r")
    new = np.memmap(a.new, np.uint8, "r")
    kinds = ("whole-element", "split", "standalone")
    totals: dict[str, dict[str, int]] = {}
    for r in layout.regions:
        if r.dtype != "F32" or r.length % 4:
            continue
        x = np.ascontiguousarray(old[r.offset : r.offset + r.length])
        y = np.ascontiguousarray(new[r.offset : r.offset + r.length])
        if np.array_equal(x, y):
            continue
        base_id = "00" * 32
        sizes = {
            "whole-element": codecs.encode_delta(x, y, base_id, 0, 4, 1).size,
            "split": codecs.encode_split(None, x, codecs.top16(x), codecs.top16(y), base_id, 0, 1).size,
            "standalone": codecs.encode_standalone(x, 4, 1).size,
        }
        for g in (group_of(r.name), "all"):
            row = totals.setdefault(g, dict.fromkeys(kinds, 0))
            for k in kinds:
                row[k] += sizes[k]
    print(f"{'group':<12}" + "".join(f"{k:>16}" for k in kinds))
    for g, row in totals.items():
        print(f"{g:<12}" + "".join(f"{row[k] / 1e6:>13.2f} MB" for k in kinds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
