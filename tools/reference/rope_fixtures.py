# Writes tests/fixtures/rope/<model>/: tiny random Llama checkpoints with each RoPE scaling transformers has for
# the Llama shape (llama3, linear, dynamic, yarn twice), and what transformers' own LlamaForCausalLM computes on
# them: per-token log-probs and every gradient of a masked NLL at lengths past the scaling thresholds, the
# dynamic model's log-probs over a sequence of runs (its frequencies depend on the runs before), and greedy
# continuations from generate() with the KV cache that run across the thresholds.
# Not the core fixtures (make_fixtures.py, hand-written model) and not a test: tests read these files only.
#
# Needs a python3 with torch 2.x and transformers 5.x (written with torch 2.13, transformers 5.18). Usage, from
# the repo root:  python3 tools/reference/rope_fixtures.py [--out DIR]
# Deterministic: one thread, seeded weights and ids, sorted safetensors keys; two runs write identical bytes.
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from hf_fixtures import (ATTN, batch, fixture_main, fixture_metadata, generation_case, loaded, nll_fixture,  # noqa: E402
                         save_checkpoint, token_logps, write_generate)
from safetensors_io import save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _llama(max_pos, rope_theta, rope_scaling):
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
        "intermediate_size": 128, "max_position_embeddings": max_pos, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_scaling": rope_scaling, "rope_theta": rope_theta, "tie_word_embeddings": False,
        "torch_dtype": "float32", "use_cache": True, "vocab_size": 256,
    }


# head_dim 16. Each threshold sits below the batch's lengths (40, 33, 21), so the scaling changes the result:
# llama3: wavelengths 2pi 5e5^(i/8) = 6.3 (kept, < 64/4), 32 (blended), 167.. (divided, > 64/1);
# dynamic: max_position_embeddings 24 < 40, so the forward runs on frequencies recomputed for length 40;
# yarn: correction range [0, 4] (truncated) of the 8 frequencies, attention factor 0.1 ln 4 + 1;
# yarn-mscale: untruncated range [1.41, 2.62], beta 8 / 2, attention factor from mscale / mscale_all_dim.
ROPE_MODELS = {
    "llama-llama3": (_llama(256, 500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}), 2001),
    "llama-linear": (_llama(128, 10000.0, {"rope_type": "linear", "factor": 4.0}), 2002),
    "llama-dynamic": (_llama(24, 10000.0, {"rope_type": "dynamic", "factor": 3.0}), 2003),
    "llama-yarn": (_llama(1024, 10000.0, {"rope_type": "yarn", "factor": 4.0,
                                          "original_max_position_embeddings": 256}), 2004),
    "llama-yarn-mscale": (_llama(2048, 10000.0, {"rope_type": "yarn", "factor": 8.0,
                                                 "original_max_position_embeddings": 256, "beta_fast": 8,
                                                 "beta_slow": 2, "mscale": 0.707, "mscale_all_dim": 1.0,
                                                 "truncate": False}), 2005),
}
# The dynamic model's further runs, in order after the gradient run: 32 keeps the length-40 frequencies
# (between max_position_embeddings and the longest so far), 20 restores the original ones, 30 grows again.
DYNAMIC_RUNS = [[32, 30], [20, 17], [30, 9]]


def build(cfg_dict, dtype):
    fresh = json.loads(json.dumps(cfg_dict))  # LlamaConfig fills defaults into the rope dict it is given
    cfg = LlamaConfig(**{k: v for k, v in fresh.items() if k not in ("architectures", "model_type", "torch_dtype")})
    cfg._attn_implementation = ATTN
    return LlamaForCausalLM(cfg).to(dtype).eval()


def write_model(name, out_root):
    cfg, seed = ROPE_MODELS[name]
    folder = os.path.join(out_root, name)
    state = save_checkpoint(build, cfg, seed, folder)

    # float64 from the stored fp32 weights; RoPE tables stay fp32 in transformers whatever the model dtype.
    model = loaded(build, cfg, state, torch.float64)
    tensors, loss, _ = nll_fixture(model, lambda m, ids, lens, real: token_logps(m, ids, real),
                                   cfg["vocab_size"], seed + 100)
    runs = DYNAMIC_RUNS if cfg["rope_scaling"]["rope_type"] == "dynamic" else []
    with torch.no_grad():
        for k, lengths in enumerate(runs):
            rids, rlens, rreal = batch(lengths, cfg["vocab_size"], seed + 200 + k)
            tensors[f"run{k}.input_ids"] = (rids, "I32")
            tensors[f"run{k}.lengths"] = (rlens, "I32")
            tensors[f"run{k}.logps"] = (token_logps(model, rids, rreal), "F32")
    metadata = {**fixture_metadata(name), "runs": str(len(runs)), "attn_implementation": ATTN}
    save_file(tensors, os.path.join(folder, "fixture.safetensors"), metadata=metadata)

    case = generation_case(lambda dtype: loaded(build, cfg, state, dtype, strict=True), cfg["vocab_size"], seed * 1000,
                           fresh_per_prompt=True)
    write_generate(folder, name, case)
    print(f"{name}: loss {loss.item():.6f}, generation seed {case['seed']}, min margin {min(case['margins']):.4f}")


if __name__ == "__main__":
    fixture_main("RoPE-scaling parity fixtures written by transformers' LlamaForCausalLM",
                 os.path.join(REPO, "tests", "fixtures", "rope"), ROPE_MODELS, write_model)
