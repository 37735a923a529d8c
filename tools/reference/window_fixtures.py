# Writes tests/fixtures/window/<model>/: tiny random checkpoints whose layers differ in their attention pattern
# (Mistral's sliding_window on every layer, Qwen2's use_sliding_window from max_window_layers on, SmolLM3's NoPE
# layers from no_rope_layers, which its config also slides), and what transformers' own modelling code computes on
# them over sequences longer than the window: per-token log-probs, every gradient of a masked NLL, a 10-step AdamW
# trajectory, and greedy continuations from generate() with the KV cache that run past the window.
# Not the RoPE-scaling fixtures (rope_fixtures.py; both share hf_fixtures.py) and not a test: tests read these files.
#
# Needs a python3 with torch 2.x and transformers 5.x (written with torch 2.13, transformers 5.18). Usage, from
# the repo root:  python3 tools/reference/window_fixtures.py [--out DIR]
# Deterministic: one thread, seeded weights and ids, sorted safetensors keys; two runs write identical bytes.
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from hf_fixtures import (ATTN, fixture_main, fixture_metadata, generation_case, loaded, nll_fixture,  # noqa: E402
                         save_checkpoint, token_logps, write_generate)
from safetensors_io import save_file  # noqa: E402
from tiny_models import decays  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _base(arch, model_type, layers, **extra):
    return {
        "architectures": [arch], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "max_position_embeddings": 256, "model_type": model_type, "num_attention_heads": 4,
        "num_hidden_layers": layers, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": 256, **extra,
    }


# Windows well below the batch's lengths (40, 33, 21) and the generation's 18 + 16 tokens, so every layer that
# slides drops keys. SmolLM3: layers 1 and 3 have no RoPE (no_rope_layers 0) and, with use_sliding_window, are the
# ones its config slides; Qwen2: layers 1 and 2 slide (i >= max_window_layers), layer 0 is full.
WINDOW_MODELS = {
    "mistral-window": (_base("MistralForCausalLM", "mistral", 2, sliding_window=8), 3001),
    "qwen2-window": (_base("Qwen2ForCausalLM", "qwen2", 3, use_sliding_window=True, sliding_window=6,
                           max_window_layers=1), 3002),
    "smollm3-nope": (_base("SmolLM3ForCausalLM", "smollm3", 4, attention_bias=False, mlp_bias=False,
                           pad_token_id=None, no_rope_layers=[1, 0, 1, 0], use_sliding_window=True, sliding_window=7), 3003),
    "smollm3-nope-full": (_base("SmolLM3ForCausalLM", "smollm3", 4, attention_bias=False, mlp_bias=False,
                                pad_token_id=None, no_rope_layers=[0, 1, 1, 0], use_sliding_window=False, sliding_window=None), 3004),
}
TRAIN = {"steps": 10, "lr": 1e-3, "weight_decay": 0.01, "max_grad_norm": 1.0}


def build(cfg_dict, dtype):
    fresh = json.loads(json.dumps(cfg_dict))
    cfg = AutoConfig.for_model(fresh.pop("model_type"), **{k: v for k, v in fresh.items() if k not in ("architectures", "torch_dtype")})
    cfg._attn_implementation = ATTN
    return AutoModelForCausalLM.from_config(cfg).to(dtype).eval()


def row_logps(model, ids, lens, real):
    """token_logps one row at a time, unpadded: a padded query past a sliding window sees no key at all, and
    transformers' all-masked softmax row is NaN, which its backward spreads to every gradient."""
    rows = []
    for b in range(ids.shape[0]):
        n = int(lens[b])
        lp = token_logps(model, ids[b:b + 1, :n], real[b:b + 1, :n])
        rows.append(torch.cat([lp, torch.zeros((1, ids.shape[1] - n), dtype=lp.dtype)], 1))
    return torch.cat(rows, 0)


def trajectory(model, loss_fn):
    """HF Trainer order per step: loss, backward, clip_grad_norm_ (the pre-clip norm), AdamW (decay on every
    parameter but biases and norm weights). Returns (losses, grad_norms) as float64 tensors."""
    named = sorted(model.named_parameters())
    groups = [{"params": [p for n, p in named if decays(n)], "weight_decay": TRAIN["weight_decay"]},
              {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=TRAIN["lr"], betas=(0.9, 0.999), eps=1e-8)
    losses, norms = [], []
    for _ in range(TRAIN["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=TRAIN["max_grad_norm"])))
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(norms, dtype=torch.float64)


def write_model(name, out_root):
    cfg, seed = WINDOW_MODELS[name]
    folder = os.path.join(out_root, name)
    state = save_checkpoint(build, cfg, seed, folder)

    model = loaded(build, cfg, state, torch.float64)
    layer_types = list(model.config.layer_types) if getattr(model.config, "layer_types", None) else None
    tensors, loss, (ids, lens, real, loss_mask) = nll_fixture(model, row_logps, cfg["vocab_size"], seed + 100)
    traj_loss, traj_norm = trajectory(loaded(build, cfg, state, torch.float64), lambda m: -(row_logps(m, ids, lens, real) * loss_mask).sum() / loss_mask.sum())
    tensors["traj_loss"] = (traj_loss, "F32")
    tensors["traj_grad_norm"] = (traj_norm, "F32")
    metadata = {**fixture_metadata(name), "rows": "one forward per row, unpadded",
                "attn_implementation": ATTN, "layer_types": json.dumps(layer_types),
                "optimizer": "torch.optim.AdamW", "lr": repr(TRAIN["lr"]), "betas": "0.9,0.999", "eps": "1e-08",
                "weight_decay": repr(TRAIN["weight_decay"]), "max_grad_norm": repr(TRAIN["max_grad_norm"]),
                "weight_decay_applies_to": "every parameter except *.bias and *norm.weight",
                "clip": "torch.nn.utils.clip_grad_norm_ before each step; traj_grad_norm is the pre-clip norm",
                "steps": str(TRAIN["steps"]), "traj_loss": "loss before each step, on the same batch every step"}
    save_file(tensors, os.path.join(folder, "fixture.safetensors"), metadata=metadata)

    case = generation_case(lambda dtype: loaded(build, cfg, state, dtype), cfg["vocab_size"], seed * 1000,
                           fresh_per_prompt=False)
    write_generate(folder, name, case, layer_types=layer_types)
    print(f"{name}: layer_types {layer_types}, loss {loss.item():.6f}, traj {traj_loss[0]:.5f} -> {traj_loss[-1]:.5f}, generation seed {case['seed']}, "
          f"min margin {min(case['margins']):.4f}")


if __name__ == "__main__":
    fixture_main("Per-layer attention-pattern parity fixtures written by transformers",
                 os.path.join(REPO, "tests", "fixtures", "window"), WINDOW_MODELS, write_model)
