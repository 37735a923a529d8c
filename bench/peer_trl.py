#!/usr/bin/env python3
# TRL's own ORPOTrainer as the peer of `preftune bench`: a randomly initialised transformers model of the given
# config.json (any family: its model_type picks the class), trained on random token pairs by trl's ORPOTrainer (LoRA through PEFT with --lora), timed per optimizer
# step by a callback, printed as ONE JSON line in the schema of `preftune bench`.
# Not part of preftune's runtime; needs a python with torch, transformers, trl and peft.
#   python bench/peer_trl.py --config bench/configs/smollm2-135m.json --pairs 2 --seq 512 --steps 3 --warmup 1 \
#       --threads 2 --precision fp32|bf16 [--base-dtype bf16] [--gradient-checkpointing] [--lora --lora-r 16]
# Shape of a step: --pairs prompt/chosen/rejected triples, each sequence exactly --seq tokens (a prompt of seq/2
# words, answers of seq/2 - 1 words plus the EOS TRL appends), concatenated by TRL into 2 * pairs rows, so tokens
# per step = 2 * pairs * seq, as `preftune bench --batch 2*pairs --seq seq`. AdamW (TrainingArguments' default
# optimizer), max_grad_norm 1.0, constant learning rate 1e-5, no dropout.
# The tokenizer is a word-level one over the words w0 .. w{V-1} (one token per word), so the ids are uniform
# random like the preftune side's; tokenizing the small dataset happens before the timed steps.
import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time

sys.dont_write_bytecode = True
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def word_tokenizer(vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w0", pad_token="w0", unk_token="w0")


def flops_per_step(n_matmul, lora_params, c, B, T):
    """The formula of `preftune bench` (src/cli/bench.ts flopsPerStep): 6 per matmul parameter per token, or with
    LoRA 4 per frozen base parameter plus 6 per adapter parameter, plus causal attention 6 * L * B * T^2 * NH * HS."""
    attention = 6 * c.num_hidden_layers * B * T * T * c.num_attention_heads * (c.hidden_size // c.num_attention_heads)
    if lora_params:
        return 4 * n_matmul * B * T + 6 * lora_params * B * T + attention
    return 6 * n_matmul * B * T + attention


def main():
    ap = argparse.ArgumentParser(description="TRL ORPOTrainer peer benchmark (one JSON line on stdout)")
    ap.add_argument("--config", required=True, help="HF config.json")
    ap.add_argument("--pairs", type=int, default=2, help="preference pairs per step (2 rows each)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per sequence")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: TrainingArguments(bf16=True), CPU autocast")
    ap.add_argument("--base-dtype", choices=["fp32", "bf16"], default="fp32", help="dtype the model is created in (bf16: the frozen base under LoRA)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="ORPOConfig's default is on")
    ap.add_argument("--lora", action="store_true", help="PEFT LoRA on all-linear (the seven projections of a Llama)")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=None, help="default 2 * r")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.seq < 4 or args.seq % 2 or args.pairs < 1 or args.steps < 1:
        sys.exit("peer_trl.py: --seq must be even and >= 4, --pairs and --steps >= 1")
    if args.base_dtype == "bf16" and not args.lora:
        sys.exit("peer_trl.py: --base-dtype bf16 is for a frozen base under --lora (full training keeps fp32 masters)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    with open(args.config) as f:
        cj = json.load(f)
    cfg = AutoConfig.for_model(cj.get("model_type", "llama"),
                               **{k: v for k, v in cj.items() if k not in ("architectures", "model_type", "transformers_version", "torch_dtype", "dtype")})
    dtype = torch.bfloat16 if args.base_dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_config(cfg).to(dtype)
    model.config.use_cache = False
    n_matmul = sum(p.numel() for p in model.parameters())
    if not cfg.tie_word_embeddings:
        n_matmul -= model.get_input_embeddings().weight.numel()

    rng = random.Random(args.seed)
    V, half = cfg.vocab_size, args.seq // 2
    words = lambda n: " ".join(f"w{rng.randrange(1, V)}" for _ in range(n))  # noqa: E731 (w0 is EOS/pad)
    n_rows = args.pairs * (args.warmup + args.steps)
    data = Dataset.from_list([{"prompt": words(half), "chosen": " " + words(half - 1), "rejected": " " + words(half - 1)} for _ in range(n_rows)])

    peft_config = None
    if args.lora:
        from peft import LoraConfig
        peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                                 target_modules="all-linear")

    out_dir = tempfile.mkdtemp(prefix="peer_trl_")
    targs = ORPOConfig(
        output_dir=out_dir, per_device_train_batch_size=args.pairs, gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=1.0, weight_decay=0.0, max_length=args.seq, beta=0.1, bf16=args.precision == "bf16",
        gradient_checkpointing=args.gradient_checkpointing, use_cpu=True, report_to=[], save_strategy="no",
        logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0, seed=args.seed, remove_unused_columns=False,
    )

    times, marks = [], {}

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            marks["t0"] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - marks["t0"])

    trainer = ORPOTrainer(model=model, args=targs, train_dataset=data, processing_class=word_tokenizer(V), peft_config=peft_config, callbacks=[Timer()])
    row = trainer.train_dataset[0]
    tokens_per_row = len(row["chosen_input_ids"])
    if tokens_per_row != args.seq or len(row["rejected_input_ids"]) != args.seq:
        sys.exit(f"peer_trl.py: sequences came out {tokens_per_row}/{len(row['rejected_input_ids'])} tokens, not {args.seq}")
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    trainer.train()

    timed = times[args.warmup:]
    sps = statistics.median(timed)
    B, T = 2 * args.pairs, args.seq
    flops = flops_per_step(n_matmul, trainable if args.lora else 0, cfg, B, T)
    print(json.dumps({
        "impl": "trl",
        "trl": __import__("trl").__version__, "transformers": __import__("transformers").__version__,
        "torch": torch.__version__, "peft": __import__("peft").__version__ if args.lora else None,
        "precision": args.precision, "base_dtype": args.base_dtype, "gradient_checkpointing": args.gradient_checkpointing,
        "lora": {"r": args.lora_r, "lora_alpha": args.lora_alpha or 2 * args.lora_r, "trainable_params": trainable} if args.lora else None,
        "tokens_per_second": B * T / sps, "seconds_per_step": sps, "gflops": flops / sps / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "openblas_threads": os.environ.get("OMP_NUM_THREADS"),
        "batch": B, "seq": T, "steps": args.steps, "warmup": args.warmup, "step_seconds": timed,
        "params": sum(p.numel() for p in trainer.model.parameters()), "flops_per_step": flops,
    }))


if __name__ == "__main__":
    main()
