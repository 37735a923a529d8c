// The keys preftune accepts only so that real TRL / transformers / PEFT / bitsandbytes recipes run unchanged:
// every key of TRL's method configs, ScriptArguments and ModelConfig, transformers' TrainingArguments (current
// and removed 4.x names), PEFT's LoraConfig under TRL's CLI names and BitsAndBytesConfig that changes nothing
// here, each with the reason printed once when a recipe sets it; the deprecated names that map onto a current
// key; and the table of names from other tools (PEFT, Unsloth, axolotl, LLaMA-Factory) that suggestions use
// before edit distance. Data only: config.ts reads these tables.

export type CompatKind = "bool" | "int" | "float" | "string" | "list" | "dict" | "any";

/** A key with no effect here. A value outside `quiet` prints `why` once; with `refuse`, such a value is an error. */
export interface CompatKey {
  kind: CompatKind;
  def: unknown;                  // recorded in training_args.json when not given (what runs here)
  why: string;                   // the note (or, with refuse, the reason for the error)
  quiet?: readonly unknown[];    // values that need no note (default: [def])
  refuse?: boolean;              // a value outside `quiet` asks for something not built: refused with `why`
  values?: readonly string[];    // the values the library itself accepts (others are refused as it would)
}

// Reasons, shared so that a recipe's notes come out one line per reason.
const HUB = "no effect: preftune never uploads (there is no network); the run stays in output_dir";
const TRACK = "no effect: metrics go to output_dir/metrics.jsonl and trainer_state.json";
const DIST = "no effect: one process on one machine (the native core uses every core itself)";
const DEVICE = "no effect: training always runs on the CPU";
const LOADER = "no effect: batches are built in-process from the tokenized rows";
const COMPILE = "no effect: there is nothing to compile (the native core is compiled C++)";
const LOGS = "no effect: preftune prints its own progress and log lines";
const EVAL = "no effect: evaluation computes the loss and TRL's metrics over the whole eval split";
const MEMORY = "no effect: a PyTorch memory switch; the native core recomputes attention from saved statistics and never holds the full logits";
const FP16 = "no effect: there is no fp16 compute on the CPU; training runs in fp32";
const QUANT = "no effect yet: the frozen base stays fp32 (4/8-bit quantization comes with QLoRA support), so a QLoRA recipe trains plain LoRA on an fp32 base";
const REMOTE = "no effect: no remote code is ever run; the architecture is read from config.json";
const ATTN = "no effect: the native core has one attention kernel";
const LIGER = "no effect: the lm_head + log-softmax is already fused and chunked";
const WORKERS = "no effect: tokenization runs in one process (and is cached)";
const COLUMNS = "no effect: the data reader keeps only the columns the method needs";
const MODEL_KW = "no effect: the model is built from config.json and its safetensors, in fp32";
const PAD = "no effect: padding positions are masked out of every loss and metric";
const DETERMINISTIC = "no effect: runs are deterministic already (the only randomness is the seeded data order and LoRA init)";
const MOE = "no effect: dense models only, so there is no router loss";
const REVISION = "no effect: model_name_or_path is a local folder (no hub revisions)";
const REF_ADAPTER = "no effect: under LoRA the reference is the policy with its adapter disabled (TRL's default)";
const RESUME = "no effect: resume restores the exact data position from rng_state.json";

// Each entry keeps its kind as a literal type, so the library's config classes can type these keys too.
const note = <K extends CompatKind>(kind: K, def: unknown, why: string, quiet?: readonly unknown[], values?: readonly string[]): CompatKey & { kind: K } => ({ kind, def, why, quiet, values });
const refuse = <K extends CompatKind>(kind: K, def: unknown, why: string, quiet?: readonly unknown[]): CompatKey & { kind: K } => ({ kind, def, why, quiet, refuse: true });
const LOG_LEVELS = ["passive", "debug", "info", "warning", "error", "critical", "detail"];

export const COMPAT_KEYS = {
  // transformers TrainingArguments (5.x)
  fp16: note("bool", false, FP16, [false, null]),
  bf16_full_eval: note("bool", false, "no effect: evaluation runs in fp32", [false]),
  fp16_full_eval: note("bool", false, FP16, [false]),
  tf32: note("bool", null, "no effect: TF32 is an NVIDIA GPU mode", [null, false]),
  gradient_checkpointing: note("bool", false, MEMORY, [false]),
  gradient_checkpointing_kwargs: note("dict", null, MEMORY, [null]),
  torch_compile: note("bool", false, COMPILE),
  torch_compile_backend: note("string", null, COMPILE),
  torch_compile_mode: note("string", null, COMPILE),
  use_liger_kernel: note("bool", false, LIGER),
  liger_kernel_config: note("dict", null, LIGER),
  use_cache: note("bool", false, "no effect: training never keeps a KV cache"),
  neftune_noise_alpha: refuse("float", null, "NEFTune embedding noise (neftune_noise_alpha) is not implemented; remove it or set it to null", [null]),
  torch_empty_cache_steps: note("int", null, "no effect: there is no CUDA cache to empty"),
  auto_find_batch_size: note("bool", false, "no effect: there is no out-of-memory retry; per_device_train_batch_size is used as given"),
  log_level: note("string", "passive", LOGS, ["passive"], LOG_LEVELS),
  log_level_replica: note("string", "warning", DIST, ["warning", "passive"], LOG_LEVELS),
  log_on_each_node: note("bool", true, DIST, [true]),
  logging_nan_inf_filter: note("bool", true, "no effect: a NaN or infinite loss stops the run with the step and the last checkpoint named", [true]),
  logging_dir: note("string", null, TRACK),
  include_num_input_tokens_seen: note("any", "no", "no effect: num_input_tokens_seen is always recorded in trainer_state.json and num_tokens in the logs", ["no", false, "all", true]),
  report_to: note("list", "none", TRACK, ["none", null, [], ["none"]]),
  run_name: note("string", null, TRACK),
  project: note("string", "huggingface", TRACK),
  trackio_space_id: note("string", null, TRACK),
  trackio_bucket_id: note("string", null, TRACK),
  trackio_static_space_id: note("any", null, TRACK),
  prediction_loss_only: note("bool", false, EVAL),
  eval_do_concat_batches: note("bool", true, EVAL, [true]),
  eval_use_gather_object: note("bool", false, EVAL),
  eval_accumulation_steps: note("int", null, EVAL),
  include_for_metrics: note("list", [], EVAL, [[], null]),
  batch_eval_metrics: note("bool", false, EVAL),
  save_only_model: note("bool", false, "no effect: checkpoints always hold the optimizer state as well, so any checkpoint can resume"),
  save_on_each_node: note("bool", false, DIST),
  save_safetensors: note("bool", true, "no effect: weights are always saved as safetensors", [true]),
  enable_jit_checkpoint: note("bool", false, "no effect: SIGINT/SIGTERM always save a checkpoint after the current step"),
  push_to_hub: note("bool", false, HUB),
  hub_token: note("string", null, HUB),
  hub_private_repo: note("bool", null, HUB, [null, false]),
  hub_model_id: note("string", null, HUB),
  hub_strategy: note("string", "every_save", HUB, ["every_save"], ["end", "every_save", "checkpoint", "all_checkpoints"]),
  hub_always_push: note("bool", false, HUB),
  hub_revision: note("string", null, HUB),
  load_best_model_at_end: refuse("bool", false, "load_best_model_at_end is not implemented: the final model is the last step's; set it to false (checkpoints stay in output_dir)"),
  metric_for_best_model: note("string", null, "no effect: nothing here picks a best checkpoint (load_best_model_at_end, save_strategy best and metric-driven schedulers are not built)"),
  greater_is_better: note("bool", null, "no effect: nothing here picks a best checkpoint"),
  ignore_data_skip: note("bool", false, RESUME),
  restore_callback_states_from_checkpoint: note("bool", false, "no effect: there are no callbacks"),
  full_determinism: note("bool", false, DETERMINISTIC),
  use_cpu: note("bool", false, DEVICE),
  accelerator_config: note("dict", null, DIST),
  parallelism_config: note("dict", null, DIST),
  dataloader_num_workers: note("int", 0, LOADER),
  dataloader_pin_memory: note("bool", true, LOADER, [true]),
  dataloader_persistent_workers: note("bool", false, LOADER),
  dataloader_prefetch_factor: note("int", null, LOADER),
  dataloader_multiprocessing_context: note("string", null, LOADER),
  dataloader_in_order: note("bool", true, LOADER, [true]),
  remove_unused_columns: note("bool", true, COLUMNS, [true]),
  label_names: note("list", null, COLUMNS),
  length_column_name: note("string", "length", "no effect: group_by_length measures the tokenized rows itself", ["length"]),
  ddp_find_unused_parameters: note("bool", null, DIST),
  ddp_bucket_cap_mb: note("int", null, DIST),
  ddp_broadcast_buffers: note("bool", null, DIST),
  ddp_static_graph: note("bool", null, DIST),
  ddp_backend: note("string", null, DIST),
  ddp_timeout: note("int", 1800, DIST),
  fsdp: note("any", null, DIST, [null, "", false, []]),
  fsdp_config: note("any", null, DIST),
  deepspeed: note("any", null, DIST),
  debug: note("any", "", "no effect: there are no PyTorch debug hooks", ["", null, []]),
  skip_memory_metrics: note("bool", true, "no effect: no memory profiler metrics are reported", [true]),
  do_train: note("bool", false, "no effect: preftune train always trains"),
  do_eval: note("bool", false, "no effect: evaluation follows eval_strategy (and eval_on_start)"),
  do_predict: note("bool", false, "no effect: there is no prediction pass"),
  local_rank: note("int", -1, DIST),
  average_tokens_across_devices: note("bool", true, DIST, [true]),
  label_smoothing_factor: refuse("float", 0, "TrainingArguments.label_smoothing_factor (smoothed cross-entropy) is not implemented; set it to 0 (DPO/CPO's own label_smoothing is)"),
  optim_args: note("string", null, "no effect: optimizer arguments beyond AdamW's (adam_beta1, adam_beta2, adam_epsilon, weight_decay) have no meaning here"),
  optim_target_modules: note("any", null, "no effect: GaLore/APOLLO target modules (those optimizers are not built)"),
  // transformers TrainingArguments keys removed in 5.x (still in 4.x recipes)
  overwrite_output_dir: note("bool", false, "no effect: an existing output_dir is reused; checkpoints in it are kept (it was removed in transformers 5)"),
  no_cuda: note("bool", false, DEVICE),
  use_mps_device: note("bool", false, DEVICE),
  use_ipex: note("bool", false, DEVICE),
  jit_mode_eval: note("bool", false, COMPILE),
  torchdynamo: note("string", null, COMPILE),
  fp16_opt_level: note("string", "O1", FP16, ["O1"]),
  half_precision_backend: note("string", "auto", FP16, ["auto"]),
  fp16_backend: note("string", "auto", FP16, ["auto"]),
  tpu_num_cores: note("int", null, DEVICE),
  tpu_metrics_debug: note("bool", false, DEVICE),
  xpu_backend: note("string", null, DEVICE),
  past_index: note("int", -1, "no effect: the models here keep no past state during training", [-1]),
  fsdp_min_num_params: note("int", 0, DIST),
  fsdp_transformer_layer_cls_to_wrap: note("string", null, DIST),
  sharded_ddp: note("any", "", DIST, ["", null, false, []]),
  dispatch_batches: note("bool", null, DIST),
  split_batches: note("bool", null, DIST),
  use_seedable_sampler: note("bool", true, "no effect: the data order is always seeded (seed, or data_seed)", [true]),
  adafactor: refuse("bool", false, "adafactor: true asks for the Adafactor optimizer, which is not implemented; preftune trains with AdamW (remove it)"),
  use_legacy_prediction_loop: note("bool", false, EVAL),
  include_inputs_for_metrics: note("bool", false, EVAL),
  include_tokens_per_second: note("bool", false, "no effect: tokens_per_second is always logged"),
  push_to_hub_organization: note("string", null, HUB),
  mp_parameters: note("string", "", DIST, ["", null]),
  ray_scope: note("string", "last", DIST, ["last"]),
  _n_gpu: note("int", 0, DEVICE, [0, 1]),
  // TRL method configs (current and classic ≤ 0.28)
  model_init_kwargs: note("dict", null, MODEL_KW),
  ref_model_init_kwargs: note("dict", null, MODEL_KW),
  trust_remote_code: note("bool", false, REMOTE),
  router_aux_loss_coef: note("float", 0.001, MOE, [0.001]),
  dataset_num_proc: note("int", null, WORKERS),
  padding_free: note("bool", false, "no effect: batches are right-padded and padding is masked (TRL's DPO also forces padding_free off for now)"),
  activation_offloading: note("bool", false, MEMORY),
  use_weighting: refuse("bool", false, "WPO weighting (use_weighting: true) is not implemented; set use_weighting: false"),
  ld_alpha: refuse("float", null, "LD-DPO length weighting (ld_alpha) is not implemented; remove ld_alpha", [null]),
  discopop_tau: refuse("float", 0.05, "discopop_tau other than TRL's default 0.05 is not wired into the loss yet; remove discopop_tau", [0.05, null]),
  sync_ref_model: refuse("bool", false, "TR-DPO reference syncing (sync_ref_model: true) is not implemented; set it to false"),
  ref_model_mixup_alpha: note("float", 0.6, "no effect without sync_ref_model", [0.6]),
  ref_model_sync_steps: note("int", 512, "no effect without sync_ref_model", [512]),
  pad_token: note("string", null, PAD),
  padding_value: note("int", null, PAD),
  label_pad_token_id: note("int", -100, PAD, [-100]),
  is_encoder_decoder: refuse("bool", null, "is_encoder_decoder: true is not supported: preftune trains decoder-only models", [null, false]),
  reference_free: refuse("bool", false, "reference_free: true (classic TRL) is not implemented; orpo and simpo need no reference model, and precompute_ref_log_probs avoids keeping one"),
  force_use_ref_model: note("bool", false, REF_ADAPTER),
  model_adapter_name: note("string", null, REF_ADAPTER),
  ref_adapter_name: note("string", null, REF_ADAPTER),
  use_logits_to_keep: note("bool", false, "no effect: only completion positions go through the lm_head already"),
  use_num_logits_to_keep: note("bool", false, "no effect: only completion positions go through the lm_head already"),
  max_target_length: note("int", null, "no effect: an encoder-decoder setting (decoder-only models only)"),
  tools: note("any", null, "no effect: tool schemas are not passed to the chat template yet"),
  dataset_kwargs: note("dict", null, "no effect: the dataset is always prepared (tokenized and cached) by preftune"),
  dataset_streaming: note("bool", false, "no effect: local data files are read in full"),
  streaming: note("bool", false, "no effect: local data files are read in full"),
  eos_token: note("string", null, "no effect: the tokenizer's EOS token is used"),
  dataset_batch_size: note("int", null, "no effect: a tokenization batch size of TRL SFTConfig ≤ 0.19 (tokenization here is one pass, cached)", [null, 1000]),
  num_of_sequences: note("int", 1024, "no effect: a packing buffer size of TRL SFTConfig ≤ 0.12", [1024, null]),
  chars_per_token: note("any", "<CHARS_PER_TOKEN>", "no effect: a packing estimate of TRL SFTConfig ≤ 0.12", ["<CHARS_PER_TOKEN>", null]),
  ignore_bias_buffers: note("bool", false, DIST),
  // TRL ModelConfig / alignment-handbook ModelArguments
  model_revision: note("string", "main", REVISION, ["main", null]),
  base_model_revision: note("string", null, REVISION),
  model_code_revision: note("string", null, REVISION),
  tokenizer_name_or_path: refuse("string", null, "tokenizer_name_or_path is not supported: the tokenizer is read from model_name_or_path; copy the tokenizer files there and remove it", [null]),
  attn_implementation: note("string", null, ATTN),
  load_in_4bit: note("bool", false, QUANT),
  load_in_8bit: note("bool", false, QUANT),
  bnb_4bit_quant_type: note("string", "nf4", QUANT, ["nf4"], ["nf4", "fp4"]),
  use_bnb_nested_quant: note("bool", false, QUANT),
  bnb_4bit_quant_storage: note("string", null, QUANT),
  // transformers BitsAndBytesConfig
  bnb_4bit_compute_dtype: note("string", null, QUANT),
  bnb_4bit_use_double_quant: note("bool", false, QUANT),
  llm_int8_threshold: note("float", 6.0, QUANT, [6.0]),
  llm_int8_skip_modules: note("list", null, QUANT),
  llm_int8_enable_fp32_cpu_offload: note("bool", false, QUANT),
  llm_int8_has_fp16_weight: note("bool", false, QUANT),
  // PEFT LoraConfig options TRL's ModelConfig exposes that preftune does not build
  lora_modules_to_save: refuse("list", null, "lora_modules_to_save (training full copies of lm_head / embed_tokens next to the adapter) is not supported; remove it", [null, []]),
  lora_target_parameters: refuse("list", null, "lora_target_parameters (LoRA on MoE expert parameters) is not supported; remove it", [null, []]),
  // alignment-handbook (current and 2024) keys that are not data keys
  hub_model_revision: note("string", null, HUB),
  auto_insert_empty_system_msg: note("bool", false, "no effect: the chat template is applied to the messages as given (no empty system turn is inserted)"),
  // TRL CLI launch options (trl dpo --num_processes 4, or in its YAML)
  num_processes: note("int", null, DIST, [null, 1]),
  accelerate_config: note("string", null, DIST),
} satisfies Record<string, CompatKey>;

/**
 * Deprecated or renamed keys: each maps onto its current key (with the value converted where the meaning moved)
 * and prints a note naming the current key.
 */
export interface Alias { to: string; from: string; kind?: CompatKind; convert?: (v: unknown) => unknown }
export const ALIASES: Record<string, Alias> = {
  torch_dtype: { to: "dtype", from: "TRL ModelConfig before 0.23, then an alias until 0.27; transformers 4" },
  evaluation_strategy: { to: "eval_strategy", from: "transformers before 4.46" },
  per_gpu_train_batch_size: { to: "per_device_train_batch_size", from: "transformers 4, removed in 5" },
  per_gpu_eval_batch_size: { to: "per_device_eval_batch_size", from: "transformers 4, removed in 5" },
  max_seq_length: { to: "max_length", from: "TRL SFTConfig before 0.20" },
  use_liger: { to: "use_liger_kernel", from: "TRL SFTConfig before 0.16" },
  push_to_hub_model_id: { to: "hub_model_id", from: "transformers 4, removed in 5" },
  push_to_hub_token: { to: "hub_token", from: "transformers 4, removed in 5" },
  preprocessing_num_workers: { to: "dataset_num_proc", from: "alignment-handbook 2023–2024" },
  use_flash_attention_2: { to: "attn_implementation", from: "alignment-handbook 2023–2024, transformers before 4.36", kind: "bool", convert: (v) => (v === true ? "flash_attention_2" : null) },
  gradient_checkpointing_use_reentrant: { to: "gradient_checkpointing_kwargs", from: "TRL ScriptArguments before 0.12", kind: "bool", convert: (v) => ({ use_reentrant: v }) },
  evaluate_during_training: { to: "eval_strategy", from: "transformers 3", kind: "bool", convert: (v) => (v === true ? "steps" : "no") },
};

/**
 * Keys from other tools or other layers of the stack that users put in TRL recipes: the key to use instead (or
 * null when there is none) and why. Checked before edit distance, so a suggestion is about meaning, not spelling.
 */
export const MISNAMES: Record<string, readonly [string | null, string]> = {
  r: ["lora_r", `PEFT's LoraConfig r, under TRL's CLI name`],
  target_modules: ["lora_target_modules", `PEFT's name; TRL's CLI name has the lora_ prefix`],
  modules_to_save: ["lora_modules_to_save", `PEFT's name; not supported here`],
  task_type: ["lora_task_type", `PEFT's name`],
  lora_rank: ["lora_r", `LLaMA-Factory's name`],
  lora_target: ["lora_target_modules", `LLaMA-Factory's name; "all" there is "all-linear" here`],
  bias: [null, `PEFT's LoraConfig bias has no TRL config key (TRL always builds LoRA with bias "none", as preftune does); remove it`],
  lora_bias: [null, `TRL's ModelConfig has no lora_bias (adapters here have no bias); remove it`],
  init_lora_weights: [null, `TRL's ModelConfig does not expose init_lora_weights (PEFT's default init is used); remove it`],
  loftq_config: [null, `LoftQ is not supported; remove it`],
  random_state: ["seed", `Unsloth's get_peft_model name`],
  use_gradient_checkpointing: ["gradient_checkpointing", `Unsloth / PEFT prepare_model_for_kbit_training name`],
  orpo_alpha: ["beta", `ORPO's λ is beta in TRL; orpo_alpha is the ORPO paper code's and axolotl's name`],
  lambda: ["beta", `ORPO's λ is beta in TRL`],
  pref_beta: ["beta", `LLaMA-Factory's name`],
  dpo_beta: ["beta", ``],
  pref_loss: ["loss_type", `LLaMA-Factory's name`],
  dpo_loss_type: ["loss_type", ``],
  rl: ["method", `axolotl's name`],
  stage: ["method", `LLaMA-Factory's name`],
  finetuning_type: ["use_peft", `LLaMA-Factory's finetuning_type: lora`],
  lr: ["learning_rate", ``],
  batch_size: ["per_device_train_batch_size", ``],
  train_batch_size: ["per_device_train_batch_size", ``],
  micro_batch_size: ["per_device_train_batch_size", `axolotl's name`],
  eval_batch_size: ["per_device_eval_batch_size", ``],
  epochs: ["num_train_epochs", ``],
  num_epochs: ["num_train_epochs", ``],
  gradient_accumulation: ["gradient_accumulation_steps", ``],
  cutoff_len: ["max_length", `LLaMA-Factory's name`],
  sequence_len: ["max_length", `axolotl's name`],
  max_seq_len: ["max_length", ``],
  max_len: ["max_length", ``],
  base_model: ["model_name_or_path", `axolotl's name`],
  model: ["model_name_or_path", ``],
  model_name: ["model_name_or_path", ``],
  model_path: ["model_name_or_path", ``],
  data_path: ["dataset_name", ``],
  train_file: ["dataset_name", ``],
  dataset_path: ["dataset_name", ``],
  output: ["output_dir", ``],
  out_dir: ["output_dir", ``],
  output_path: ["output_dir", ``],
  text_column: ["dataset_text_field", ``],
  truncation_side: ["truncation_mode", `left → keep_end, right → keep_start`],
  warmup: ["warmup_steps", `a count, or a fraction below 1`],
  scheduler: ["lr_scheduler_type", ``],
  optimizer: ["optim", ``],
  grad_clip: ["max_grad_norm", ``],
  gradient_clipping: ["max_grad_norm", ``],
  clip_grad_norm: ["max_grad_norm", ``],
  precision: ["dtype", `the saved model's dtype; bf16 / fp16 are the compute switches`],
  config: [null, `a positional config file (preftune train FILE) or --config FILE on the command line`],
};
