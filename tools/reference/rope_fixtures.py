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
import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from generate_fixtures import to_json  # noqa: E402
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
LENGTHS = [40, 33, 21]          # padded to the longest row, as TRL's collators pad
# The dynamic model's further runs, in order after the gradient run: 32 keeps the length-40 frequencies
# (between max_position_embeddings and the longest so far), 20 restores the original ones, 30 grows again.
DYNAMIC_RUNS = [[32, 30], [20, 17], [30, 9]]
PROMPT_LENGTH, MAX_NEW_TOKENS, MIN_MARGIN, MAX_ATTEMPTS = 18, 16, 1e-3, 2000
ATTN = "eager"


def build(cfg_dict, dtype):
    fresh = json.loads(json.dumps(cfg_dict))  # LlamaConfig fills defaults into the rope dict it is given
    cfg = LlamaConfig(**{k: v for k, v in fresh.items() if k not in ("architectures", "model_type", "torch_dtype")})
    cfg._attn_implementation = ATTN
    return LlamaForCausalLM(cfg).to(dtype).eval()


def init_weights(model, seed):
    """N(0, 0.02) for every matrix and embedding, 1 + N(0, 0.1) for norm weights, in sorted name order."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.02 * torch.randn(p.shape))


def batch(lengths, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), T), generator=g)
    lens = torch.tensor(lengths)
    real = torch.arange(T)[None, :] < lens[:, None]
    return torch.where(real, ids, torch.zeros((), dtype=torch.int64)), lens, real


def token_logps(model, ids, real):
    """Label-aligned (B, T): entry t = log p(ids[t] | ids[<t]); 0 at t = 0 and on padding."""
    logits = model(input_ids=ids, attention_mask=real.long()).logits
    lp = torch.log_softmax(logits[:, :-1].to(torch.float64), -1).gather(-1, ids[:, 1:, None])[..., 0]
    lp = torch.cat([torch.zeros_like(lp[:, :1]), lp], 1)
    return torch.where(real & (torch.arange(ids.shape[1]) > 0)[None, :], lp, torch.zeros_like(lp))


def greedy(model, prompt):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=MAX_NEW_TOKENS, eos_token_id=None, pad_token_id=0, use_cache=True,
                             output_logits=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt):].tolist()
    margins = []
    for step, logits in enumerate(out.logits):
        top = torch.topk(logits[0].to(torch.float64), 2).values
        if int(torch.argmax(logits[0])) != new[step]:
            sys.exit("generated token is not the argmax of its logits")
        margins.append(float(top[0] - top[1]))
    return new, margins


def generation_case(cfg, state, vocab, seed_base):
    """A prompt whose greedy continuation has every top-1/top-2 gap above MIN_MARGIN and two distinct tokens, the
    same from a fresh float32 model and a fresh float64 one (fresh: dynamic RoPE keeps state between calls)."""
    for attempt in range(MAX_ATTEMPTS):
        seed = seed_base + attempt
        g = torch.Generator().manual_seed(seed)
        prompt = torch.randint(1, vocab, (PROMPT_LENGTH,), generator=g).tolist()
        m32 = build(cfg, torch.float32)
        m32.load_state_dict(state)
        new, margins = greedy(m32, prompt)
        if min(margins) > MIN_MARGIN and len(set(new)) >= 2:
            m64 = build(cfg, torch.float64)
            m64.load_state_dict(state)
            if greedy(m64, prompt)[0] != new:
                sys.exit(f"seed {seed}: float32 and float64 continuations differ")
            return {"seed": seed, "prompt": prompt, "new_ids": new, "margins": [round(m, 6) for m in margins]}
    sys.exit(f"no prompt with every margin > {MIN_MARGIN} in {MAX_ATTEMPTS} seeds")


def write_model(name, out_root):
    cfg, seed = ROPE_MODELS[name]
    folder = os.path.join(out_root, name)
    os.makedirs(folder, exist_ok=True)
    model32 = build(cfg, torch.float32)
    init_weights(model32, seed)
    state = {k: v.clone() for k, v in model32.state_dict().items() if not k.endswith("inv_freq")}
    params = {n: p for n, p in model32.named_parameters()}
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file({n: (p, "F32") for n, p in params.items()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})

    # float64 from the stored fp32 weights; RoPE tables stay fp32 in transformers whatever the model dtype.
    model = build(cfg, torch.float64)
    model.load_state_dict(state, strict=False)
    ids, lens, real = batch(LENGTHS, cfg["vocab_size"], seed + 100)
    loss_mask = (real & (torch.arange(ids.shape[1]) >= 2)[None, :]).to(torch.float64)
    logps = token_logps(model, ids, real)
    loss = -(logps * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    tensors = {
        "input_ids": (ids, "I32"), "lengths": (lens, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (logps.detach(), "F32"), "loss": (loss.detach().reshape(()), "F32"),
    }
    for n, p in model.named_parameters():
        tensors["grad." + n] = (p.grad, "F32")
    runs = DYNAMIC_RUNS if cfg["rope_scaling"]["rope_type"] == "dynamic" else []
    with torch.no_grad():
        for k, lengths in enumerate(runs):
            rids, rlens, rreal = batch(lengths, cfg["vocab_size"], seed + 200 + k)
            tensors[f"run{k}.input_ids"] = (rids, "I32")
            tensors[f"run{k}.lengths"] = (rlens, "I32")
            tensors[f"run{k}.logps"] = (token_logps(model, rids, rreal), "F32")
    metadata = {"model": name, "torch_version": torch.__version__, "transformers_version": transformers.__version__,
                "compute_dtype": "float64", "loss": "-sum(logps * loss_mask) / sum(loss_mask)",
                "runs": str(len(runs)), "attn_implementation": ATTN}
    save_file(tensors, os.path.join(folder, "fixture.safetensors"), metadata=metadata)

    case = generation_case(cfg, state, cfg["vocab_size"], seed * 1000)
    doc = {"model": name, "torch": torch.__version__, "transformers": transformers.__version__,
           "generate": {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_id": None, "batch_size": 1,
                        "dtype": "float32", "attn_implementation": ATTN},
           "min_margin_required": MIN_MARGIN, **case}
    with open(os.path.join(folder, "generate.json"), "w") as f:
        f.write(to_json(doc) + "\n")
    print(f"{name}: loss {loss.item():.6f}, generation seed {case['seed']}, min margin {min(case['margins']):.4f}")


def main():
    ap = argparse.ArgumentParser(description="RoPE-scaling parity fixtures written by transformers' LlamaForCausalLM")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "rope"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.set_verbosity_error()
    for name in ROPE_MODELS:
        write_model(name, args.out)


if __name__ == "__main__":
    main()
