# Writes tests/fixtures/dora/: DoRA as PEFT itself runs it (peft.get_peft_model with LoraConfig(use_dora=True) on
# transformers' own Llama / Qwen2 classes) on the tiny checkpoints of tests/fixtures/core -- the adapter folder
# PEFT's save_pretrained writes, per-token log-probs with the adapter on and off and after PEFT's
# merge_and_unload, the mean-NLL loss, and the gradient of every adapter tensor (lora_A, lora_B,
# lora_magnitude_vector) by its file name.
# Usage (repo root; torch, transformers 5 and peft installed):  python tools/reference/dora_fixtures.py [--out DIR]
# Not a trainer and not a second DoRA: the math is PEFT's; this script only sets seeded values and records.
import argparse
import copy
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from hf_fixtures import seed_adapter  # noqa: E402
from make_fixtures import core_batch, masked_nll  # noqa: E402
from model import stats_from_logits  # noqa: E402
from safetensors_io import save_file  # noqa: E402
from tiny_models import TINY_MODELS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# llama-tiny: all seven projections; qwen2-tiny: rsLoRA, q/k/v biases (DoRA leaves the bias unscaled) and groups
# with only some members adapted.
CASES = {
    "llama-tiny": {"r": 4, "lora_alpha": 8, "use_rslora": False, "target_modules": ALL_LINEAR},
    "qwen2-tiny": {"r": 4, "lora_alpha": 8, "use_rslora": True, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]},
}
B_STD = 0.05    # lora_B ~ N(0, B_STD) instead of PEFT's zeros, so that d loss / d lora_A is not zero
MAG_JITTER = 0.1  # magnitude = PEFT's initial ||W||_row * (1 + MAG_JITTER * N(0, 1)), so that m / n is not 1


def file_name(param_name):
    """PEFT's in-memory parameter name -> its adapter_model.safetensors name."""
    n = param_name.replace(".default", "")
    return n[: -len(".weight")] if n.endswith("lora_magnitude_vector.weight") else n


def build(name, case, seed):
    path = os.path.join(REPO, "tests", "fixtures", "core", name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    cfg = LoraConfig(r=case["r"], lora_alpha=case["lora_alpha"], lora_dropout=0.0, use_rslora=case["use_rslora"],
                     target_modules=case["target_modules"], use_dora=True, task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    pm.peft_config["default"].base_model_name_or_path = f"tests/fixtures/core/{name}"  # no machine path in the file
    seed_adapter(pm, seed, B_STD, name, MAG_JITTER)
    return pm


def logps_of(model, ids, lengths):
    T = ids.shape[1]
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.int64)
    logits = model(input_ids=ids, attention_mask=mask).logits
    return stats_from_logits(logits, ids, lengths)["logps"]


def write_case(name, out_root):
    hf_config, seed = TINY_MODELS[name]
    case = CASES[name]
    folder = os.path.join(out_root, "dora", f"{name}-adapter")
    pm = build(name, case, seed + 500)
    pm.save_pretrained(folder)  # PEFT's own files, written from the fp32 values
    with open(os.path.join(folder, "adapter_config.json")) as f:
        saved = json.load(f)
    if saved.get("use_dora") is not True:
        sys.exit(f"{name}: PEFT did not write use_dora: true")
    for extra in ("README.md",):  # save_pretrained's model card: not part of the fixture
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))

    pm = pm.double()
    pm.eval()  # lora_dropout is 0, so train and eval modes compute the same; eval keeps transformers' own dropout off
    ids, lengths, loss_mask = core_batch(hf_config["vocab_size"], seed + 100)
    with torch.no_grad(), pm.disable_adapter():
        base_logps = logps_of(pm, ids, lengths)
    logps = logps_of(pm, ids, lengths)
    loss = masked_nll(logps, loss_mask)
    loss.backward()
    grads = {file_name(n): p.grad for n, p in pm.named_parameters() if p.requires_grad}
    merged = copy.deepcopy(pm).merge_and_unload()
    with torch.no_grad():
        merged_logps = logps_of(merged, ids, lengths)

    tensors = {
        "input_ids": (ids, "I32"), "lengths": (lengths, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (logps.detach(), "F32"), "logps_base": (base_logps, "F32"), "logps_merged": (merged_logps, "F32"),
        "loss": (loss.detach().reshape(()), "F32"),
        **{"grad." + n: (g, "F32") for n, g in grads.items()},
    }
    meta = {"model": name, "policy": f"tests/fixtures/core/{name}/model.safetensors",
            "adapter": f"tests/fixtures/dora/{name}-adapter", "r": str(case["r"]),
            "lora_alpha": str(case["lora_alpha"]), "use_rslora": str(case["use_rslora"]).lower(),
            "target_modules": ",".join(case["target_modules"]), "use_dora": "true",
            "lora_B_init": f"N(0, {B_STD}) seeded (PEFT would start at 0)",
            "magnitude_init": f"PEFT's ||W||_row times (1 + {MAG_JITTER} N(0, 1)), seeded",
            "loss": "-sum(logps * loss_mask) / sum(loss_mask), adapter on",
            "logps_base": "the same model with the adapter disabled (PeftModel.disable_adapter)",
            "logps_merged": "PEFT's merge_and_unload of the same adapter",
            "compute_dtype": "float64", "torch_version": torch.__version__,
            "transformers_version": transformers.__version__, "peft_version": peft.__version__}
    save_file(tensors, os.path.join(out_root, "dora", f"{name}.safetensors"), meta)
    gap = (merged_logps - logps.detach()).abs().max().item()
    print(f"dora/{name}: loss {loss.item():.6f}, {len(grads)} adapter tensors, merged-vs-adapter logps {gap:.2e}")


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":  # PEFT saves target_modules from a set: fix its order
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"), help="fixture root (default tests/fixtures)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # reduction order fixed, so bytes are reproducible
    os.makedirs(os.path.join(args.out, "dora"), exist_ok=True)
    for name in CASES:
        write_case(name, args.out)


if __name__ == "__main__":
    main()
