# What the fixture writers that run transformers' own modelling classes share (rope_fixtures.py,
# window_fixtures.py): seeded weights and batches, the checkpoint files, label-aligned log-probs, the masked-NLL
# gradient fixture, the greedy-generation search with its generate.json, and the command line.
# Not a fixture writer and not the hand-written model's helpers (tiny_models.py): each script builds its own model
# class and writes its own extra tensors and metadata.
import argparse
import json
import os
import sys

import torch
import transformers

from generate_fixtures import to_json
from safetensors_io import save_file

LENGTHS = [40, 33, 21]          # padded to the longest row, as TRL's collators pad
PROMPT_LENGTH, MAX_NEW_TOKENS, MIN_MARGIN, MAX_ATTEMPTS = 18, 16, 1e-3, 2000
ATTN = "eager"
LOSS = "-sum(logps * loss_mask) / sum(loss_mask)"


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


def save_checkpoint(build, cfg, seed, folder):
    """config.json (indent 2, sorted keys) and model.safetensors (F32) of a seeded float32 model built by
    build(cfg, dtype); returns its state dict without the RoPE inv_freq buffers, to load into other dtypes."""
    os.makedirs(folder, exist_ok=True)
    model32 = build(cfg, torch.float32)
    init_weights(model32, seed)
    state = {k: v.clone() for k, v in model32.state_dict().items() if not k.endswith("inv_freq")}
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file({n: (p, "F32") for n, p in model32.named_parameters()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})
    return state


def loaded(build, cfg, state, dtype, strict=False):
    """build(cfg, dtype) with the checkpoint's state loaded (strict: the state must hold every key the model saves)."""
    model = build(cfg, dtype)
    model.load_state_dict(state, strict=strict)
    return model


def nll_fixture(model, logps_fn, vocab, seed):
    """The masked NLL (every real token from position 2 on) of a seeded LENGTHS batch, backpropagated.
    logps_fn(model, ids, lens, real) -> label-aligned (B, T) log-probs. Returns (tensors with input_ids, lengths,
    loss_mask, logps, loss and grad.<name> of every parameter; loss; (ids, lens, real, loss_mask))."""
    ids, lens, real = batch(LENGTHS, vocab, seed)
    loss_mask = (real & (torch.arange(ids.shape[1]) >= 2)[None, :]).to(torch.float64)
    logps = logps_fn(model, ids, lens, real)
    loss = -(logps * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    tensors = {
        "input_ids": (ids, "I32"), "lengths": (lens, "I32"), "loss_mask": (loss_mask, "F32"),
        "logps": (logps.detach(), "F32"), "loss": (loss.detach().reshape(()), "F32"),
    }
    for n, p in model.named_parameters():
        tensors["grad." + n] = (p.grad, "F32")
    return tensors, loss, (ids, lens, real, loss_mask)


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
