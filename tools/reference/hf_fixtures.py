# What the fixture writers that run transformers' own modelling classes share (rope_fixtures.py,
# window_fixtures.py, family_fixtures.py): seeded weights and batches, the checkpoint files, label-aligned log-probs
# (whole batch or row by row), the masked-NLL gradient fixture, the 10-step AdamW trajectory, the greedy-generation
# search with its generate.json, and the command line.
# Not a fixture writer and not the hand-written model's helpers (tiny_models.py): each script builds its own model
# class and writes its own extra tensors and metadata.
import argparse
import json
import math
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from generate_fixtures import to_json
from safetensors_io import save_file
from tiny_models import decays

LENGTHS = [40, 33, 21]          # padded to the longest row, as TRL's collators pad
PROMPT_LENGTH, MAX_NEW_TOKENS, MIN_MARGIN, MAX_ATTEMPTS = 18, 16, 1e-3, 2000
ATTN = "eager"
LOSS = "-sum(logps * loss_mask) / sum(loss_mask)"
TRAIN = {"steps": 10, "lr": 1e-3, "weight_decay": 0.01, "max_grad_norm": 1.0}


def init_weights(model, seed, std=0.02, norm_center=1.0):
    """In sorted name order: N(0, std) for every matrix, embedding and bias; norm_center + N(0, 0.1) for norm
    weights (names ending in "norm.weight": RMSNorm's and LayerNorm's, e.g. input_layernorm, final_layer_norm,
    q_norm), so that a wrong norm-weight gradient cannot hide behind a unit weight. norm_center 0 is for Gemma's
    norms, which scale by (1 + weight). LayerNorm biases are biases: N(0, std), not zeros."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(norm_center + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(std * torch.randn(p.shape))


def batch(lengths, vocab, seed):
    """(ids (B, T) zero-padded, lengths (B,), real (B, T) bool) with seeded ids in [1, vocab)."""
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


def build_auto(cfg_dict, dtype):
    """AutoModelForCausalLM.from_config of a config.json dict (eager attention, eval mode) in dtype."""
    fresh = json.loads(json.dumps(cfg_dict))  # configs may fill defaults into the dicts they are given
    cfg = AutoConfig.for_model(fresh.pop("model_type"), **{k: v for k, v in fresh.items() if k not in ("architectures", "torch_dtype")})
    cfg._attn_implementation = ATTN
    return AutoModelForCausalLM.from_config(cfg).to(dtype).eval()


def save_checkpoint(build, cfg, seed, folder, init=None, file_name=str):
    """config.json (indent 2, sorted keys) and model.safetensors (F32) of a seeded float32 model built by
    build(cfg, dtype), initialised by init_weights(model, seed, **init); file_name maps a parameter's name in the
    model to its name in the file (where transformers renames on load, e.g. GPT-NeoX's lm_head <- embed_out).
    Returns its state dict without the RoPE inv_freq buffers, to load into other dtypes."""
    os.makedirs(folder, exist_ok=True)
    model32 = build(cfg, torch.float32)
    init_weights(model32, seed, **(init or {}))
    state = {k: v.clone() for k, v in model32.state_dict().items() if not k.endswith("inv_freq")}
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file({file_name(n): (p, "F32") for n, p in model32.named_parameters()},
              os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    return state


def loaded(build, cfg, state, dtype, strict=False):
    """build(cfg, dtype) with the checkpoint's state loaded (strict: the state must hold every key the model saves)."""
    model = build(cfg, dtype)
    model.load_state_dict(state, strict=strict)
    return model


def row_logps(model, ids, lens, real):
    """token_logps one row at a time, unpadded: a padded query past a sliding window sees no key at all, and
    transformers' all-masked softmax row is NaN, which its backward spreads to every gradient."""
    rows = []
    for b in range(ids.shape[0]):
        n = int(lens[b])
        lp = token_logps(model, ids[b:b + 1, :n], real[b:b + 1, :n])
        rows.append(torch.cat([lp, torch.zeros((1, ids.shape[1] - n), dtype=lp.dtype)], 1))
    return torch.cat(rows, 0)


def loss_mask_of(ids, real):
    """Label-aligned (B, T) float64: 1 on every real token from position 2 on."""
    return (real & (torch.arange(ids.shape[1]) >= 2)[None, :]).to(torch.float64)


def nll_fixture(model, logps_fn, vocab, seed, file_name=str):
    """The masked NLL (every real token from position 2 on) of a seeded LENGTHS batch, backpropagated.
    logps_fn(model, ids, lens, real) -> label-aligned (B, T) log-probs. Returns (tensors with input_ids, lengths,
    loss_mask, logps, loss and grad.<file name> of every parameter; loss; (ids, lens, real, loss_mask))."""
    ids, lens, real = batch(LENGTHS, vocab, seed)
    loss_mask = loss_mask_of(ids, real)
    logps = logps_fn(model, ids, lens, real)
    loss = -(logps * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    tensors = {
        "input_ids": (ids, "I32"), "lengths": (lens, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (logps.detach(), "F32"), "loss": (loss.detach().reshape(()), "F32"),
    }
    for n, p in model.named_parameters():
        tensors["grad." + file_name(n)] = (p.grad, "F32")
    return tensors, loss, (ids, lens, real, loss_mask)


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


def trajectory_metadata():
    """The fixture.safetensors metadata that describes trajectory()'s run."""
    return {"optimizer": "torch.optim.AdamW", "lr": repr(TRAIN["lr"]), "betas": "0.9,0.999", "eps": "1e-08",
            "weight_decay": repr(TRAIN["weight_decay"]), "max_grad_norm": repr(TRAIN["max_grad_norm"]),
            "weight_decay_applies_to": "every parameter except *.bias and *norm.weight",
            "clip": "torch.nn.utils.clip_grad_norm_ before each step; traj_grad_norm is the pre-clip norm",
            "steps": str(TRAIN["steps"]), "traj_loss": "loss before each step, on the same batch every step"}


def fixture_metadata(name):
    """The leading fixture.safetensors metadata every such fixture records; scripts add their own keys."""
    return {"model": name, "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "compute_dtype": "float64", "loss": LOSS}


def greedy(model, prompt):
    """generate() on one prompt with the KV cache: (new token ids, top-1 minus top-2 logit at each step)."""
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


def generation_case(load, vocab, seed_base, fresh_per_prompt):
    """A prompt whose greedy continuation has every top-1/top-2 gap above MIN_MARGIN and two distinct tokens, the
    same from a float32 model and a float64 one; load(dtype) -> model with the checkpoint's weights.
    fresh_per_prompt: new models for every prompt tried (dynamic RoPE keeps state between calls)."""
    if not fresh_per_prompt:
        m32, m64 = load(torch.float32), load(torch.float64)
    for attempt in range(MAX_ATTEMPTS):
        seed = seed_base + attempt
        g = torch.Generator().manual_seed(seed)
        prompt = torch.randint(1, vocab, (PROMPT_LENGTH,), generator=g).tolist()
        if fresh_per_prompt:
            m32 = load(torch.float32)
        new, margins = greedy(m32, prompt)
        if min(margins) > MIN_MARGIN and len(set(new)) >= 2:
            if fresh_per_prompt:
                m64 = load(torch.float64)
            if greedy(m64, prompt)[0] != new:
                sys.exit(f"seed {seed}: float32 and float64 continuations differ")
            return {"seed": seed, "prompt": prompt, "new_ids": new, "margins": [round(m, 6) for m in margins]}
    sys.exit(f"no prompt with every margin > {MIN_MARGIN} in {MAX_ATTEMPTS} seeds")


def write_generate(folder, name, case, **extra):
    """generate.json: versions, then extra keys (in order), the generate() settings and the case."""
    doc = {"model": name, "torch": torch.__version__, "transformers": transformers.__version__, **extra,
           "generate": {"do_sample": False, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_id": None, "batch_size": 1,
                        "dtype": "float32", "attn_implementation": ATTN},
           "min_margin_required": MIN_MARGIN, **case}
    with open(os.path.join(folder, "generate.json"), "w") as f:
        f.write(to_json(doc) + "\n")


def write_trained_fixture(name, cfg, seed, folder, build=build_auto, init=None, file_name=str, metadata=None):
    """A case folder: config.json + model.safetensors (save_checkpoint), fixture.safetensors (nll_fixture on rows
    run one at a time, unpadded, then trajectory() from the same weights; fixture_metadata, the layer_types the
    model built, trajectory_metadata and `metadata`: a dict, or metadata(state, batch, logps) -> dict) and
    generate.json (generation_case).
    Returns a dict: state, batch (ids, lens, real, loss_mask), its logps, loss, traj_loss, layer_types and the
    generation case."""
    state = save_checkpoint(build, cfg, seed, folder, init=init, file_name=file_name)
    model = loaded(build, cfg, state, torch.float64)
    layer_types = list(model.config.layer_types) if getattr(model.config, "layer_types", None) else None
    tensors, loss, (ids, lens, real, loss_mask) = nll_fixture(model, row_logps, cfg["vocab_size"], seed + 100,
                                                              file_name=file_name)
    traj_loss, traj_norm = trajectory(loaded(build, cfg, state, torch.float64),
                                      lambda m: -(row_logps(m, ids, lens, real) * loss_mask).sum() / loss_mask.sum())
    tensors["traj_loss"] = (traj_loss, "F32")
    tensors["traj_grad_norm"] = (traj_norm, "F32")
    meta = {**fixture_metadata(name), "rows": "one forward per row, unpadded", "attn_implementation": ATTN,
            "layer_types": json.dumps(layer_types), **trajectory_metadata()}
    if metadata is not None:
        batch = (ids, lens, real, loss_mask)
        meta.update(metadata(state, batch, tensors["logps"][0]) if callable(metadata) else metadata)
    save_file(tensors, os.path.join(folder, "fixture.safetensors"), metadata=meta)

    case = generation_case(lambda dtype: loaded(build, cfg, state, dtype), cfg["vocab_size"], seed * 1000,
                           fresh_per_prompt=False)
    write_generate(folder, name, case, layer_types=layer_types)
    return {"state": state, "batch": (ids, lens, real, loss_mask), "logps": tensors["logps"][0], "loss": loss.item(),
            "traj_loss": traj_loss, "layer_types": layer_types, "case": case}


def fixture_main(description, default_out, names, write_model):
    """The scripts' command line: --out DIR (default default_out), then write_model(name, out) for each name on
    one thread with deterministic kernels and transformers' warnings off, so that two runs write identical bytes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.set_verbosity_error()
    for name in names:
        write_model(name, args.out)


def seed_adapter(pm, seed, b_std, what, mag_jitter=0.0):
    """A PEFT model's adapter drawn in sorted name order from one seeded generator: lora_A as PEFT draws it
    (kaiming-uniform a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), lora_B ~ N(0, b_std) instead of PEFT's zeros (so that
    d loss / d lora_A is not zero), DoRA's magnitudes times 1 + N(0, mag_jitter); exits on any other trainable tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if not p.requires_grad:
                continue
            if ".lora_A." in n:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * (1.0 / math.sqrt(p.shape[1])))
            elif ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=g) * b_std)
            elif "lora_magnitude_vector" in n:
                p.mul_(1 + mag_jitter * torch.randn(p.shape, generator=g))
            else:
                sys.exit(f"{what}: unexpected trainable parameter {n}")
    return pm
