# The three tiny seeded checkpoints behind the parity fixtures, plus the training helpers the fixture
# scripts share (HF Trainer-style AdamW parameter groups, gradient clipping, trajectories).
# Not a trainer: no data loading, schedules or logging; every step runs on one fixed batch.
import json
import os

import torch

from model import build_model, hf_state_dict, load_hf_state
from safetensors_io import load_file, save_file


def _common(arch, model_type, **extra):
    cfg = {
        "architectures": [arch],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "max_position_embeddings": 128,
        "model_type": model_type,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "torch_dtype": "float32",
        "transformers_version": "4.51.3",
        "use_cache": True,
    }
    cfg.update(extra)
    return cfg


# name -> (HF config.json dict, seed). head_dim is left out where it equals hidden/heads, so readers
# must derive it; qwen3-tiny sets it to 32 (!= 64 / 4) as real Qwen3 configs do.
TINY_MODELS = {
    "llama-tiny": (
        _common(
            "LlamaForCausalLM", "llama",
            attention_bias=False, intermediate_size=160, mlp_bias=False, pretraining_tp=1,
            rope_theta=10000.0, tie_word_embeddings=False, vocab_size=256,
        ),
        1001,
    ),
    "qwen2-tiny": (
        _common(
            "Qwen2ForCausalLM", "qwen2",
            intermediate_size=128, max_window_layers=2, rope_theta=1000000.0, sliding_window=None,
            tie_word_embeddings=True, use_sliding_window=False, vocab_size=300,
        ),
        1002,
    ),
    "qwen3-tiny": (
        _common(
            "Qwen3ForCausalLM", "qwen3",
            attention_bias=False, head_dim=32, intermediate_size=128, max_window_layers=2,
            rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=True,
            use_sliding_window=False, vocab_size=256,
        ),
        1003,
    ),
}


def is_norm_weight(name):
    return name.endswith("norm.weight")  # input_layernorm, post_attention_layernorm, q_norm, k_norm, model.norm


def decays(name):
    """The HF Trainer's grouping: weight decay on every parameter except biases and norm weights."""
    return not name.endswith(".bias") and not is_norm_weight(name)


def init_tiny(hf_config, seed):
    """fp32 model with N(0, 0.02) matrices, embeddings and biases, and 1 + N(0, 0.1) norm weights
    (not 1, so that a wrong norm-weight gradient cannot hide behind a unit weight)."""
    torch.manual_seed(seed)
    model = build_model(hf_config, torch.float32)
    with torch.no_grad():
        for name, p in sorted(hf_state_dict(model).items()):
            if is_norm_weight(name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.02 * torch.randn(p.shape))
    return model


def perturbed_copy(model, seed, std=0.01):
    """A reference model: the same weights plus seeded N(0, std) noise, rounded to fp32."""
    torch.manual_seed(seed)
    ref = build_model(model.hf_config, torch.float32)
    state = {n: p.detach().float() for n, p in hf_state_dict(model).items()}
    noisy = {n: (v + std * torch.randn(v.shape)).numpy() for n, v in sorted(state.items())}
    load_hf_state(ref, noisy)
    return ref


def save_checkpoint(model, folder):
    """config.json (HF style: indent 2, sorted keys) and model.safetensors (F32, HF names)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(model.hf_config, indent=2, sort_keys=True) + "\n")
    save_weights(model, os.path.join(folder, "model.safetensors"))


def save_weights(model, path):
    tensors = {n: (p, "F32") for n, p in hf_state_dict(model).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def load_checkpoint(folder, dtype):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    model = build_model(cfg, dtype)
    load_hf_state(model, load_file(os.path.join(folder, "model.safetensors"))[0])
    return model


def to_dtype(model, dtype):
    """Same weights, other dtype (float64 for the fixtures); keeps the HF config attached."""
    out = build_model(model.hf_config, dtype)
    load_hf_state(out, {n: p.detach() for n, p in hf_state_dict(model).items()})
    return out


def adamw(model, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    params = hf_state_dict(model)
    groups = [
        {"params": [p for n, p in params.items() if decays(n)], "weight_decay": weight_decay},
        {"params": [p for n, p in params.items() if not decays(n)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps)


def trajectory(model, loss_fn, steps, lr, weight_decay, max_grad_norm):
    """HF Trainer order per step: loss, backward, clip_grad_norm_ (returns the pre-clip norm), AdamW step.
    Returns (losses (steps,), grad_norms (steps,)) as float64 tensors."""
    opt = adamw(model, lr, weight_decay)
    losses, norms = [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_grad_norm)
        opt.step()
        losses.append(loss.item())
        norms.append(float(norm))
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(norms, dtype=torch.float64)


def grads_of(model):
    """grad.<hf name> -> F32 for every parameter (zeros where a parameter got no gradient)."""
    out = {}
    for n, p in hf_state_dict(model).items():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out["grad." + n] = (g, "F32")
    return out
