"""Checks that folders written by preftune's library API load in the Python stack with the same numbers:
a model saved by PreTrainedModel.save_pretrained loads with transformers' AutoModelForCausalLM.from_pretrained,
and a LoRA adapter with peft's PeftModel.from_pretrained, each giving preftune's logits within 1e-4.
Not a test (the test suite has no Python); run it by hand after changing saving code:

    /path/to/venv/bin/python tools/interop/check_api_interop.py   # needs torch, transformers, peft

It runs tools/interop/api-save.mts (node, from the repo root) into a temporary folder first.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="preftune-interop-") as tmp:
        subprocess.run(["node", "--import", "tsx", "tools/interop/api-save.mts", tmp], cwd=ROOT, check=True)
        out = Path(tmp)
        ref = json.loads((out / "logits.json").read_text())
        ids = ref["ids"]
        ok = True
        full = AutoModelForCausalLM.from_pretrained(out / "full", dtype=torch.float32)
        got = logits(full, ids)
        diff = abs(got.reshape(-1) - torch.tensor(ref["full"]).numpy()).max()
        print(f"save_pretrained model -> AutoModelForCausalLM: {got.shape} logits, max abs diff {diff:.3e}")
        ok &= bool(diff <= TOL)
        base = AutoModelForCausalLM.from_pretrained(out / "base", dtype=torch.float32)
        base_logits = logits(base, ids)
        peft = PeftModel.from_pretrained(base, out / "adapter")
        got = logits(peft, ids)
        diff = abs(got.reshape(-1) - torch.tensor(ref["lora"]).numpy()).max()
        moved = abs(got - base_logits).max()
        print(f"save_pretrained adapter -> PeftModel: max abs diff {diff:.3e} (the adapter moves the logits by {moved:.3e})")
        ok &= bool(diff <= TOL) and bool(moved > 10 * TOL)
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
