#!/usr/bin/env python3
"""The byte-plane loops of the codecs, C against numpy (ckptvc/objects/planes_kernels.py).

    python bench/kernels.py [--mib 4] [--reps 50]

Times each loop on one chunk of float32 (default 4 MiB, a typical tensor chunk), best of
--reps, in the C module and in the numpy fallback, and checks that both give the same
bytes. Needs the C module built (`pip install -e .` with a C compiler).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ckptvc.objects import planes_kernels as k  # noqa: E402


def best_ms(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=4)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    if not k.HAVE_C:
        print("the C module ckptvc.objects._planes is not built (or CKPTVC_NO_C_KERNELS is set)")
        return 1
    rng = np.random.default_rng(0)
    raw = rng.standard_normal(a.mib << 18).astype(np.float32).view(np.uint8)
    other = (raw.view(np.float32) * np.float32(1.001)).view(np.uint8)
    planes4 = k.split(raw, 4)
    lo0, lo1 = planes4[0], planes4[1]
    top, other_top = k.top16(raw), k.top16(other)
    zz = k.zigzag16_sub(top, other_top)
    out = np.empty_like(raw)

    def c_join():
        k.join(list(planes4), out)

    def np_join():
        k._np_join(list(planes4), out)

    def c_unzig():
        k.unzigzag16_add(zz.copy(), other_top)

    def np_unzig():
        k._np_unzigzag16_add(zz.copy(), other_top)

    cases = [
        ("split into 4 planes", lambda: k.split(raw, 4), lambda: k._np_split(raw, 4)),
        ("join 4 planes", c_join, np_join),
        ("join 2 planes", lambda: k.join([lo0, lo1], out[: 2 * len(lo0)]),
         lambda: k._np_join([lo0, lo1], out[: 2 * len(lo0)])),
        ("top 16 bits", lambda: k.top16(raw), lambda: k._np_top16(raw)),
        ("low 16 bits", lambda: k.low16(raw), lambda: k._np_low16(raw)),
        ("zigzag(top - base top)", lambda: k.zigzag16_sub(top, other_top), lambda: k._np_zigzag16_sub(top, other_top)),
        ("base top + unzigzag (incl. a copy)", c_unzig, np_unzig),
        ("split delta output (lo planes + top)", lambda: k.join_low_top(lo0, lo1, top, out),
         lambda: k._np_join_low_top(lo0, lo1, top, out)),
    ]
    assert np.array_equal(k.split(raw, 4), k._np_split(raw, 4))
    assert np.array_equal(k.zigzag16_sub(top, other_top), k._np_zigzag16_sub(top, other_top))
    print(f"{a.mib} MiB of float32, best of {a.reps}:")
    print(f"  {'loop':38s} {'numpy ms':>9s} {'C ms':>7s} {'ratio':>6s}")
    for name, c_fn, np_fn in cases:
        t_np, t_c = best_ms(np_fn, a.reps), best_ms(c_fn, a.reps)
        print(f"  {name:38s} {t_np:9.3f} {t_c:7.3f} {t_c / t_np:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
