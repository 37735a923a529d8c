# configToJson against transformers: every published config under tests/fixtures/configs (shrunk to a few layers
# and a small width, its family keys kept: layer pattern, RoPE, soft-caps, partial rotary, biases, ...) is read by
# parseConfig and written back by configToJson (family-configs.ts); transformers builds a model from each of the
# two config.json files, the written one gets the original's weights (load_state_dict, strict: the same tensor names
# and shapes) and both score the same random ids. The written config is the same model when the logits agree bit
# for bit. Also a few variants (VARIANTS) with family keys the published configs leave at their defaults. Configs
# preftune refuses are listed with the refusal. Exits non-zero on any difference.
# Needs torch 2.x and transformers 5.x (written with torch 2.13, transformers 5.18), and node with tsx.
# Usage, from the repo root: python3 tools/interop/check_family_configs.py
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDER = os.path.join(REPO, "tests", "fixtures", "configs")

# Small sizes, in each family's own keys; everything else of the published config stays.
SMALL = {"vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 6, "intermediate_size": 96, "ffn_dim": 96, "max_position_embeddings": 64}


def shrink(cfg):
    out = dict(cfg)
    for k, v in SMALL.items():
        if k in out or k in ("vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings"):
            out[k] = v
    heads, kv = cfg.get("num_attention_heads", 4), cfg.get("num_key_value_heads")
    out["num_attention_heads"] = 4
    if kv is not None:
        out["num_key_value_heads"] = 4 if kv == heads else 2
    if "head_dim" in cfg:
        out["head_dim"] = 16
    if out.get("word_embed_proj_dim") is not None:
        out["word_embed_proj_dim"] = 64 if cfg["word_embed_proj_dim"] == cfg["hidden_size"] else 32
    for k in ("no_rope_layers", "layer_types"):
        if isinstance(out.get(k), list):
            out[k] = out[k][: out["num_hidden_layers"]]
    if isinstance(out.get("sliding_window"), int):
        out["sliding_window"] = 5
    if isinstance(out.get("rope_scaling"), dict):
        rs = dict(out["rope_scaling"])
        head = out.get("head_dim", out["hidden_size"] // out["num_attention_heads"])
        half = int(head * out.get("partial_rotary_factor", 1.0)) // 2  # longrope: one divisor per rotary frequency
        for k in ("short_factor", "long_factor"):
            if k in rs:
                rs[k] = rs[k][:half]
        if "original_max_position_embeddings" in rs:
            rs["original_max_position_embeddings"] = 16
        out["rope_scaling"] = rs
    if "original_max_position_embeddings" in out:
        out["original_max_position_embeddings"] = 16
    for k in ("auto_map", "_name_or_path", "transformers_version", "torch_dtype"):
        out.pop(k, None)
    return out


# token ids inside the small vocabulary, for both configs (configToJson writes none; extra keys add them)
TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


# Variants of the published configs: family keys the published ones leave at their defaults.
VARIANTS = {
    "gemma-3-1b-it+linear": ("gemma-3-1b-it", {"rope_scaling": {"rope_type": "linear", "factor": 8.0}}),
    "gemma-2-2b+no-softcap": ("gemma-2-2b", {"attn_logit_softcapping": None, "final_logit_softcapping": None, "query_pre_attn_scalar": 24}),
    "pythia-160m+sequential": ("pythia-160m", {"use_parallel_residual": False, "attention_bias": False}),
    "opt-125m+no-bias": ("opt-125m", {"enable_bias": False, "activation_function": "gelu"}),
    "phi-2+tied": ("phi-2", {"tie_word_embeddings": True, "partial_rotary_factor": 0.5}),
    "Llama-3.2-1B-Instruct+gelu": ("Llama-3.2-1B-Instruct", {"hidden_act": "gelu", "attention_bias": True, "mlp_bias": True}),
}


def build(cfg):
    config = AutoConfig.for_model(cfg["model_type"], **{**{k: v for k, v in cfg.items() if k != "model_type"}, **TOKENS})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def main():
    transformers.utils.logging.set_verbosity_error()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        published = sorted(n[:-5] for n in os.listdir(FOLDER) if n.endswith(".json") and n != "param_counts.json")
        sources = {n: (n, {}) for n in published} | VARIANTS
        names = list(sources)
        for name, (base, more) in sources.items():
            with open(os.path.join(FOLDER, base + ".json")) as f:
                with open(os.path.join(tmp, name + ".orig.json"), "w") as g:
                    json.dump(shrink({**json.load(f), **more}), g)
        subprocess.run(["node", "--import", "tsx", os.path.join(REPO, "tools", "interop", "family-configs.ts"), tmp], check=True, cwd=REPO)
        for name in names:
            refused = os.path.join(tmp, name + ".refused.txt")
            if os.path.exists(refused):
                print(f"{name:24s} refused: {open(refused).read()}")
                continue
            with open(os.path.join(tmp, name + ".orig.json")) as f:
                orig = json.load(f)
            with open(os.path.join(tmp, name + ".ours.json")) as f:
                ours = json.load(f)
            a, b = build(orig), build(ours)
            try:
                b.load_state_dict(a.state_dict(), strict=True)
            except RuntimeError as e:
                print(f"{name:24s} DIFFERENT TENSORS: {e}")
                failed += 1
                continue
            ids = torch.randint(0, orig["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                la, lb = a(ids).logits, b(ids).logits
            d = (la - lb).abs().max().item()
            print(f"{name:24s} {type(a).__name__:22s} logits max |diff| {d:.3g} over {la.numel()} values")
            failed += d != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
