# Writes tests/fixtures/qlora/: a 4-bit frozen base (bitsandbytes' NF4 / FP4 format, blocks of 64, optional double
# quantization), written out by hand from bitsandbytes' algorithm (its CPU path: multiply by the reciprocal absmax,
# nearest code with ties to the lower one, first element in the high nibble; absmax minus its mean 8-bit quantized in
# blocks of 256 with the signed dynamic map), on the tiny checkpoints of tests/fixtures/core with their LoRA adapters
# of tests/fixtures/lora. Per case: every quantized tensor's blocks (packed nibbles and scales), then the model with
# those blocks dequantized (code * absmax in float32) run in float64: per-token log-probs with the adapters on and
# off, the masked mean NLL and every adapter gradient.
# Usage (repo root, a python3 with torch 2.x):  python3 tools/reference/qlora_fixtures.py
# Not bitsandbytes (not installed; no GPU) and not a trainer. Deterministic: rerunning rewrites identical bytes.
import argparse
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lora_fixtures import CASES as LORA_CASES, set_adapters, with_adapter  # noqa: E402
from make_fixtures import core_batch, masked_nll  # noqa: E402
from model import hf_state_dict, load_hf_state, token_stats  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402
from tiny_models import TINY_MODELS, load_checkpoint  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK, BLOCK2 = 64, 256

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=torch.float32)
# FP4 by bit pattern: sign bit 8, exponent bits 4|2, mantissa bit 1 (bitsandbytes' fp4 lookup table), not sorted.
FP4 = torch.tensor([0.0, 1 / 192, 2 / 3, 1.0, 1 / 3, 0.5, 1 / 6, 0.25,
                    -0.0, -1 / 192, -2 / 3, -1.0, -1 / 3, -0.5, -1 / 6, -0.25], dtype=torch.float32)

# case -> (model, quant type, double quant); the adapter is the model's tests/fixtures/lora one
CASES = {
    "llama-tiny-nf4-dq": ("llama-tiny", "nf4", True),
    "llama-tiny-fp4": ("llama-tiny", "fp4", False),
    "qwen2-tiny-nf4": ("qwen2-tiny", "nf4", False),
    "qwen3-tiny-fp4-dq": ("qwen3-tiny", "fp4", True),
}
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), float32."""
    data = []
    for i in range(7):
        means = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (means[:-1] + means[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def nibbles(scaled, quant_type):
    """Nearest code of each scaled value: NF4 bucketized against the midpoints (a tie takes the lower code);
    FP4 by |x| against the sorted magnitudes' midpoints (strict >, so ties take the smaller) plus the sign bit."""
    if quant_type == "nf4":
        mids = (NF4[:-1] + NF4[1:]) / 2
        return torch.bucketize(scaled, mids, right=False).to(torch.uint8)
    mags = torch.tensor([0.0, 1 / 192, 1 / 6, 0.25, 1 / 3, 0.5, 2 / 3, 1.0], dtype=torch.float32)
    bits = torch.tensor([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011], dtype=torch.uint8)
    mids = (mags[:-1] + mags[1:]) / 2
    m = bits[torch.bucketize(scaled.abs(), mids, right=False)]
    return torch.where(scaled < 0, m | 0b1000, m).to(torch.uint8)


def quantize_4bit(w, quant_type):
    """Flat float32 weight -> packed uint8 ((n + 1) // 2) and absmax float32 (ceil(n / 64))."""
    flat = w.reshape(-1).to(torch.float32)
    n = flat.numel()
    full = n // BLOCK
    absmax = torch.zeros(-(-n // BLOCK), dtype=torch.float32)
    parts = []
    if full:
        blocks = flat[: full * BLOCK].reshape(full, BLOCK)
        absmax[:full] = blocks.abs().max(dim=1).values
        parts.append((blocks * (1 / absmax[:full].clamp(min=1e-38)).view(-1, 1)).reshape(-1))
    if n % BLOCK:
        tail = flat[full * BLOCK:]
        absmax[-1] = tail.abs().max()
        parts.append(tail / absmax[-1].clamp(min=1e-38))
    q = nibbles(torch.cat(parts).clamp(-1, 1), quant_type)
    if n % 2:
        q = torch.cat([q, torch.tensor([7 if quant_type == "nf4" else 0], dtype=torch.uint8)])
    return (q[0::2] << 4) | q[1::2], absmax


def quantize_absmax(absmax, code):
    """Double quantization: offset = mean; (absmax - offset) 8-bit blockwise (256) against the dynamic map."""
    offset = absmax.mean()
    c = absmax - offset
    nb = c.numel()
    q = torch.zeros(nb, dtype=torch.uint8)
    absmax2 = torch.zeros(-(-nb // BLOCK2), dtype=torch.float32)
    for k in range(absmax2.numel()):
        part = c[k * BLOCK2:(k + 1) * BLOCK2]
        absmax2[k] = part.abs().max()
        scaled = (part * (1 / absmax2[k].clamp(min=1e-38))).clamp(-1, 1)
        q[k * BLOCK2:(k + 1) * BLOCK2] = torch.argmin((scaled[:, None] - code[None, :]).abs(), dim=1).to(torch.uint8)
    return q, absmax2, offset


def dequantize(packed, absmax, n, quant_type):
    code = NF4 if quant_type == "nf4" else FP4
    q = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
    return code[q] * absmax.repeat_interleave(BLOCK)[:n]


def write_case(case, out_root):
    name, quant_type, nested = CASES[case]
    hf_config, seed = TINY_MODELS[name]
    lora_case = LORA_CASES[name]
    base_dir = os.path.join(out_root, "core", name)
    model32 = load_checkpoint(base_dir, torch.float32)
    code8 = dynamic_map()
    tensors, deq = {"dynamic_map": (code8, "F32")}, {}
    for pname, w in hf_state_dict(model32).items():
        if not any(pname.endswith(f"{t}.weight") for t in QUANTIZED):
            deq[pname] = w.detach()
            continue
        packed, absmax = quantize_4bit(w.detach(), quant_type)
        tensors[f"q.{pname}.packed"] = (packed, "U8")
        if nested:
            qabs, absmax2, offset = quantize_absmax(absmax, code8)
            tensors[f"q.{pname}.absmax"] = (qabs, "U8")
            tensors[f"q.{pname}.absmax2"] = (absmax2, "F32")
            tensors[f"q.{pname}.offset"] = (offset.reshape(()), "F32")
            absmax = code8[qabs.long()] * absmax2.repeat_interleave(BLOCK2)[: qabs.numel()] + offset
        else:
            tensors[f"q.{pname}.absmax"] = (absmax, "F32")
        deq[pname] = dequantize(packed, absmax, w.numel(), quant_type).reshape(w.shape)

    model = load_checkpoint(base_dir, torch.float64)
    load_hf_state(model, deq)  # the dequantized float32 values, computed with in float64
    adapter = load_file(os.path.join(out_root, "lora", f"{name}-adapter", "adapter_model.safetensors"))[0]
    params = with_adapter(model, {k: torch.as_tensor(v) for k, v in adapter.items()}, lora_case)
    ids, lengths, loss_mask = core_batch(hf_config["vocab_size"], seed + 100)
    set_adapters(model, False)
    with torch.no_grad():
        base_logps = token_stats(model, ids, lengths)["logps"]
    set_adapters(model, True)
    stats = token_stats(model, ids, lengths)
    loss = masked_nll(stats["logps"], loss_mask.to(torch.float64))
    loss.backward()
    tensors.update({
        "input_ids": (ids, "I32"), "lengths": (lengths, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (stats["logps"], "F32"), "logps_base": (base_logps, "F32"), "loss": (loss.detach().reshape(()), "F32"),
        **{"grad." + n: (p.grad, "F32") for n, p in params.items()},
    })
    meta = {"model": f"tests/fixtures/core/{name}", "adapter": f"tests/fixtures/lora/{name}-adapter",
            "bnb_4bit_quant_type": quant_type, "bnb_4bit_use_double_quant": str(nested).lower(),
            "blocksize": str(BLOCK), "nested_blocksize": str(BLOCK2),
            "quantized": ",".join(QUANTIZED) + " of every layer (embeddings, norms, biases, lm_head kept)",
            "compute": "dequantized float32 weights, forward and backward in float64",
            "loss": "-sum(logps * loss_mask) / sum(loss_mask), adapters on", "torch_version": torch.__version__}
    os.makedirs(os.path.join(out_root, "qlora"), exist_ok=True)
    save_file(tensors, os.path.join(out_root, "qlora", f"{case}.safetensors"), meta)
    print(f"qlora/{case}: loss {loss.item():.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for case in CASES:
        write_case(case, args.out)


if __name__ == "__main__":
    main()
