# Writes tests/fixtures/losses/: TRL preference losses (ORPO, DPO sigmoid, IPO, SimPO, KTO) on llama-tiny
# and qwen2-tiny over one seeded 8-pair batch -- loss, TRL metrics, d loss / d token logps and every
# parameter gradient -- plus 20-step ORPO and DPO trajectories on llama-tiny. Called by make_fixtures.py.
# Not a trainer and not TRL: batches are built here directly in TRL's collated layout.
import os

import torch

from model import real_mask, stats_from_logits
from safetensors_io import save_file
from tiny_models import TINY_MODELS, grads_of, load_checkpoint, perturbed_copy, save_weights, to_dtype, trajectory
from trl_losses import dpo_family, kto, orpo, simpo

N_PAIRS = 8
LOSS_MODELS = ("llama-tiny", "qwen2-tiny")
HP = {"orpo_beta": 0.1, "dpo_beta": 0.1, "ipo_beta": 0.1, "simpo_beta": 2.0, "simpo_gamma": 0.5, "kto_beta": 0.1}
# Perturbation seeds for the reference models, picked from the first ten after seed + 300 so that KTO's
# KL estimate comes out positive (z = +0.063 / +0.115): with a negative mean the clamp would set z = 0
# and a wrong KL pass could not show in the fixture.
REF_SEEDS = {"llama-tiny": 1306, "qwen2-tiny": 1304}
TRAJ = {"steps": 20, "lr": 1e-3, "weight_decay": 0.0, "max_grad_norm": 1.0}


def _pad(rows):
    """rows: list of (prompt ids, completion ids) -> dict of (B, T) right-padded tensors, T = longest row."""
    lengths = torch.tensor([len(p) + len(c) for p, c in rows])
    T = int(lengths.max())
    ids = torch.zeros(len(rows), T, dtype=torch.int64)
    cm = torch.zeros(len(rows), T, dtype=torch.float64)
    for b, (p, c) in enumerate(rows):
        ids[b, : len(p) + len(c)] = torch.cat((p, c))
        cm[b, len(p) : len(p) + len(c)] = 1.0  # label-aligned: token t is a completion token
    return {"input_ids": ids, "lengths": lengths, "completion_mask": cm,
            "prompt_lengths": torch.tensor([len(p) for p, _ in rows])}


def preference_batch(vocab_size, seed):
    """8 random pairs (prompt 3-6, chosen and rejected 2-7 tokens, ids in [1, V)), collated TRL-style:
    rows 0-7 prompt+chosen, rows 8-15 prompt+rejected. KTO views the rows as unpaired (0-7 desirable)
    and gives row i the KL completion of row i-1 (row 0 takes row 15's), TRL's rotation."""
    g = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return torch.randint(1, vocab_size, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g)

    pairs = [(draw(3, 6), draw(2, 7), draw(2, 7)) for _ in range(N_PAIRS)]
    rows = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
    batch = _pad(rows)
    kl = _pad([(rows[i][0], rows[i - 1][1]) for i in range(len(rows))])
    batch.update({"KL_" + k: v for k, v in kl.items()})
    batch["label"] = torch.arange(2 * N_PAIRS) < N_PAIRS
    batch["n"] = N_PAIRS
    return batch


def batch_tensors(batch, kto_rows=False):
    out = {
        "input_ids": (batch["input_ids"], "I32"),
        "lengths": (batch["lengths"], "I32"),
        "prompt_lengths": (batch["prompt_lengths"], "I32"),
        "completion_mask": (batch["completion_mask"], "F32"),
    }
    if kto_rows:
        out.update({
            "label": (batch["label"], "U8"),
            "KL_input_ids": (batch["KL_input_ids"], "I32"),
            "KL_lengths": (batch["KL_lengths"], "I32"),
            "KL_completion_mask": (batch["KL_completion_mask"], "F32"),
        })
    return out


def _no_grad_logps(model, ids, lengths):
    with torch.no_grad():
        return stats_from_logits(model(ids, lengths), ids, lengths)["logps"]


def run_loss(kind, policy32, ref, batch, dtype):
    """One loss on a fresh float64 copy of the policy. Returns the tensors to store and the loss."""
    model = to_dtype(policy32, dtype)
    ids, lengths = batch["input_ids"], batch["lengths"]
    logits = model(ids, lengths)
    stats = stats_from_logits(logits, ids, lengths)
    lp = stats["logps"]
    lp.retain_grad()
    out = {}
    if kind == "orpo":
        loss, metrics = orpo(lp, batch, logits.detach(), HP["orpo_beta"])
    elif kind == "simpo":
        loss, metrics = simpo(lp, batch, logits.detach(), HP["simpo_beta"], HP["simpo_gamma"])
    else:
        ref_lp = _no_grad_logps(ref, ids, lengths)
        out["ref_logps"] = (ref_lp, "F32")
        if kind in ("dpo", "ipo"):
            loss, metrics = dpo_family(lp, ref_lp, batch, stats, HP[kind + "_beta"], "sigmoid" if kind == "dpo" else "ipo")
        else:
            kl_ids, kl_len = batch["KL_input_ids"], batch["KL_lengths"]
            kl_lp, ref_kl_lp = _no_grad_logps(model, kl_ids, kl_len), _no_grad_logps(ref, kl_ids, kl_len)
            out["KL_logps"], out["ref_KL_logps"] = (kl_lp, "F32"), (ref_kl_lp, "F32")
            loss, metrics = kto(lp, ref_lp, kl_lp, ref_kl_lp, batch, stats, HP["kto_beta"])
    loss.backward()
    if kind in ("orpo", "simpo"):
        # the same statistic over positions that predict a real token only (TRL's includes padding logits)
        cut = slice(None, batch["n"]), slice(batch["n"], None)
        real = real_mask(lengths, ids.shape[1])
        for key, rows in zip(("chosen", "rejected"), cut):
            m = real[rows].to(dtype)
            out["alt.logits/" + key] = ((stats["logits_mean"][rows] * m).sum() / m.sum(), "F32")
    out.update({
        "loss": (loss.detach().reshape(()), "F32"),
        "logps": (lp.detach(), "F32"),
        "logits_mean": (stats["logits_mean"], "F32"),
        "entropy": (stats["entropy"], "F32"),
        "correct": (stats["correct"], "U8"),
        "dloss_dlogps": (lp.grad, "F32"),
        **{"metric." + k: (torch.tensor(v, dtype=torch.float64), "F32") for k, v in metrics.items()},
        **grads_of(model),
    })
    return out, loss.item(), metrics


DESCRIBE = {
    "orpo": {"trainer": "trl.experimental.orpo.ORPOTrainer", "beta": "0.1",
             "loss": "nll_loss - mean(beta * logsigmoid(log_odds)); odds on completion-averaged logps; "
                     "nll_loss = token-mean CE over chosen rows, positions 1..len-1 (prompt included)"},
    "dpo": {"trainer": "trl.DPOTrainer", "loss_type": "sigmoid", "beta": "0.1",
            "loss": "mean(-logsigmoid(beta * ((c - c_ref) - (r - r_ref)))); summed completion logps"},
    "ipo": {"trainer": "trl.DPOTrainer", "loss_type": "ipo", "beta": "0.1",
            "loss": "mean(((c - c_ref)/|c| - (r - r_ref)/|r| - 1/(2 beta))^2); summed logps over completion counts"},
    "simpo": {"trainer": "trl.experimental.cpo.CPOTrainer", "loss_type": "simpo", "beta": "2.0",
              "simpo_gamma": "0.5", "cpo_alpha": "0.0", "label_smoothing": "0.0",
              "loss": "mean(-logsigmoid(beta * (avg_c - avg_r) - simpo_gamma)); completion-averaged logps"},
    "kto": {"trainer": "trl.KTOTrainer", "loss_type": "kto", "beta": "0.1", "desirable_weight": "1.0",
            "undesirable_weight": "1.0",
            "loss": "mean(cat(1 - sigmoid(beta*(rho_d - z)), 1 - sigmoid(beta*(z - rho_u)))); "
                    "z = clamp(mean(KL_logps - ref_KL_logps), min=0), no gradient; rows 0-7 desirable"},
}


def write_losses(out_root, dtype):
    folder = os.path.join(out_root, "losses")
    os.makedirs(folder, exist_ok=True)
    for name in LOSS_MODELS:
        seed = TINY_MODELS[name][1]
        policy32 = load_checkpoint(os.path.join(out_root, "core", name), torch.float32)
        perturbed32 = perturbed_copy(policy32, REF_SEEDS[name])
        save_weights(perturbed32, os.path.join(folder, f"{name}-ref.safetensors"))
        refs = {"initial": to_dtype(policy32, dtype), "perturbed": to_dtype(perturbed32, dtype)}
        batch = preference_batch(TINY_MODELS[name][0]["vocab_size"], seed + 200)
        for kind in ("orpo", "dpo", "ipo", "simpo", "kto"):
            variants = ("initial", "perturbed") if kind in ("dpo", "ipo", "kto") else (None,)
            for variant in variants:
                tensors, loss, metrics = run_loss(kind, policy32, refs.get(variant), batch, dtype)
                tensors.update(batch_tensors(batch, kto_rows=kind == "kto"))
                meta = {"model": name, "policy": f"tests/fixtures/core/{name}/model.safetensors",
                        "compute_dtype": str(dtype).replace("torch.", ""), "torch_version": torch.__version__,
                        **DESCRIBE[kind]}
                suffix = "" if variant in (None, "initial") else "-perturbed-ref"
                if variant is not None:
                    meta["reference"] = (f"tests/fixtures/losses/{name}-ref.safetensors (policy + N(0, 0.01), seed {REF_SEEDS[name]})"
                                         if variant == "perturbed" else "the policy's own initial weights")
                save_file(tensors, os.path.join(folder, f"{name}-{kind}{suffix}.safetensors"), meta)
                extra = f" kl={metrics['kl']:.5f}" if kind == "kto" else ""
                print(f"losses/{name}-{kind}{suffix}: loss {loss:.6f}{extra}")
    write_trajectories(folder, out_root, dtype)


def write_trajectories(folder, out_root, dtype):
    name = "llama-tiny"
    seed = TINY_MODELS[name][1]
    policy32 = load_checkpoint(os.path.join(out_root, "core", name), torch.float32)
    batch = preference_batch(TINY_MODELS[name][0]["vocab_size"], seed + 200)
    ids, lengths = batch["input_ids"], batch["lengths"]
    ref_lp = _no_grad_logps(to_dtype(policy32, dtype), ids, lengths)  # frozen reference = initial weights

    def orpo_loss(m):
        logits = m(ids, lengths)
        return orpo(stats_from_logits(logits, ids, lengths)["logps"], batch, logits.detach(), HP["orpo_beta"])[0]

    def dpo_loss(m):
        stats = stats_from_logits(m(ids, lengths), ids, lengths)
        return dpo_family(stats["logps"], ref_lp, batch, stats, HP["dpo_beta"], "sigmoid")[0]

    for kind, fn in (("orpo", orpo_loss), ("dpo", dpo_loss)):
        losses, norms = trajectory(to_dtype(policy32, dtype), fn, TRAJ["steps"], TRAJ["lr"], TRAJ["weight_decay"],
                                   TRAJ["max_grad_norm"])
        tensors = {"traj_loss": (losses, "F32"), "traj_grad_norm": (norms, "F32"), **batch_tensors(batch)}
        meta = {"model": name, "policy": f"tests/fixtures/core/{name}/model.safetensors", **DESCRIBE[kind],
                "optimizer": "torch.optim.AdamW", "lr": repr(TRAJ["lr"]), "betas": "0.9,0.999", "eps": "1e-08",
                "weight_decay": repr(TRAJ["weight_decay"]), "max_grad_norm": repr(TRAJ["max_grad_norm"]),
                "lr_scheduler": "constant", "steps": str(TRAJ["steps"]),
                "schedule": "the whole 8-pair batch every step; traj_loss before each step, traj_grad_norm pre-clip",
                "compute_dtype": str(dtype).replace("torch.", ""), "torch_version": torch.__version__}
        if kind == "dpo":
            meta["reference"] = "frozen initial weights"
        save_file(tensors, os.path.join(folder, f"{name}-{kind}-traj.safetensors"), meta)
        print(f"losses/{name}-{kind}-traj: {losses[0].item():.5f} -> {losses[-1].item():.5f}")
