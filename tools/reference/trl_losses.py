# TRL's preference losses and metrics written out from label-aligned per-token log-probs, for fixtures:
# ORPO and CPO/SimPO (trl.experimental), DPO sigmoid / IPO (current DPOTrainer), KTO (current KTOTrainer).
# Rows are TRL's concatenated batch: the first n rows chosen (or desirable), the last n rejected.
# Not TRL's code and not its plumbing: each function is the formula plus TRL's metric keys, nothing else.
import math

import torch
import torch.nn.functional as F

from model import real_mask


def seq_sum(lp, mask):
    return (lp * mask).sum(-1)


def seq_avg(lp, mask):
    return (lp * mask).sum(-1) / mask.sum(-1)


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable at both ends (TRL >= 0.27)."""
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def token_weighted(values, mask):
    return ((values * mask).sum() / mask.sum()).item()


def orpo(lp, batch, logits, beta):
    """Hong et al. 2024 (arXiv 2403.07691) Eq. 6-7 as TRL computes it: averaged completion log-probs in
    the odds, NLL = token-mean CE over the whole chosen sequence (prompt included, padding excluded)."""
    n, cm, lengths = batch["n"], batch["completion_mask"], batch["lengths"]
    avg = seq_avg(lp, cm)
    c, r = avg[:n], avg[n:]
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    ratio = F.logsigmoid(log_odds)
    real = real_mask(lengths, lp.shape[1]).to(lp.dtype)
    nll = -(lp[:n] * real[:n]).sum() / real[:n].sum()
    loss = nll - (beta * ratio).mean()
    c, r = c.detach(), r.detach()
    metrics = {
        "rewards/chosen": (beta * c).mean().item(),
        "rewards/rejected": (beta * r).mean().item(),
        "rewards/accuracies": (c > r).to(lp.dtype).mean().item(),
        "rewards/margins": (beta * (c - r)).mean().item(),
        "logps/chosen": c.mean().item(),
        "logps/rejected": r.mean().item(),
        # TRL averages logits[:, :-1, :] over every position, prompt and padding included
        "logits/chosen": logits[:n, :-1].mean().item(),
        "logits/rejected": logits[n:, :-1].mean().item(),
        "nll_loss": nll.item(),
        "log_odds_ratio": ratio.mean().item(),
        "log_odds_chosen": log_odds.mean().item(),
    }
    return loss, metrics


def simpo(lp, batch, logits, beta, gamma, cpo_alpha=0.0):
    """SimPO (Meng et al. 2024, Eq. 6) via CPOTrainer loss_type='simpo', label_smoothing 0:
    -logsigma(beta * (avg_c - avg_r) - gamma) on completion-averaged log-probs; cpo_alpha = 0 -> no NLL."""
    if cpo_alpha != 0:
        raise ValueError("fixtures use cpo_alpha = 0 (pure SimPO)")
    n, cm = batch["n"], batch["completion_mask"]
    avg = seq_avg(lp, cm)
    c, r = avg[:n], avg[n:]
    z = (c - r) - gamma / beta
    loss = (-F.logsigmoid(beta * z)).mean()
    c, r = c.detach(), r.detach()
    metrics = {
        "rewards/chosen": (beta * c).mean().item(),
        "rewards/rejected": (beta * r).mean().item(),
        "rewards/accuracies": (beta * c > beta * r).to(lp.dtype).mean().item(),
        "rewards/margins": (beta * (c - r)).mean().item(),
        "logps/chosen": c.mean().item(),
        "logps/rejected": r.mean().item(),
        # CPOTrainer (unlike ORPO) averages all T positions of the logits, the last one included
        "logits/chosen": logits[:n].mean().item(),
        "logits/rejected": logits[n:].mean().item(),
        "nll_loss": 0.0,
    }
    return loss, metrics


def dpo_family(lp, ref_lp, batch, stats, beta, loss_type):
    """Rafailov et al. 2023 Eq. 7 (sigmoid) and Azar et al. 2023 Eq. 17 (ipo, TRL's length-normalised
    form: log-ratios divided by each side's completion-token count, clamped >= 1). Summed completion
    log-probs; rewards/logps metrics are on the summed values for both (current DPOTrainer)."""
    n, cm = batch["n"], batch["completion_mask"]
    s, s0 = seq_sum(lp, cm), seq_sum(ref_lp, cm)
    rho = s - s0
    rc, rr = rho[:n], rho[n:]
    if loss_type == "sigmoid":
        per = -F.logsigmoid(beta * (rc - rr))
    elif loss_type == "ipo":
        counts = cm.sum(-1).clamp(min=1.0)
        delta = rc / counts[:n] - rr / counts[n:]
        per = (delta - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}")
    loss = per.mean()
    rc, rr, sd = rc.detach(), rr.detach(), s.detach()
    metrics = {
        "entropy": token_weighted(stats["entropy"], cm),
        "num_tokens": float(batch["lengths"].sum()),
        "logits/chosen": token_weighted(stats["logits_mean"][:n], cm[:n]),
        "logits/rejected": token_weighted(stats["logits_mean"][n:], cm[n:]),
        "mean_token_accuracy": token_weighted(stats["correct"][:n], cm[:n]),
        "rewards/chosen": (beta * rc).mean().item(),
        "rewards/rejected": (beta * rr).mean().item(),
        "rewards/accuracies": (beta * rc > beta * rr).to(lp.dtype).mean().item(),
        "rewards/margins": (beta * (rc - rr)).mean().item(),
        "logps/chosen": sd[:n].mean().item(),
        "logps/rejected": sd[n:].mean().item(),
    }
    return loss, metrics


def kto(lp, ref_lp, kl_lp, ref_kl_lp, batch, stats, beta, desirable_weight=1.0, undesirable_weight=1.0):
    """Ethayarajh et al. 2024 (arXiv 2402.01306) Eq. 7-8 as TRL computes it: z = mean over the batch of
    the mismatched-pair log-ratios (no gradient), clamped >= 0; summed completion log-probs.
    batch["label"] (B,) bool; kl_lp/ref_kl_lp are label-aligned logps of the KL rows."""
    cm, kl_cm, label = batch["completion_mask"], batch["KL_completion_mask"], batch["label"]
    with torch.no_grad():
        z = (seq_sum(kl_lp, kl_cm) - seq_sum(ref_kl_lp, kl_cm)).mean().clamp(min=0)
    s, s0 = seq_sum(lp, cm), seq_sum(ref_lp, cm)
    rho = s - s0
    rc, rr = rho[label], rho[~label]
    chosen = 1 - torch.sigmoid(beta * (rc - z))
    rejected = 1 - torch.sigmoid(beta * (z - rr))
    loss = torch.cat((desirable_weight * chosen, undesirable_weight * rejected)).mean()
    nc, nr = int(label.sum()), int((~label).sum())
    sd, rhod = s.detach(), rho.detach()
    lm, ent = stats["logits_mean"], stats["entropy"]
    metrics = {
        "kl": z.item(),
        "entropy": token_weighted(ent, cm),
        "num_tokens": float(batch["lengths"].sum()),
        "logits/chosen": token_weighted(lm[label], cm[label]),
        "logits/rejected": token_weighted(lm[~label], cm[~label]),
        "rewards/chosen": (beta * rhod[label]).sum().item() / nc,
        "logps/chosen": sd[label].sum().item() / nc,
        "rewards/rejected": (beta * rhod[~label]).sum().item() / nr,
        "logps/rejected": sd[~label].sum().item() / nr,
    }
    metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return loss, metrics
