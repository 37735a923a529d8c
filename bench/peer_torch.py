#!/usr/bin/env python3
# The PyTorch peer of `preftune bench`: full fine-tuning steps of a HF-config decoder (tools/reference/model.py,
# transformers' eager math) with torch.optim.AdamW on random ids, timed, printed as ONE JSON line.
# Not a trainer and not part of preftune's runtime: it only needs a python3 with torch (Debian's python3-torch).
#   python3 bench/peer_torch.py --config bench/configs/smollm2-135m.json --batch 4 --seq 512 --steps 3 --warmup 1 --threads 2
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "reference"))

from model import build_model  # noqa: E402


def matmul_params(model):
    n = sum(p.numel() for p in model.parameters())  # tied weights appear once
    if not model.c["tie_word_embeddings"]:
        n -= model.model.embed_tokens.weight.numel()
    return n


def flops_per_step(model, B, T):
    """Model FLOPs of one training step (forward + backward), the formula preftune's bench uses too:
      6 * N * B * T                 matmul work; N = parameters that multiply activations: every parameter
                                    except an untied input embedding table (a lookup); a tied table counts
                                    once, as the lm_head
    + 6 * L * B * T^2 * NH * HS     causal attention: QK^T and PV are 4 * T^2 * HS per head forward, x3 with
                                    backward, halved by the causal mask (= 12 * L * B * T^2 * (NH*HS) / 2)
    Norms, softmax, RoPE, SiLU and the optimizer are not counted."""
    c = model.c
    return 6 * matmul_params(model) * B * T + 6 * c["num_layers"] * B * T * T * c["num_heads"] * c["head_dim"]


def env_int(name):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") and v.isdigit() else v


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer benchmark (one JSON line on stdout)")
    ap.add_argument("--config", required=True, help="HF config.json")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.seq < 2:
        sys.exit("peer_torch.py: --steps and --batch must be >= 1 and --seq >= 2")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        cfg = json.load(f)
    model = build_model(cfg, torch.float32)
    std = cfg.get("initializer_range", 0.02)
    with torch.no_grad():  # transformers-style init: normal matrices, unit norms, zero biases
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.normal_(0.0, std)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    B, T, V = args.batch, args.seq, model.c["vocab_size"]
    ids = torch.randint(0, V, (B, T))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)  # (B, T, V), all of it, as a transformers user gets it
        loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the HF Trainer's default max_grad_norm
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    sps = statistics.median(times)
    flops = flops_per_step(model, B, T)
    print(json.dumps({
        "impl": "pytorch",
        "tokens_per_second": B * T / sps,
        "seconds_per_step": sps,
        "gflops": flops / sps / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": torch.get_num_threads(),
        "openblas_threads": env_int("OPENBLAS_NUM_THREADS"),
        "omp_num_threads": env_int("OMP_NUM_THREADS"),
        "batch": B,
        "seq": T,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_seconds": times,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_step": flops,
        "loss_last": losses[-1],
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
