# Writes the committed parity fixtures: tests/fixtures/core/<model>/ (checkpoint, per-token outputs,
# loss, every gradient, a 10-step AdamW trajectory) and, through loss_fixtures.py, tests/fixtures/losses/.
# Usage (from the repo root, with the python3 that has torch):  python3 tools/reference/make_fixtures.py
# Deterministic: single-threaded, seeded, sorted safetensors keys; rerunning rewrites identical bytes.
# Not a test: tests read these files and never need torch.
import argparse
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from model import real_mask, token_stats  # noqa: E402
from safetensors_io import save_file  # noqa: E402
from tiny_models import TINY_MODELS, grads_of, init_tiny, save_checkpoint, to_dtype, trajectory  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CORE_B, CORE_T, CORE_LENGTHS = 3, 17, [17, 12, 9]
CORE_TRAIN = {"steps": 10, "lr": 1e-3, "weight_decay": 0.01, "max_grad_norm": 1.0}


def core_batch(vocab_size, seed):
    """Random right-padded ids (pad 0) and a label-aligned loss mask that starts at a random
    'prompt length' p in [2, len/2] and runs to the end of each row."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(CORE_LENGTHS, dtype=torch.int64)
    ids = torch.randint(1, vocab_size, (CORE_B, CORE_T), generator=g)
    t = torch.arange(CORE_T)[None, :]
    ids = torch.where(t < lengths[:, None], ids, torch.zeros((), dtype=torch.int64))
    starts = torch.stack([torch.randint(2, int(n) // 2 + 1, (1,), generator=g)[0] for n in lengths])
    loss_mask = ((t >= starts[:, None]) & real_mask(lengths, CORE_T)).to(torch.float64)
    return ids, lengths, loss_mask


def masked_nll(logps, loss_mask):
    return -(logps * loss_mask).sum() / loss_mask.sum()


def write_core(name, out_root, dtype):
    hf_config, seed = TINY_MODELS[name]
    folder = os.path.join(out_root, "core", name)
    model32 = init_tiny(hf_config, seed)
    save_checkpoint(model32, folder)

    model = to_dtype(model32, dtype)
    ids, lengths, loss_mask = core_batch(hf_config["vocab_size"], seed + 100)
    stats = token_stats(model, ids, lengths)
    loss = masked_nll(stats["logps"], loss_mask.to(dtype))
    loss.backward()
    tensors = {
        "input_ids": (ids, "I32"),
        "lengths": (lengths, "I32"),
        "loss_mask": (loss_mask, "F32"),
        "logps": (stats["logps"], "F32"),
        "logits_mean": (stats["logits_mean"], "F32"),
        "entropy": (stats["entropy"], "F32"),
        "correct": (stats["correct"], "U8"),
        "loss": (loss.detach().reshape(()), "F32"),
        **grads_of(model),
    }

    fresh = to_dtype(model32, dtype)
    mask = loss_mask.to(dtype)
    traj_loss, traj_norm = trajectory(
        fresh, lambda m: masked_nll(token_stats(m, ids, lengths)["logps"], mask),
        CORE_TRAIN["steps"], CORE_TRAIN["lr"], CORE_TRAIN["weight_decay"], CORE_TRAIN["max_grad_norm"],
    )
    tensors["traj_loss"] = (traj_loss, "F32")
    tensors["traj_grad_norm"] = (traj_norm, "F32")
    metadata = {
        "model": name,
        "seed": str(seed),
        "compute_dtype": str(dtype).replace("torch.", ""),
        "loss": "-sum(logps * loss_mask) / sum(loss_mask)",
        "optimizer": "torch.optim.AdamW",
        "lr": repr(CORE_TRAIN["lr"]),
        "betas": "0.9,0.999",
        "eps": "1e-08",
        "weight_decay": repr(CORE_TRAIN["weight_decay"]),
        "weight_decay_applies_to": "every parameter except *.bias and *norm.weight",
        "max_grad_norm": repr(CORE_TRAIN["max_grad_norm"]),
        "clip": "torch.nn.utils.clip_grad_norm_ before each step; traj_grad_norm is the pre-clip norm",
        "lr_scheduler": "constant",
        "steps": str(CORE_TRAIN["steps"]),
        "traj_loss": "loss before each step, on the same batch every step",
        "torch_version": torch.__version__,
    }
    save_file(tensors, os.path.join(folder, "fixture.safetensors"), metadata)
    print(f"core/{name}: loss {loss.item():.6f}, traj {traj_loss[0].item():.5f} -> {traj_loss[-1].item():.5f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"), help="fixture root (default tests/fixtures)")
    ap.add_argument("--only", choices=["core", "losses"], help="write one group only")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="compute dtype; float64 (default) makes the fixtures the exact math of the fp32 weights")
    args = ap.parse_args()
    torch.set_num_threads(1)  # reduction order fixed, so bytes are reproducible
    dtype = getattr(torch, args.dtype)
    if args.only in (None, "core"):
        for name in TINY_MODELS:
            write_core(name, args.out, dtype)
    if args.only in (None, "losses"):
        from loss_fixtures import write_losses

        write_losses(args.out, dtype)


if __name__ == "__main__":
    main()
