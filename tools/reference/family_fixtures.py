# Writes tests/fixtures/family/<case>/: tiny random checkpoints of the families beyond the Llama shape -- Gemma 2
# (soft-caps, query_pre_attn_scalar, sandwich norms, alternating sliding layers), Gemma 3 text (q/k norms, a local
# RoPE base on its sliding layers), Phi-2 (LayerNorm, partial rotary, parallel block, biases, a biased head), Phi-3
# and a Phi-4-mini-like Phi3 (fused qkv_proj and gate_up_proj, partial rotary), GPT-NeoX / Pythia (per-head
# interleaved query_key_value, rotary_pct, parallel and sequential residual) and OPT (learned positions at offset 2,
# ReLU MLP, biases) -- built by transformers' own classes from configs with each family's published keys, and what
# they compute: per-token log-probs, every gradient of a masked NLL, a 10-step AdamW trajectory, greedy continuations
# from generate() with the KV cache, and the same batch through PEFT's LoRA on target_modules="all-linear".
# Not the window or RoPE fixtures (window_fixtures.py, rope_fixtures.py; all share hf_fixtures.py), not a second
# implementation of any family (every number comes from transformers / PEFT) and not a test: tests read these files.
#
# Needs a python3 with torch 2.x, transformers 5.x and peft (written with torch 2.13, transformers 5.18, peft 0.21).
# Usage, from the repo root:  python3 tools/reference/family_fixtures.py [--out DIR]
# Deterministic: one thread, seeded weights and ids, sorted safetensors keys; two runs write identical bytes.
import json
import os
import re
import sys
import tempfile
import warnings

sys.dont_write_bytecode = True  # no __pycache__ left in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402

from hf_fixtures import (build_auto, fixture_main, loaded, row_logps, seed_adapter, write_trained_fixture)  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Shared sizes: C 64, 4 heads of 16, V 256, I 96 (neither C nor 2C, so a transposed MLP weight cannot pass a shape
# check), 256 positions. Ids and dropouts: every dropout 0 (the core has none but LoRA's); pad_token_id is 0 or
# absent wherever the model's embedding takes a padding_idx, because nn.Embedding(padding_idx=p) never sends a
# gradient to row p and the batch's random ids are drawn from [1, V) (OPT's published pad id 1 would be hit).
C, HEADS, HEAD_DIM, V, I, MAX_POS = 64, 4, 16, 256, 96, 256


def _gemma(arch, model_type, layers, **extra):
    return {"architectures": [arch], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 2,
            "cache_implementation": "hybrid", "eos_token_id": 1, "head_dim": HEAD_DIM,
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": C, "initializer_range": 0.02,
            "intermediate_size": I, "max_position_embeddings": MAX_POS, "model_type": model_type,
            "num_attention_heads": HEADS, "num_hidden_layers": layers, "pad_token_id": 0, "rms_norm_eps": 1e-06,
            "sliding_window": 8, "torch_dtype": "float32", "use_cache": True, "vocab_size": V, **extra}


def _phi3(**extra):
    return {"architectures": ["Phi3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
            "embd_pdrop": 0.0, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": C, "initializer_range": 0.02,
            "intermediate_size": I, "max_position_embeddings": MAX_POS, "model_type": "phi3",
            "num_attention_heads": HEADS, "num_hidden_layers": 2, "original_max_position_embeddings": MAX_POS,
            "pad_token_id": 0, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "rope_theta": 10000.0, "sliding_window": None, "torch_dtype": "float32", "use_cache": True,
            "vocab_size": V, **extra}


def _neox(parallel):
    return {"architectures": ["GPTNeoXForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
            "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu", "hidden_dropout": 0.0, "hidden_size": C,
            "initializer_range": 0.02, "intermediate_size": I, "layer_norm_eps": 1e-05,
            "max_position_embeddings": MAX_POS, "model_type": "gpt_neox", "num_attention_heads": HEADS,
            "num_hidden_layers": 2, "rotary_emb_base": 1000, "rotary_pct": 0.25, "tie_word_embeddings": False,
            "torch_dtype": "float32", "use_cache": True, "use_parallel_residual": parallel, "vocab_size": V}


# longrope divisors: rotary_dim / 2 of them (12 / 2 for Phi-4-mini's 0.75 of 16, 16 / 2 for Phi-3).
LONGROPE_SHORT = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5]
LONGROPE_LONG = [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]
LONGROPE_SHORT_FULL = [1.0, 1.05, 1.2, 1.4, 1.7, 2.1, 2.6, 3.2]
LONGROPE_LONG_FULL = [1.0, 1.6, 2.8, 4.5, 7.0, 10.0, 14.0, 19.0]


def _opt(**extra):
    return {"_remove_final_layer_norm": False, "activation_dropout": 0.0, "activation_function": "relu",
             "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
             "do_layer_norm_before": True, "dropout": 0.0, "enable_bias": True, "eos_token_id": 2, "ffn_dim": I,
             "hidden_size": C, "init_std": 0.02, "layer_norm_elementwise_affine": True, "layerdrop": 0.0,
             "max_position_embeddings": MAX_POS, "model_type": "opt", "num_attention_heads": HEADS,
             "num_hidden_layers": 2, "pad_token_id": 0, "prefix": "</s>", "torch_dtype": "float32", "use_cache": True,
             "vocab_size": V, "word_embed_proj_dim": C, **extra}


# name -> (config.json, seed, init_weights options, {feature: what removes it}): a config override (dict), or a
# function that edits the loaded model.
# Gemma: no tie_word_embeddings key (tied by default, as the published configs); norms are applied as (1 + w), so
# their weights are drawn around 0 (norm_center 0), and std 0.2 makes the soft-caps bite: attention scores reach a
# few units against attn_logit_softcapping 2, logits a few units against final_logit_softcapping 3 (the published 50
# and 30 stay in tanh's linear part at this size). Gemma 2's layer_types default alternates sliding (even layers)
# and full; Gemma 3's sliding_window_pattern 3 slides layers 0 and 1 (with rope_local_base_freq 10) and keeps layer 2
# full (rope_theta 1e5); a window of MAX_POS removes the window alone. The rest use std 0.1: attention far from
# uniform, so partial rotary and residual order show in the log-probs. rotary_emb_base 1000 (Pythia's is 10000), so
# a loader that ignored the key would fail.
CASES = {
    "gemma2": (_gemma("Gemma2ForCausalLM", "gemma2", 4, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                      hidden_act="gelu_pytorch_tanh", num_key_value_heads=2, query_pre_attn_scalar=24,
                      rope_theta=10000.0),
               4001, {"std": 0.2, "norm_center": 0.0},
               {"attn_logit_softcapping": {"attn_logit_softcapping": None},
                "final_logit_softcapping": {"final_logit_softcapping": None},
                "query_pre_attn_scalar": {"query_pre_attn_scalar": HEAD_DIM},
                "sliding_window": {"sliding_window": MAX_POS}}),
    "gemma3": (_gemma("Gemma3ForCausalLM", "gemma3_text", 3, attn_logit_softcapping=None, eos_token_id=[1, 106],
                      final_logit_softcapping=None, num_key_value_heads=1, query_pre_attn_scalar=12,
                      rope_local_base_freq=10.0, rope_scaling=None, rope_theta=100000.0, sliding_window_pattern=3),
               4002, {"std": 0.2, "norm_center": 0.0},
               {"rope_local_base_freq": {"rope_local_base_freq": 100000.0},
                "query_pre_attn_scalar": {"query_pre_attn_scalar": HEAD_DIM},
                "sliding_window": {"sliding_window": MAX_POS}}),
    "phi2": ({"architectures": ["PhiForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0,
              "eos_token_id": 2, "hidden_act": "gelu_new", "hidden_size": C, "initializer_range": 0.02,
              "intermediate_size": I, "layer_norm_eps": 1e-05, "max_position_embeddings": MAX_POS, "model_type": "phi",
              "num_attention_heads": HEADS, "num_hidden_layers": 2, "num_key_value_heads": HEADS,
              "partial_rotary_factor": 0.5, "qk_layernorm": False, "resid_pdrop": 0.0, "rope_scaling": None,
              "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
              "vocab_size": V},
             4003, {"std": 0.1}, {"partial_rotary_factor": {"partial_rotary_factor": 1.0}}),
    "phi3": (_phi3(num_key_value_heads=HEADS, tie_word_embeddings=False), 4004, {"std": 0.1}, {}),
    "phi4mini": (_phi3(lm_head_bias=False, mlp_bias=False, num_key_value_heads=2, partial_rotary_factor=0.75,
                       tie_word_embeddings=True),
                 4005, {"std": 0.1}, {"partial_rotary_factor": {"partial_rotary_factor": 1.0}}),
    # longrope (Phi-3 128k, Phi-3.5, Phi-4-mini): the divisors and attention factor sqrt(1 + ln(max / original) /
    # ln(original)) from max_position_embeddings over original_max_position_embeddings. transformers picks the long
    # divisors when a forward's positions pass the original length: 16 puts every row (40, 33, 21 tokens) and the
    # 18-token generation prompt past it, 64 keeps every one below, so a batch and its rows agree.
    "phi4mini-longrope": (_phi3(lm_head_bias=False, mlp_bias=False, num_key_value_heads=2, partial_rotary_factor=0.75,
                                tie_word_embeddings=True, original_max_position_embeddings=16,
                                rope_scaling={"type": "longrope", "short_factor": LONGROPE_SHORT,
                                              "long_factor": LONGROPE_LONG}),
                          4009, {"std": 0.1},
                          {"long_factor": {"rope_scaling": {"type": "longrope", "short_factor": LONGROPE_SHORT,
                                                            "long_factor": LONGROPE_SHORT}}}),
    "phi3-longrope-short": (_phi3(num_key_value_heads=HEADS, tie_word_embeddings=False,
                                  original_max_position_embeddings=64,
                                  rope_scaling={"type": "longrope", "short_factor": LONGROPE_SHORT_FULL,
                                                "long_factor": LONGROPE_LONG_FULL}),
                            4010, {"std": 0.1},
                            {"short_factor": {"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 8,
                                                               "long_factor": LONGROPE_LONG_FULL}}}),
    "neox": (_neox(True), 4006, {"std": 0.1},
             {"use_parallel_residual": {"use_parallel_residual": False}, "rotary_pct": {"rotary_pct": 1.0},
              "rotary_emb_base": {"rotary_emb_base": 10000}}),
    "neox-seq": (_neox(False), 4007, {"std": 0.1}, {"use_parallel_residual": {"use_parallel_residual": True}}),
    "opt": (_opt(), 4008, {"std": 0.1}, {"position offset 2": lambda m: setattr(m.model.decoder.embed_positions, "offset", 0)}),
    # OPT-350m's layout: LayerNorm after each block (do_layer_norm_before false, so no final LayerNorm) and
    # embeddings of word_embed_proj_dim 32 with project_in / project_out around the decoder, tied head (V, 32)
    "opt-350m": (_opt(do_layer_norm_before=False, word_embed_proj_dim=32), 4011, {"std": 0.1},
                 {"do_layer_norm_before": {"do_layer_norm_before": True}}),
}
# transformers renames on load (conversion_mapping.py) and back on save; model.safetensors and the grad.<name> keys
# use the names on disk, which save_pretrained is checked to write.
FILE_NAMES = {"gpt_neox": (("lm_head.", "embed_out."),)}
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
B_STD = 0.05  # lora_B ~ N(0, B_STD) instead of PEFT's zeros, so that d loss / d lora_A is not zero
MIN_EFFECT = 1e-3  # each feature listed in CASES must move some log-prob by more than this
# Gradients that are 0 in exact arithmetic: without RoPE (OPT) a key bias adds the same q.b to every score of a
# query, which softmax ignores. transformers' eager softmax runs in float32 even in a float64 model, so the fixture
# holds float32 rounding noise there (~1e-9), not a value an implementation can match relatively; the test checks
# them absolutely (ZERO_GRAD_ABS).
ZERO_GRADS = {"opt": r"\.self_attn\.k_proj\.bias$", "opt-350m": r"\.self_attn\.k_proj\.bias$"}
ZERO_GRAD_ABS = 1e-7


def file_namer(cfg):
    renames = FILE_NAMES.get(cfg["model_type"], ())

    def file_name(n):
        for old, new in renames:
            if n.startswith(old):
                return new + n[len(old):]
        return n
    return file_name


def check_file_names(cfg, state, file_name):
    """The names save_pretrained writes for this model are the ones model.safetensors uses."""
    model = loaded(build_auto, cfg, state, torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        saved = set(load_file(os.path.join(tmp, "model.safetensors"))[0])
    ours = {file_name(n) for n, _ in model.named_parameters()}
    if saved != ours:
        sys.exit(f"{cfg['model_type']}: save_pretrained writes {sorted(saved ^ ours)} differently")


def effects(cfg, state, ids, lens, real, reference, ablations):
    """{feature: max |logps - the logps with that feature removed|}, each above MIN_EFFECT."""
    out = {}
    for what, override in ablations.items():
        if callable(override):
            model = loaded(build_auto, cfg, state, torch.float64)
            override(model)
        else:
            model = loaded(build_auto, {**cfg, **override}, state, torch.float64)
        with torch.no_grad():
            lp = row_logps(model, ids, lens, real)
        out[what] = float((lp - reference).abs().max())
        if not out[what] > MIN_EFFECT:
            sys.exit(f"{cfg['model_type']}: the fixture hardly depends on {what} ({out[what]:.2e})")
    return out


def check_zero_grads(name, folder):
    """Every gradient ZERO_GRADS names is within ZERO_GRAD_ABS of 0, and the pattern names at least one."""
    if name not in ZERO_GRADS:
        return
    grads = {k: v for k, v in load_file(os.path.join(folder, "fixture.safetensors"))[0].items()
             if k.startswith("grad.") and re.search(ZERO_GRADS[name], k)}
    if not grads or any(abs(v).max() > ZERO_GRAD_ABS for v in grads.values()):
        sys.exit(f"{name}: {ZERO_GRADS[name]} names {len(grads)} gradients, not all within {ZERO_GRAD_ABS} of 0")


def peft_file_name(param_name):
    """PEFT's in-memory parameter name -> its adapter_model.safetensors name."""
    return param_name.replace(".default", "")


def lora_model(cfg, state, seed, name):
    """PEFT's LoRA (LORA settings) on the fp32 checkpoint; lora_A re-drawn as PEFT draws it (kaiming-uniform
    a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))) and lora_B ~ N(0, B_STD), seeded, in sorted name order."""
    pm = get_peft_model(loaded(build_auto, cfg, state, torch.float32),
                        LoraConfig(task_type="CAUSAL_LM", **LORA))
    pm.peft_config["default"].base_model_name_or_path = f"tests/fixtures/family/{name}"  # no machine path in the file
    seed_adapter(pm, seed, B_STD, name)
    return pm


def write_lora(name, cfg, seed, folder, state, batch, base_logps):
    """lora-adapter/ (PEFT's save_pretrained) and lora.safetensors: the batch's log-probs through the adapter,
    the masked NLL and grad.<PEFT file name> of every adapter tensor, in float64."""
    pm = lora_model(cfg, state, seed + 400, name)
    targets = sorted(pm.peft_config["default"].target_modules)
    adapter_dir = os.path.join(folder, "lora-adapter")
    with warnings.catch_warnings():  # "Could not find a config file in tests/fixtures/family/...": the name is not a path
        warnings.simplefilter("ignore", UserWarning)
        pm.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # save_pretrained's model card: not part of the fixture
    cfg_file = os.path.join(adapter_dir, "adapter_config.json")
    with open(cfg_file) as f:
        saved = json.load(f)
    if sorted(saved["target_modules"]) != targets:
        sys.exit(f"{name}: adapter_config.json lists {saved['target_modules']}, PEFT adapted {targets}")
    # PEFT writes target_modules in a set's order, which changes with the interpreter's hash seed: sorted here,
    # the rest of the file as PEFT wrote it. With fewer than 20 adapted modules (as here) PEFT lists their full
    # paths; from 20 on (any real model) it condenses them to the module names (target_module_names below).
    saved["target_modules"] = targets
    with open(cfg_file, "w") as f:
        f.write(json.dumps(saved, indent=2, sort_keys=True))  # no newline, as PEFT

    ids, lens, real, loss_mask = batch
    pm = pm.double().eval()
    logps = row_logps(pm, ids, lens, real)
    loss = -(logps * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    grads = {peft_file_name(n): p.grad for n, p in pm.named_parameters() if p.requires_grad}
    on_disk = set(load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))[0])
    if on_disk != set(grads):
        sys.exit(f"{name}: adapter_model.safetensors holds {sorted(on_disk ^ set(grads))} differently")
    modules = sorted({n[len("base_model.model."):-len(".lora_A.weight")] for n in grads if n.endswith(".lora_A.weight")})
    names = sorted({m.rsplit(".", 1)[-1] for m in modules})
    tensors = {"input_ids": (ids, "I32"), "lengths": (lens, "I32"), "loss_mask": (loss_mask, "F32"),
               "logps": (logps.detach(), "F32"), "loss": (loss.detach().reshape(()), "F32"),
               **{"grad." + n: (g, "F32") for n, g in grads.items()}}
    meta = {"model": name, "adapter": f"tests/fixtures/family/{name}/lora-adapter", "r": str(LORA["r"]),
            "lora_alpha": str(LORA["lora_alpha"]), "use_rslora": "false", "lora_dropout": "0.0",
            "scaling": repr(LORA["lora_alpha"] / LORA["r"]), "requested_target_modules": LORA["target_modules"],
            "target_modules": json.dumps(targets), "target_module_names": json.dumps(names),
            "adapted_modules": json.dumps(modules),
            "lora_A_init": "U(-1/sqrt(in), 1/sqrt(in)) seeded (PEFT's kaiming_uniform_(a=sqrt(5)) bound)",
            "lora_B_init": f"N(0, {B_STD}) seeded (PEFT would start at 0)",
            "loss": "-sum(logps * loss_mask) / sum(loss_mask), adapter on", "rows": "one forward per row, unpadded",
            "compute_dtype": "float64", "torch_version": torch.__version__, "peft_version": peft.__version__}
    save_file(tensors, os.path.join(folder, "lora.safetensors"), metadata=meta)
    moved = float((logps.detach() - base_logps).abs().max())
    if not moved > MIN_EFFECT:
        sys.exit(f"{name}: the adapter hardly changes the log-probs ({moved:.2e})")
    return names, loss.item(), moved


def write_model(name, out_root):
    cfg, seed, init, ablations = CASES[name]
    folder = os.path.join(out_root, name)
    file_name = file_namer(cfg)
    shown = {}

    def metadata(state, batch, logps):
        shown.update(effects(cfg, state, *batch[:3], logps, ablations))
        return {"init": json.dumps(init, sort_keys=True), "zero_grads": ZERO_GRADS.get(name, ""),
                "zero_grads_are": f"grad.<name> matching this regex is 0 in exact arithmetic (within {ZERO_GRAD_ABS} here)",
                "feature_effects": json.dumps({k: float(f"{v:.3g}") for k, v in shown.items()}, sort_keys=True),
                "feature_effects_are": "max |logps - logps with the feature removed (a config override or a model edit)|, same weights"}

    out = write_trained_fixture(name, cfg, seed, folder, init=init, file_name=file_name, metadata=metadata)
    check_zero_grads(name, folder)
    check_file_names(cfg, out["state"], file_name)
    names, lora_loss, moved = write_lora(name, cfg, seed, folder, out["state"], out["batch"], out["logps"])
    print(f"{name}: layer_types {out['layer_types']}, loss {out['loss']:.6f}, "
          f"traj {out['traj_loss'][0]:.5f} -> {out['traj_loss'][-1]:.5f}, generation seed {out['case']['seed']}, "
          f"min margin {min(out['case']['margins']):.4f}; without each feature, logps move by "
          f"{ {k: float(f'{v:.3g}') for k, v in shown.items()} }; LoRA on {names}: loss {lora_loss:.6f}, "
          f"logps moved {moved:.3g}")


if __name__ == "__main__":
    transformers.utils.logging.disable_progress_bar()
    fixture_main("Model-family parity fixtures written by transformers and PEFT",
                 os.path.join(REPO, "tests", "fixtures", "family"), CASES, write_model)
