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
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hf_fixtures import fixture_main, write_trained_fixture  # noqa: E402

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


def write_model(name, out_root):
    cfg, seed = WINDOW_MODELS[name]
    out = write_trained_fixture(name, cfg, seed, os.path.join(out_root, name))
    print(f"{name}: layer_types {out['layer_types']}, loss {out['loss']:.6f}, "
          f"traj {out['traj_loss'][0]:.5f} -> {out['traj_loss'][-1]:.5f}, generation seed {out['case']['seed']}, "
          f"min margin {min(out['case']['margins']):.4f}")


if __name__ == "__main__":
    fixture_main("Per-layer attention-pattern parity fixtures written by transformers",
                 os.path.join(REPO, "tests", "fixtures", "window"), WINDOW_MODELS, write_model)
