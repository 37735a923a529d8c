# Writes tests/fixtures/generate/<model>.json: greedy continuations of the tiny checkpoints of
# tests/fixtures/core, produced by transformers' own generate() (one prompt at a time, batch 1, no padding,
# KV cache as generate() uses it), plus llama-tiny with the PEFT adapter of tests/fixtures/lora applied
# through peft.PeftModel. For every generated step the gap between the largest and second-largest logit is
# recorded, and prompts are re-drawn until every gap exceeds MIN_MARGIN, so that the rounding of another fp32
# implementation cannot flip an argmax.
#
# Needs a python3 with torch 2.x, transformers 5.x and safetensors (peft for the adapter case; without it the
# adapter case is left out and the script says so). Usage, from the repo root:
#   python3 tools/reference/generate_fixtures.py [--out DIR]
# Deterministic: one thread, seeded prompts, fixed JSON layout; two runs write identical bytes.
import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]
ADAPTERS = {"llama-tiny": "tests/fixtures/lora/llama-tiny-adapter"}
PROMPT_LENGTHS = [3, 7, 12, 20]
MAX_NEW_TOKENS = 16
PAD_TOKEN_ID = 0
MIN_MARGIN = 1e-3
MIN_DISTINCT = 2  # new tokens: not one token repeated 16 times (see cases_for)
MAX_ATTEMPTS = 5000
ATTN = "eager"
MARGIN_DIGITS = 6  # margins are written rounded to this many decimals (they are only a safety record)


def load_base(name, dtype):
    path = os.path.join(REPO, "tests", "fixtures", "core", name)
    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=ATTN, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]
    if missing or info["unexpected_keys"] or info["mismatched_keys"]:
        sys.exit(f"{name}: checkpoint does not load cleanly: {info}")
    model.eval()
    # No EOS, no padding logic: the checkpoint's config names eos_token_id 2, which must never end a row here.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD_TOKEN_ID
    return model


def check_adapter(name, model):
    """The adapter folder must name this base and hold tensors of this base's shapes; returns its config."""
    folder = os.path.join(REPO, ADAPTERS[name])
    with open(os.path.join(folder, "adapter_config.json")) as f:
        cfg = json.load(f)
    problems = []
    base = cfg.get("base_model_name_or_path") or ""
    if os.path.basename(base.rstrip("/")) != name:
        problems.append(f"base_model_name_or_path is {base!r}")
    r = cfg["r"]
    modules = dict(model.named_modules())
    with safe_open(os.path.join(folder, "adapter_model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        for k in keys:
            shape = list(f.get_slice(k).get_shape())
            mod = k[len("base_model.model."):].rsplit(".lora_", 1)[0]
            lin = modules.get(mod)
            if lin is None:
                problems.append(f"{k}: no module {mod} in {name}")
                continue
            want = [r, lin.in_features] if ".lora_A." in k else [lin.out_features, r]
            if shape != want:
                problems.append(f"{k}: shape {shape}, {name} needs {want}")
    if not keys:
        problems.append("no tensors")
    return cfg, keys, problems


def apply_adapter(name, model, keys):
    from peft import PeftModel
    folder = os.path.join(REPO, ADAPTERS[name])
    peft_model = PeftModel.from_pretrained(model, folder)
    peft_model.eval()
    # Every tensor of the file must have landed in the model, with its exact values.
    state = {k.replace(".default.", "."): v for k, v in peft_model.state_dict().items() if "lora_" in k}
    with safe_open(os.path.join(folder, "adapter_model.safetensors"), "pt") as f:
        for k in keys:
            if k not in state or not torch.equal(state[k].to(torch.float32), f.get_tensor(k)):
                sys.exit(f"{name}: PEFT did not load {k} as stored")
    if sorted(state) != keys:
        sys.exit(f"{name}: PEFT built adapter tensors the file does not hold: {sorted(set(state) - set(keys))}")
    return peft_model


def greedy(model, prompt):
    """generate() on one prompt: (new token ids, top-1 minus top-2 logit at each step)."""
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS, eos_token_id=None, pad_token_id=PAD_TOKEN_ID, use_cache=True,
            output_scores=True, output_logits=True, return_dict_in_generate=True)
    seq = out.sequences[0].tolist()
    if seq[:len(prompt)] != prompt or len(seq) != len(prompt) + MAX_NEW_TOKENS:
        sys.exit(f"generate() returned {len(seq) - len(prompt)} new tokens for a {len(prompt)}-token prompt")
    new = seq[len(prompt):]
    margins = []
    for step, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        # Greedy with no processors: the scores are the raw logits, and the token is their argmax.
        if not torch.equal(scores, logits):
            sys.exit("generate() applied a logits processor; the fixture must be the plain argmax")
        top = torch.topk(logits[0].to(torch.float64), 2).values
        if int(torch.argmax(logits[0])) != new[step]:
            sys.exit("generated token is not the argmax of its logits")
        margins.append(float(top[0] - top[1]))
    return new, margins


def draw_prompt(vocab, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (length,), generator=g).tolist()


def cases_for(model, model64, vocab, seed_base):
    """One case per prompt length. The seed is re-drawn until every step's margin exceeds MIN_MARGIN and the
    continuation holds at least MIN_DISTINCT different tokens. The second condition matters for the tied
    checkpoints: with small random weights the hidden state stays close to the last token's embedding, so
    most prompts continue by repeating their last token forever, which any decoder that gets the embedding
    and the head right reproduces whatever its attention, KV cache or positions do."""
    cases = []
    for i, length in enumerate(PROMPT_LENGTHS):
        for attempt in range(MAX_ATTEMPTS):
            seed = seed_base + 10000 * i + attempt  # disjoint seed ranges per length
            prompt = draw_prompt(vocab, length, seed)
            new, margins = greedy(model, prompt)
            if min(margins) > MIN_MARGIN and len(set(new)) >= MIN_DISTINCT:
                break
        else:
            sys.exit(f"no prompt of length {length} with every margin > {MIN_MARGIN} and {MIN_DISTINCT} distinct "
                     f"new tokens in {MAX_ATTEMPTS} seeds")
        # The same greedy run in float64 must agree: the fixture is the checkpoint's math, not fp32 luck.
        new64, _ = greedy(model64, prompt)
        if new64 != new:
            sys.exit(f"float32 and float64 continuations differ for seed {seed}: {new} vs {new64}")
        cases.append({"seed": seed, "prompt": prompt, "new_ids": new,
                      "margins": [round(m, MARGIN_DIGITS) for m in margins]})
    return cases


def min_margin(cases):
    return min(min(c["margins"]) for c in cases)


def to_json(v, indent=0):
    """json.dumps(indent=2) with lists of scalars kept on one line: small, diffable, byte-stable."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(v, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(x, indent + 2)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        return "[\n" + ",\n".join(inner + to_json(x, indent + 2) for x in v) + "\n" + pad + "]"
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("non-finite number in the fixture")
    return json.dumps(v)


def main():
    ap = argparse.ArgumentParser(description="greedy-continuation fixtures written by transformers' generate()")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "generate"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft, peft_version = None, None
    os.makedirs(args.out, exist_ok=True)

    for m, name in enumerate(MODELS):
        model = load_base(name, torch.float32)
        model64 = load_base(name, torch.float64)
        vocab = model.config.vocab_size
        cases = cases_for(model, model64, vocab, seed_base=100000 * (m + 1))
        doc = {
            "model": name,
            "checkpoint": f"tests/fixtures/core/{name}",
            "architecture": model.config.architectures[0],
            "vocab_size": vocab,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "generate": {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_id": None,
                         "pad_token_id": PAD_TOKEN_ID, "use_cache": True, "batch_size": 1, "dtype": "float32",
                         "attn_implementation": ATTN, "threads": 1},
            "min_margin_required": MIN_MARGIN,
            "min_distinct_new_tokens": MIN_DISTINCT,
            "min_margin": min_margin(cases),
            "cases": cases,
        }
        if name in ADAPTERS:
            cfg, keys, problems = check_adapter(name, model)
            if problems:
                print(f"{name}: adapter case skipped, {ADAPTERS[name]} does not fit: {'; '.join(problems)}", file=sys.stderr)
            elif peft is None:
                print(f"{name}: adapter case skipped, peft is not installed", file=sys.stderr)
            else:
                lora = apply_adapter(name, model, keys)
                lora64 = apply_adapter(name, model64, keys)
                lcases = cases_for(lora, lora64, vocab, seed_base=100000 * (m + 1) + 50000)
                scaling = cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg.get("use_rslora") else cfg["r"])
                doc["lora"] = {"adapter": ADAPTERS[name], "peft": peft_version, "r": cfg["r"],
                               "lora_alpha": cfg["lora_alpha"], "use_rslora": bool(cfg.get("use_rslora")),
                               "scaling": scaling, "min_margin": min_margin(lcases), "cases": lcases}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            f.write(to_json(doc) + "\n")
        summary = f"min margin {doc['min_margin']:.4g}"
        if "lora" in doc:
            summary += f"; with adapter: min margin {doc['lora']['min_margin']:.4g}"
        print(f"wrote {os.path.relpath(path, REPO)} ({summary})")


if __name__ == "__main__":
    main()
