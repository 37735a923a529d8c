# Reference Llama-family decoder in plain PyTorch (Llama, Mistral, Qwen2, Qwen3), driven by a Hugging Face
# config.json dict and using Hugging Face parameter names, so its state dict is a loadable checkpoint.
# It writes the parity fixtures and serves as the PyTorch peer in bench/; it is never imported by src/.
# Not here: KV cache, generation, rope scaling, sliding-window attention (refused when it would matter),
# dropout (TRL disables it), or any dtype trickery beyond "RMSNorm statistics in at least fp32".
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def parse_config(cfg):
    """Normalises a HF config.json dict into the flags this decoder needs; refuses what it cannot run."""
    archs = cfg.get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in ARCHITECTURES:
        raise ValueError(f"config.json: architectures={archs!r} is not one of {ARCHITECTURES}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act={cfg['hidden_act']!r}; only 'silu' (SwiGLU) is supported")
    if cfg.get("rope_scaling") not in (None, {}):
        raise ValueError(f"config.json: rope_scaling={cfg['rope_scaling']!r} is not supported; remove it or use null")
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    attention_bias = bool(cfg.get("attention_bias", False))
    is_qwen2 = arch == "Qwen2ForCausalLM"
    window = cfg.get("sliding_window") if (arch == "MistralForCausalLM" or cfg.get("use_sliding_window")) else None
    return {
        "architecture": arch,
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_layers": cfg["num_hidden_layers"],
        "num_heads": heads,
        "num_kv_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": head_dim,
        "rms_norm_eps": cfg.get("rms_norm_eps", 1e-6),
        "rope_theta": cfg.get("rope_theta", 10000.0),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        # Qwen2 always has q/k/v bias and no o bias; Llama/Mistral/Qwen3 follow attention_bias for all four.
        "qkv_bias": is_qwen2 or attention_bias,
        "o_bias": (not is_qwen2) and attention_bias,
        "mlp_bias": bool(cfg.get("mlp_bias", False)),
        "qk_norm": arch == "Qwen3ForCausalLM",
        "sliding_window": window,
    }


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        # statistics in fp32 even for half inputs, as transformers does; fp64 stays fp64
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(T, head_dim, theta, dtype):
    """(T, HS) cos and sin tables in the rotate_half layout: emb = cat(freqs, freqs), positions 0..T-1."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))  # (HS/2,)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)  # (T, HS/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, HS)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, NH, NKV, HS = c["hidden_size"], c["num_heads"], c["num_kv_heads"], c["head_dim"]
        self.NH, self.NKV, self.HS = NH, NKV, HS
        self.q_proj = nn.Linear(C, NH * HS, bias=c["qkv_bias"])
        self.k_proj = nn.Linear(C, NKV * HS, bias=c["qkv_bias"])
        self.v_proj = nn.Linear(C, NKV * HS, bias=c["qkv_bias"])
        self.o_proj = nn.Linear(NH * HS, C, bias=c["o_bias"])
        if c["qk_norm"]:
            self.q_norm = RMSNorm(HS, c["rms_norm_eps"])
            self.k_norm = RMSNorm(HS, c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask_bias):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.NH, self.HS)
        k = self.k_proj(x).view(B, T, self.NKV, self.HS)
        v = self.v_proj(x).view(B, T, self.NKV, self.HS)
        if hasattr(self, "q_norm"):  # Qwen3: per-head RMSNorm over head_dim, before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, NH|NKV, T, HS)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.NKV != self.NH:  # GQA: query head h reads kv head h // (NH / NKV)
            rep = self.NH // self.NKV
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.HS)) + mask_bias  # (B, NH, T, T)
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.NH * self.HS)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, I, bias = c["hidden_size"], c["intermediate_size"], c["mlp_bias"]
        self.gate_proj = nn.Linear(C, I, bias=bias)
        self.up_proj = nn.Linear(C, I, bias=bias)
        self.down_proj = nn.Linear(I, C, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask_bias):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask_bias)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderModel(nn.Module):
    """The `model.` prefix of a HF checkpoint."""

    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c["num_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class CausalLM(nn.Module):
    def __init__(self, hf_config):
        super().__init__()
        self.hf_config = dict(hf_config)
        self.c = parse_config(hf_config)
        self.model = DecoderModel(self.c)
        if not self.c["tie_word_embeddings"]:
            self.lm_head = nn.Linear(self.c["hidden_size"], self.c["vocab_size"], bias=False)

    def output_weight(self):
        return self.model.embed_tokens.weight if self.c["tie_word_embeddings"] else self.lm_head.weight

    def forward(self, input_ids, lengths=None):
        """input_ids (B, T) right-padded, lengths (B,) or None for all-real rows -> logits (B, T, V).

        Masking as transformers does for a right-padded attention_mask: causal, and padded keys hidden;
        padded queries still attend to the real keys, so their logits are defined (TRL's ORPO/CPO
        `logits/*` metrics average over them)."""
        B, T = input_ids.shape
        window = self.c["sliding_window"]
        if window is not None and T > window:
            raise ValueError(f"sequence length {T} exceeds sliding_window={window}; sliding windows are not implemented")
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        dtype = x.dtype
        cos, sin = rope_cos_sin(T, self.c["head_dim"], self.c["rope_theta"], dtype)
        pos = torch.arange(T)
        allowed = (pos[None, :] <= pos[:, None])[None, None]  # (1, 1, T, T) key <= query
        if lengths is not None:
            allowed = allowed & (pos[None, None, None, :] < lengths.view(B, 1, 1, 1))  # (B, 1, T, T)
        mask_bias = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, float("-inf"))
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask_bias)
        x = self.model.norm(x)
        return x @ self.output_weight().t()


def build_model(hf_config, dtype=torch.float32):
    return CausalLM(hf_config).to(dtype)


def hf_state_dict(model):
    """name -> tensor with Hugging Face names; a tied lm_head is absent, as in HF checkpoints."""
    return {name: p for name, p in model.named_parameters()}


def load_hf_state(model, tensors):
    """Copies name -> array into the model; every parameter must be present with its exact shape."""
    params = hf_state_dict(model)
    missing = sorted(set(params) - set(tensors))
    extra = sorted(set(tensors) - set(params))
    if missing or extra:
        raise ValueError(f"checkpoint mismatch: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, p in params.items():
            value = torch.as_tensor(tensors[name])
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"checkpoint tensor {name}: shape {tuple(value.shape)}, expected {tuple(p.shape)}")
            p.copy_(value.to(p.dtype))


def real_mask(lengths, T):
    """(B, T) label-aligned validity: 1 for 1 <= t < lengths[b]."""
    t = torch.arange(T)[None, :]
    return (t >= 1) & (t < lengths[:, None])


def stats_from_logits(logits, input_ids, lengths):
    """Label-aligned per-token outputs from logits (B, T, V): entry (b, t) is about input_ids[b, t]
    predicted by logits[b, t-1]; column 0 and padding (t >= lengths[b]) are 0. logps keeps its graph."""
    B, T, _ = logits.shape
    valid = real_mask(lengths, T)  # (B, T)
    prev = logits[:, :-1, :]  # (B, T-1, V) the logits that predict tokens 1..T-1
    logp_all = torch.log_softmax(prev, dim=-1)
    tok = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    zero_col = torch.zeros(B, 1, dtype=logits.dtype)

    def aligned(x):
        return torch.where(valid, torch.cat((zero_col, x), dim=1), torch.zeros((), dtype=x.dtype))

    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        correct = (prev.argmax(-1) == input_ids[:, 1:]).to(logits.dtype)
        return_extra = {
            "logits_mean": aligned(prev.mean(-1)),
            "entropy": aligned(entropy),
            "correct": aligned(correct),
        }
    return {"logps": aligned(tok), **return_extra}


def token_stats(model, input_ids, lengths):
    return stats_from_logits(model(input_ids, lengths), input_ids, lengths)


def token_logps(model, input_ids, lengths):
    """(B, T) label-aligned log p(input_ids[b, t] | input_ids[b, <t]); 0 at t = 0 and padding."""
    return token_stats(model, input_ids, lengths)["logps"]
