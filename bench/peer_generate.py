#!/usr/bin/env python3
# The PyTorch peer of preftune's decoding benchmark: greedy generation with transformers' own generate()
# (KV cache, sdpa attention) on a randomly initialised decoder of a HF config's shape (by default SmolLM2-135M:
# LlamaForCausalLM, vocab 49152, hidden 576, 30 layers, 9 heads / 3 KV heads, intermediate 1536, tied).
# Prints one JSON line per (dtype, measurement):
#   decode  at each --batches size: a --prompt-tokens prompt, --new-tokens new tokens (min_new_tokens too, so
#           no row stops early); decode rate = tokens after each row's first / seconds after the first token
#   ttft    at batch 1: time to the first token of a --ttft-prompt-tokens prompt (the prefill)
# Not part of preftune's runtime. Needs a python3 with torch 2.x and transformers 5.x (set PREFTUNE_PYTHON to
# choose it when another script starts this one).
#   python3 bench/peer_generate.py [--dtype float32|bfloat16|both] [--threads 2] [--batches 1,8] [--repeats 1]
# Every measurement runs in a fresh child process (unless --same-process), so that peak_rss_mb is that
# measurement's own peak and not the largest of everything run before it.
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the repo

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = ("float32", "bfloat16")


def env_int(name):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") and v.isdigit() else v


def build_model(config_path, dtype_name, attn, seed):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with open(config_path) as f:
        cfg = json.load(f)
    model_type = cfg.pop("model_type")
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    config = AutoConfig.for_model(model_type, **cfg)
    torch.manual_seed(seed)
    # Created directly in the target dtype (no fp32 copy first, which would inflate the bf16 peak RSS), with
    # transformers' own initialisation: N(0, initializer_range) matrices, unit norms.
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype_name), attn_implementation=attn)
    model.eval()
    model.requires_grad_(False)
    return model


def process_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy_seconds():
    """Non-idle CPU seconds of the whole machine since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class StepClock:
    """A generate() streamer that timestamps every put(): the first is the prompt, then one per new token."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def timed_generate(model, ids, new_tokens):
    """(seconds to the first new token, seconds from it to the last, new tokens per row)."""
    import torch

    clock = StepClock()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0, streamer=clock)
    t_end = time.perf_counter()
    produced = out.shape[1] - ids.shape[1]
    if produced != new_tokens or len(clock.times) != new_tokens + 1:
        sys.exit(f"peer_generate.py: generate() made {produced} tokens ({len(clock.times) - 1} streamed), expected {new_tokens}")
    return clock.times[1] - t0, t_end - clock.times[1], produced


def measure(args, dtype_name, what, batch):
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    model = build_model(args.config, dtype_name, args.attn, args.seed)
    V = model.config.vocab_size
    prompt = args.prompt_tokens if what == "decode" else args.ttft_prompt_tokens
    new = args.new_tokens if what == "decode" else 1
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(1, V, (batch, prompt), generator=g)
    timed_generate(model, ids, new)  # warm-up, untimed
    cpu0, busy0, wall0 = process_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    runs = [timed_generate(model, ids, new) for _ in range(args.repeats)]
    wall, cpu = time.perf_counter() - wall0, process_cpu_seconds() - cpu0
    busy = machine_busy_seconds()
    others = None if busy is None or busy0 is None else max(0.0, (busy - busy0) - cpu) / (wall * (os.cpu_count() or 1))
    ttft = statistics.median(r[0] for r in runs)
    line = {
        "impl": "transformers-generate",
        "measure": what,
        "dtype": dtype_name,
        "batch": batch,
        "prompt_tokens": prompt,
        "new_tokens": new,
        # all rows together: batch * (new_tokens - 1) / seconds after the first token (median over repeats)
        "decode_tokens_per_second": None,
        "decode_tokens_per_second_per_row": None,
        "ttft_ms": ttft * 1e3,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": torch.get_num_threads(),
        # CPU seconds this process used during the timed runs / (wall seconds * threads)
        "cpu_share": cpu / (wall * torch.get_num_threads()),
        # CPU seconds every other process on the machine used meanwhile / (wall seconds * CPUs), from
        # /proc/stat (null elsewhere): above a few percent, something else competed for the cores and the
        # numbers are not comparable
        "other_load": others,
        "omp_num_threads": env_int("OMP_NUM_THREADS"),
        "attn_implementation": args.attn,
        "repeats": args.repeats,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if what == "decode":
        rates = [batch * (n - 1) / d for _, d, n in runs]
        rate = statistics.median(rates)
        line["decode_tokens_per_second"] = rate
        line["decode_tokens_per_second_per_row"] = rate / batch
        line["decode_runs_tokens_per_second"] = rates
    else:
        line["ttft_runs_ms"] = [r[0] * 1e3 for r in runs]
        line["prefill_tokens_per_second"] = batch * prompt / ttft
    print(json.dumps(line), flush=True)


def plan(args):
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    jobs = []
    for d in dtypes:
        jobs += [(d, "decode", b) for b in args.batches]
        if args.ttft_prompt_tokens > 0:
            jobs.append((d, "ttft", 1))
    return jobs


def main():
    ap = argparse.ArgumentParser(description="transformers generate() decoding peer (JSON lines on stdout)")
    ap.add_argument("--config", default=os.path.join(HERE, "configs", "smollm2-135m.json"), help="HF config.json")
    ap.add_argument("--dtype", choices=DTYPES + ("both",), default="both")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes for the decode measurement")
    ap.add_argument("--prompt-tokens", type=int, default=16, help="prompt length of the decode measurement")
    ap.add_argument("--new-tokens", type=int, default=128, help="new tokens per row in the decode measurement")
    ap.add_argument("--ttft-prompt-tokens", type=int, default=512, help="prompt of the time-to-first-token measurement (0: skip it)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-up; the median is reported")
    ap.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--same-process", action="store_true", help="run every measurement in this process (peak RSS then accumulates)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: dtype:measure:batch, run in a child process
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.repeats < 1 or any(b < 1 for b in args.batches):
        sys.exit("peer_generate.py: --new-tokens must be >= 2, --prompt-tokens, --repeats and every batch >= 1")

    if args.one:
        d, what, b = args.one.split(":")
        measure(args, d, what, int(b))
        return
    for d, what, b in plan(args):
        if args.same_process:
            measure(args, d, what, b)
            continue
        argv = [a for a in sys.argv[1:] if a != "--same-process"]
        r = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--one", f"{d}:{what}:{b}"],
                           stdout=subprocess.PIPE, text=True)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        if r.returncode != 0:
            sys.exit(f"peer_generate.py: the {d} {what} batch {b} measurement failed (exit {r.returncode})")


if __name__ == "__main__":
    main()
