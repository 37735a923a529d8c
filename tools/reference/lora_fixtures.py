# Writes tests/fixtures/lora/: LoRA (PEFT semantics, written out by hand: no peft package) on the tiny
# checkpoints of tests/fixtures/core -- per-token log-probs with the adapters on and off, the mean-NLL loss
# and every adapter gradient by PEFT name, a 10-step AdamW trajectory that trains only the adapters, and a
# DPO step whose reference is the same model with the adapters disabled (TRL's reference under PEFT).
# Usage (repo root, the python3 that has torch):  /usr/bin/python3 tools/reference/lora_fixtures.py
# Not PEFT and not a trainer: the adapter math is the four lines of LoraLinear.forward below.
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loss_fixtures import batch_tensors, preference_batch  # noqa: E402
from make_fixtures import CORE_TRAIN, core_batch, masked_nll  # noqa: E402
from model import stats_from_logits, token_stats  # noqa: E402
from safetensors_io import save_file  # noqa: E402
from tiny_models import TINY_MODELS, load_checkpoint  # noqa: E402
from trl_losses import dpo_family  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
# model -> adapter settings. llama-tiny is the main case (all 7 projections); qwen2-tiny covers rsLoRA, q/k/v
# bias and a group with only some members adapted (q, v of q|k|v; up of gate|up); qwen3-tiny the q/k norms.
CASES = {
    "llama-tiny": {"r": 4, "lora_alpha": 8, "use_rslora": False, "target_modules": ALL_LINEAR},
    "qwen2-tiny": {"r": 4, "lora_alpha": 8, "use_rslora": True, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]},
    "qwen3-tiny": {"r": 4, "lora_alpha": 8, "use_rslora": False, "target_modules": ALL_LINEAR},
}
B_STD = 0.05  # lora_B is seeded N(0, B_STD) instead of PEFT's zeros, so that d loss / d lora_A is not zero
DPO_BETA = 0.1


class LoraLinear(nn.Module):
    """y = base(x) + s * (x A^T) B^T, the adapter switchable off (PEFT's disable_adapter)."""

    def __init__(self, base, A, B, scaling):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(A)  # (r, in)
        self.lora_B = nn.Parameter(B)  # (out, r)
        self.scaling = scaling
        self.enabled = True

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + (x @ self.lora_A.t()) @ self.lora_B.t() * self.scaling
        return y


def peft_name(layer, target, which):
    return f"base_model.model.model.layers.{layer}.{PARENT[target]}.{target}.lora_{which}.weight"


def init_adapter(model32, case, seed):
    """PEFT's A init, kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), and a non-zero B; fp32 values."""
    g = torch.Generator().manual_seed(seed)
    r, out = case["r"], {}
    for i, layer in enumerate(model32.model.layers):
        for t in case["target_modules"]:
            lin = getattr(getattr(layer, PARENT[t]), t)
            bound = 1.0 / math.sqrt(lin.in_features)
            out[peft_name(i, t, "A")] = (torch.rand(r, lin.in_features, generator=g) * 2 - 1) * bound
            out[peft_name(i, t, "B")] = torch.randn(lin.out_features, r, generator=g) * B_STD
    return out


def scaling_of(case):
    return case["lora_alpha"] / (math.sqrt(case["r"]) if case["use_rslora"] else case["r"])


def with_adapter(model, adapter, case):
    """Wraps the targeted projections of `model` (in place, in model's dtype); freezes every base weight.
    Returns name -> the LoRA parameter, in PEFT names."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = {}
    for i, layer in enumerate(model.model.layers):
        for t in case["target_modules"]:
            parent = getattr(layer, PARENT[t])
            A = adapter[peft_name(i, t, "A")].to(model.model.embed_tokens.weight.dtype).clone()
            B = adapter[peft_name(i, t, "B")].to(A.dtype).clone()
            lin = LoraLinear(getattr(parent, t), A, B, scaling_of(case))
            setattr(parent, t, lin)
            params[peft_name(i, t, "A")], params[peft_name(i, t, "B")] = lin.lora_A, lin.lora_B
    return params


def set_adapters(model, enabled):
    for mod in model.modules():
        if isinstance(mod, LoraLinear):
            mod.enabled = enabled


def adapter_config(case, base):
    """adapter_config.json as PEFT's save_pretrained writes it for a LoRA CAUSAL_LM adapter (sorted keys)."""
    return {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base, "bias": "none",
        "exclude_modules": None, "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None, "loftq_config": {},
        "lora_alpha": case["lora_alpha"], "lora_bias": False, "lora_dropout": 0.0, "megatron_config": None,
        "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "r": case["r"],
        "rank_pattern": {}, "revision": None, "target_modules": sorted(case["target_modules"]),
        "target_parameters": None, "task_type": "CAUSAL_LM", "trainable_token_indices": None,
        "use_dora": False, "use_rslora": case["use_rslora"],
    }


def write_adapter_folder(folder, adapter, case, base):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(adapter_config(case, base), indent=2, sort_keys=True))  # no newline, as PEFT
    save_file({n: (v, "F32") for n, v in adapter.items()}, os.path.join(folder, "adapter_model.safetensors"),
              {"format": "pt"})


def describe(name, case, dtype):
    return {"model": name, "policy": f"tests/fixtures/core/{name}/model.safetensors",
            "adapter": f"tests/fixtures/lora/{name}-adapter", "r": str(case["r"]),
            "lora_alpha": str(case["lora_alpha"]), "use_rslora": str(case["use_rslora"]).lower(),
            "scaling": repr(scaling_of(case)), "target_modules": ",".join(case["target_modules"]),
            "lora_B_init": f"N(0, {B_STD}) seeded (PEFT would start at 0)",
            "compute_dtype": str(dtype).replace("torch.", ""), "torch_version": torch.__version__}


def write_model_case(name, out_root, dtype, trajectory):
    hf_config, seed = TINY_MODELS[name]
    case = CASES[name]
    base_dir = os.path.join(out_root, "core", name)
    model32 = load_checkpoint(base_dir, torch.float32)
    adapter = init_adapter(model32, case, seed + 400)
    folder = os.path.join(out_root, "lora")
    write_adapter_folder(os.path.join(folder, f"{name}-adapter"), adapter, case, f"tests/fixtures/core/{name}")

    model = load_checkpoint(base_dir, dtype)
    params = with_adapter(model, adapter, case)
    ids, lengths, loss_mask = core_batch(hf_config["vocab_size"], seed + 100)
    mask = loss_mask.to(dtype)
    set_adapters(model, False)
    with torch.no_grad():
        base_logps = token_stats(model, ids, lengths)["logps"]
    set_adapters(model, True)
    stats = token_stats(model, ids, lengths)
    loss = masked_nll(stats["logps"], mask)
    loss.backward()
    tensors = {
        "input_ids": (ids, "I32"), "lengths": (lengths, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (stats["logps"], "F32"), "logps_base": (base_logps, "F32"),
        "loss": (loss.detach().reshape(()), "F32"),
        **{"grad." + n: (p.grad, "F32") for n, p in params.items()},
    }
    meta = {**describe(name, case, dtype), "loss": "-sum(logps * loss_mask) / sum(loss_mask), adapters on",
            "logps_base": "the same model with the adapters disabled"}
    if trajectory:
        model = load_checkpoint(base_dir, dtype)
        params = with_adapter(model, adapter, case)
        opt = torch.optim.AdamW(list(params.values()), lr=CORE_TRAIN["lr"], betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=CORE_TRAIN["weight_decay"])
        losses, norms = [], []
        for _ in range(CORE_TRAIN["steps"]):
            opt.zero_grad(set_to_none=True)
            step_loss = masked_nll(token_stats(model, ids, lengths)["logps"], mask)
            step_loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), CORE_TRAIN["max_grad_norm"])))
            opt.step()
            losses.append(step_loss.item())
        tensors["traj_loss"] = (torch.tensor(losses, dtype=torch.float64), "F32")
        tensors["traj_grad_norm"] = (torch.tensor(norms, dtype=torch.float64), "F32")
        tensors.update({"traj_final." + n: (p.detach(), "F32") for n, p in params.items()})
        meta.update({"optimizer": "torch.optim.AdamW over the adapter tensors only (every one decayed)",
                     "lr": repr(CORE_TRAIN["lr"]), "betas": "0.9,0.999", "eps": "1e-08",
                     "weight_decay": repr(CORE_TRAIN["weight_decay"]), "max_grad_norm": repr(CORE_TRAIN["max_grad_norm"]),
                     "clip": "clip_grad_norm_ over the adapter tensors; traj_grad_norm is the pre-clip norm",
                     "lr_scheduler": "constant", "steps": str(CORE_TRAIN["steps"]),
                     "traj_final": "adapter tensors after the last step"})
    save_file(tensors, os.path.join(folder, f"{name}.safetensors"), meta)
    print(f"lora/{name}: loss {loss.item():.6f}" + (f", traj {losses[0]:.5f} -> {losses[-1]:.5f}" if trajectory else ""))
    return adapter


def write_dpo_case(name, out_root, dtype, adapter):
    """DPO (sigmoid, beta 0.1) where the reference is the policy with its adapters disabled."""
    hf_config, seed = TINY_MODELS[name]
    case = CASES[name]
    model = load_checkpoint(os.path.join(out_root, "core", name), dtype)
    params = with_adapter(model, adapter, case)
    batch = preference_batch(hf_config["vocab_size"], seed + 200)
    ids, lengths = batch["input_ids"], batch["lengths"]
    set_adapters(model, False)
    with torch.no_grad():
        ref_lp = stats_from_logits(model(ids, lengths), ids, lengths)["logps"]
    set_adapters(model, True)
    stats = stats_from_logits(model(ids, lengths), ids, lengths)
    lp = stats["logps"]
    lp.retain_grad()
    loss, metrics = dpo_family(lp, ref_lp, batch, stats, DPO_BETA, "sigmoid")
    loss.backward()
    tensors = {
        **batch_tensors(batch), "logps": (lp.detach(), "F32"), "ref_logps": (ref_lp, "F32"),
        "loss": (loss.detach().reshape(()), "F32"), "dloss_dlogps": (lp.grad, "F32"),
        **{"metric." + k: (torch.tensor(v, dtype=torch.float64), "F32") for k, v in metrics.items()},
        **{"grad." + n: (p.grad, "F32") for n, p in params.items()},
    }
    meta = {**describe(name, case, dtype), "trainer": "trl.DPOTrainer with a PEFT model", "loss_type": "sigmoid",
            "beta": repr(DPO_BETA), "reference": "the policy with its adapters disabled",
            "loss": "mean(-logsigmoid(beta * ((c - c_ref) - (r - r_ref)))); summed completion logps"}
    save_file(tensors, os.path.join(out_root, "lora", f"{name}-dpo.safetensors"), meta)
    print(f"lora/{name}-dpo: loss {loss.item():.6f}, margin {metrics['rewards/margins']:.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"), help="fixture root (default tests/fixtures)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = ap.parse_args()
    torch.set_num_threads(1)  # reduction order fixed, so bytes are reproducible
    dtype = getattr(torch, args.dtype)
    os.makedirs(os.path.join(args.out, "lora"), exist_ok=True)
    for name in CASES:
        adapter = write_model_case(name, args.out, dtype, trajectory=name == "llama-tiny")
        if name == "llama-tiny":
            write_dpo_case(name, args.out, dtype, adapter)


if __name__ == "__main__":
    main()
