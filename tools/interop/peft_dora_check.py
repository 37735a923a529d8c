# Interop check of preftune's DoRA adapters with PEFT: trains a DoRA adapter with preftune
# (tools/interop/dora_adapter.ts), loads the folder with peft.PeftModel.from_pretrained on transformers' model of
# the same base, and compares PEFT's log-probs and last-position logits with preftune's; then loads preftune's
# merged model with transformers alone and compares it with PEFT's adapter model. Prints the max abs differences
# and exits non-zero above 1e-5.
# Usage (repo root; torch, transformers 5 and peft installed; node with the built addon):
#   python tools/interop/peft_dora_check.py [--model tests/fixtures/core/llama-tiny] [--keep DIR]
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-5


def token_logps(logits, ids, lengths):
    """Label-aligned (B, T): entry t is log p(ids[t] | ids[<t]); column 0 and padding 0."""
    lp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    out = torch.zeros(ids.shape, dtype=torch.float64)
    out[:, 1:] = lp
    return out * (torch.arange(ids.shape[1])[None, :] < lengths[:, None])


def run(model, ids, lengths):
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    last = torch.stack([logits[b, lengths[b] - 1] for b in range(ids.shape[0])])
    return token_logps(logits, ids, lengths), last.double()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=os.path.join(REPO, "tests", "fixtures", "core", "llama-tiny"))
    ap.add_argument("--keep", help="write the adapter, merged model and outputs here (default: a temporary folder)")
    args = ap.parse_args()
    out = args.keep or tempfile.mkdtemp(prefix="dora-interop-")
    subprocess.run(["npx", "tsx", os.path.join("tools", "interop", "dora_adapter.ts"), args.model, out], cwd=REPO, check=True)
    ours = load_file(os.path.join(out, "ours.safetensors"))
    ids, lengths = ours["input_ids"].long(), ours["lengths"].long()

    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    pm = PeftModel.from_pretrained(base, os.path.join(out, "adapter"))
    pm.eval()
    if not pm.peft_config["default"].use_dora:
        sys.exit("PEFT did not read use_dora: true")
    # Every tensor of the file must have landed in PEFT's model with its exact value, and no adapter tensor be left over.
    stored = load_file(os.path.join(out, "adapter", "adapter_model.safetensors"))
    state = {k.replace(".default", "").replace("lora_magnitude_vector.weight", "lora_magnitude_vector"): v
             for k, v in pm.state_dict().items() if "lora_" in k}
    if sorted(state) != sorted(stored) or any(not torch.equal(state[k].float(), stored[k]) for k in stored):
        sys.exit(f"PEFT did not load the adapter as stored: {sorted(set(state) ^ set(stored))[:5]}")
    mags = [k for k in stored if k.endswith("lora_magnitude_vector")]
    peft_lp, peft_last = run(pm, ids, lengths)
    merged = AutoModelForCausalLM.from_pretrained(os.path.join(out, "merged"), dtype=torch.float32, attn_implementation="eager")
    merged_lp, merged_last = run(merged, ids, lengths)
    rows = {
        "PEFT adapter vs preftune: log-probs": (peft_lp - ours["logps"].double()).abs().max().item(),
        "PEFT adapter vs preftune: last logits": (peft_last - ours["last_logits"].double()).abs().max().item(),
        "preftune merged (transformers) vs PEFT adapter: log-probs": (merged_lp - peft_lp).abs().max().item(),
        "preftune merged (transformers) vs PEFT adapter: last logits": (merged_last - peft_last).abs().max().item(),
    }
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
          f"all {len(stored)} adapter tensors ({len(mags)} lora_magnitude_vector) loaded by PEFT as stored")
    for k, v in rows.items():
        print(f"  {k}: max abs diff {v:.3e}")
    if not args.keep:
        shutil.rmtree(out)
    bad = [k for k, v in rows.items() if not v <= TOL]
    if bad:
        sys.exit(f"above {TOL}: {', '.join(bad)}")


if __name__ == "__main__":
    main()
