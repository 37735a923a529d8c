// The one training run every method shares, as a Trainer of named steps (prepare data, plan, resume, load the
// policy, build the reference, train step, evaluate, checkpoint, save), with the HF Trainer's step arithmetic:
// micro-batches of per_device_train_batch_size, gradient accumulation (the epoch's last step takes the
// remainder), clipping, AdamW, the LR schedule, logging averaged over the interval, eval with the eval_ prefix
// (and, with generate_during_eval, completions of a few eval prompts: samples.ts), checkpoints, exact resume,
// guards, and the final model in output_dir. With use_peft only a LoRA adapter trains (the reference is then the
// policy with its adapter disabled) and output_dir gets a PEFT adapter folder. The per-batch math is
// objectives.ts; the rows come from data.ts (dataset keys through src/data, SFT packing, in-memory sources, or
// pre-tokenized rows passed in); packed SFT rows count as one row each for the batch size and step plan.
// Not the CLI and not the library's TRL-shaped classes (src/api), which both run this.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { chooseCompute, NativeModel, setNumThreads, type LoraAdapter, type LogpModel, type Optimizer, type Trainable } from "../core/native.ts";
import { createOptimizer, optimizerBytesPerParameter } from "../core/adamw8bit.ts";
import type { DecoderConfig } from "../core/types.ts";
import { collatePairs, collateUnpaired, withKlCompletions, type PairBatch, type UnpairedBatch } from "../data/collate.ts";
import { collatePacked, packedLengths } from "../data/packing.ts";
import { pairLengths, unpairedLengths } from "../data/sampler.ts";
import type { TokenizedPair, TokenizedUnpaired } from "../data/tokenize.ts";
import { loadWeightsInto, loadWeightsIntoBf16, openModelFolder, saveDtypeOf, storedDtype, type ModelFiles, type SaveDtype } from "../models/checkpoint.ts";
import { initLora, resolveTargetModules, saveMergedModel } from "../models/peft.ts";
import { isEmbeddingTensor } from "../core/arch.ts";
import { needsReference, pairedStep, sftStep, unpairedStep, type MethodConfig, type Reference, type StepOutput } from "./objectives.ts";
import { gatherPaired, gatherUnpaired, loadReference, loadReferenceLogps, precomputeReference, saveReferenceLogps, type IndexedBatch, type RefTable } from "./reference.ts";
import { copyTokenizerFiles, latestCheckpoint, loadCheckpointWeights, readCheckpoint, recoverOutputDir, rotateCheckpoints, saveCheckpoint, saveFinalAdapter, saveFinalModel, writeJsonFile, type CheckpointState } from "./checkpoint.ts";
import { effectiveLoraDropout, type TrainConfig } from "./config.ts";
import { loadQuantizedPolicy, planWeightBytes, quantPlan } from "./qlora.ts";
import { asDivergence, checkFinite, SIGNAL_EXIT_CODES, TrainingDivergedError, watchStopSignals, type StopRequest } from "./guards.ts";
import { addMetrics, appendMetrics, emptySums, meanMetrics, Progress, rewriteMetricsFile, type LogEntry, type MetricSums } from "./metrics.ts";
import { allFinite, cardHyperparameters, checkOutputDir, isPacked, methodConfig, refFingerprint, tick } from "./run-helpers.ts";
import { loadTrainData, type DataSources, type Rows, type TrainData } from "./data.ts";
import { configEosIds, evalSampler, resetCompletions, samplePrompts } from "./samples.ts";
import { learningRate, planSteps, resolveInterval, warmupSteps, type ScheduleConfig } from "./schedule.ts";
import { batchOrder, initialTrainerState, orderMismatch, type DataOrderState, type LoopState, type TrainerStateJson } from "./state.ts";
import { ktoWeightWarning } from "../losses/kto.ts";
import { ensureDir, pausePoint } from "../util/durable.ts";
import { acquireRunLock, type RunLock } from "../util/lock.ts";
import { DataParallel, type GlobalStep } from "../parallel/shard.ts";


export interface TrainOptions {
  rows?: TokenizedPair[] | TokenizedUnpaired[];               // pre-tokenized training rows: skips the tokenizer and dataset (packed for sft with packing)
  evalRows?: TokenizedPair[] | TokenizedUnpaired[] | null;    // pre-tokenized eval rows (with rows: no eval unless given)
  padTokenId?: number;             // with rows (default 0); otherwise the tokenizer's
  quiet?: boolean;                 // no console output
  print?: (line: string) => void;  // console sink (default stderr)
  handleSignals?: boolean;         // SIGINT/SIGTERM save a checkpoint and stop (default true)
  onLog?: (entry: LogEntry) => void;
  onStep?: (step: number) => void | Promise<void>;   // after each optimizer step's log/eval/save
  notes?: string[];                // printed at the start (e.g. ignored config keys)
  onEvaluate?: (metrics: LogEntry) => void;          // after each evaluation, with its eval_* entry
  signal?: AbortSignal;            // aborting stops the run as SIGINT does: a checkpoint after the current step
  model?: NativeModel;             // the policy, already loaded from model_name_or_path (the caller owns and frees it)
  sources?: DataSources;           // the training (and eval) rows as in-memory sources instead of the dataset keys
  evaluateOnly?: boolean;          // evaluate once on the eval rows and return: nothing trained, nothing written
}

export interface TrainResult {
  outputDir: string;
  globalStep: number;
  epoch: number;
  logHistory: LogEntry[];
  lastCheckpoint: string | null;
  stoppedBy: NodeJS.Signals | "abort" | null;
  exitCode: number;                // 0, or 130 (SIGINT) / 143 (SIGTERM) after saving
}


/**
 * One training run as named steps, each a method a subclass may override: setup (output_dir, model folder
 * checks, the lock), prepareData, planSteps, readResume, loadPolicy, buildReference, trainStep (one optimizer
 * step), evaluate, checkpoint, saveFinal; run() composes them into the HF Trainer's loop. Who writes files and
 * logs is one decision, isMainProcess(), read once into `writes`: an evaluation-only run writes nothing, and a
 * multi-process run (mpirun: `dp`, src/parallel) gives it to its rank 0 alone; every rank reads its part of each
 * global micro-batch and the gradients are summed over the ranks before the step. train() below is the plain way in.
 */
export class Trainer {
  readonly c: TrainConfig;
  protected readonly o: TrainOptions;
  readonly outputDir: string;
  readonly modelDir: string;
  protected readonly progress: Progress;
  /** Whether this process writes files (output_dir, metrics, checkpoints, the final model) and logs. */
  readonly writes: boolean;
  protected lock: RunLock | null = null;
  protected stop: StopRequest | null = null;
  protected training = false;
  /** Data parallelism under mpirun (one process otherwise: every call the identity). */
  protected readonly dp: DataParallel;

  // the model folder (setup)
  protected dcfg!: DecoderConfig;
  protected configJson!: Record<string, unknown>;
  protected modelFiles!: ModelFiles;
  protected saveDtype!: SaveDtype;
  protected maxPos!: number;
  // the data (prepareData)
  data!: TrainData;
  protected unpaired = false;
  protected ktoKl = false;
  // steps and schedule (planSteps)
  protected plan!: ReturnType<typeof planSteps>;
  protected total = 0;
  protected sched!: ScheduleConfig;
  protected loggingSteps = 0;
  protected evalSteps = 0;
  protected saveSteps = 0;
  protected lengths: ArrayLike<number> | undefined;
  protected orderBase!: Omit<DataOrderState, "epoch" | "position" | "batches" | "epoch_end_done">;
  protected ck: CheckpointState | null = null;
  // the model (loadPolicy) and the reference (buildReference)
  protected policy: NativeModel | null = null;
  protected lora: LoraAdapter | null = null;
  protected trainable!: Trainable;
  protected opt!: Optimizer;
  protected mcfg!: MethodConfig;
  protected padOpts!: { padTokenId: number; padToMultipleOf?: number };
  protected reference: Reference = { kind: "none" };
  protected refModel: NativeModel | null = null;
  protected trainTable: RefTable | null = null;
  protected evalTable: RefTable | null = null;
  protected sample: ((step: number) => void) | null = null;
  protected flopParams = 0;
  protected batchNumel = 0;
  // where the loop stands
  state!: TrainerStateJson;
  protected loop!: LoopState;
  protected epoch = 0;
  protected position = 0;
  protected ended = false;
  lastCheckpoint: string | null = null;
  protected tStart = 0;
  protected tInterval = 0;
  protected gradNorm = 0;
  protected lrUsed = 0;

  constructor(config: TrainConfig, o: TrainOptions = {}) {
    this.c = config;
    this.o = o;
    this.outputDir = resolve(config.output_dir!);
    this.modelDir = config.model_name_or_path!;
    this.dp = DataParallel.forRun();
    this.writes = this.isMainProcess();
    this.progress = new Progress(!!o.quiet || !this.writes, config.disable_tqdm, o.print);   // only the writer prints
  }

  /** The one decision of who writes files and prints progress and logs (see the class comment). */
  protected isMainProcess(): boolean { return !this.o.evaluateOnly && this.dp.isMainProcess; }
  protected print(l: string): void { this.progress.note(l); }
  /** What stops the run: a signal, or the caller's AbortSignal. */
  protected stopReason(): NodeJS.Signals | "abort" | null { return this.stop?.signal ?? (this.o.signal?.aborted ? "abort" : null); }
  protected get model(): NativeModel { return this.policy!; }

  /** A signal that arrived while loading stops the run here: nothing was trained, so there is nothing to save. */
  protected async stoppedWhile(phase: string): Promise<TrainResult | null> {
    await tick();   // lets a signal handler run
    const why = this.stopReason();
    if (!why) return null;
    this.print(`stopped by ${why} while ${phase}: nothing was trained and nothing was saved`);
    return { outputDir: this.outputDir, globalStep: 0, epoch: 0, logHistory: [], lastCheckpoint: null, stoppedBy: why, exitCode: SIGNAL_EXIT_CODES[why] ?? 1 };
  }

  /**
   * Before anything is written or allocated: where the run writes, and the model folder checked against itself
   * (config.json against the weight headers) and against this machine's memory; then output_dir and its lock.
   */
  protected setup(): void {
    const c = this.c, o = this.o;
    for (const n of o.notes ?? []) this.print(`note: ${n}`);
    checkOutputDir(this.outputDir, this.modelDir);
    const withRefModel = needsReference(c.method) && !c.use_peft;   // a second copy (or one while precomputing)
    const base = openModelFolder(this.modelDir, { training: !c.use_peft, optimizerBytes: optimizerBytesPerParameter(c.optim), extraCopies: withRefModel ? 1 : 0, weightBytesOf: planWeightBytes(quantPlan(c, "F32")) });
    if (base.memoryWarning) this.print(`note: ${base.memoryWarning}`);
    this.dcfg = base.config;
    this.configJson = base.configJson;
    this.modelFiles = base.files;
    // the saved model's dtype: the run's dtype, else the input checkpoint's (transformers' dtype="auto")
    this.saveDtype = c.dtype === "auto" ? storedDtype(this.configJson, this.modelFiles) : saveDtypeOf(c.dtype) ?? "F32";
    // A sequence longer than the model's positions would stop the run at its first long batch (the core refuses
    // it with the numbers); when max_length already allows that, say so before tokenizing. (Pre-tokenized rows
    // are not truncated, and max_length null means no limit: the core's own check covers those.)
    this.maxPos = this.dcfg.maxPositionEmbeddings;
    if (!o.rows && c.max_length != null && c.max_length > this.maxPos)
      throw new Error(`max_length ${c.max_length} is more than ${this.modelDir}'s max_position_embeddings (${this.maxPos}): set max_length to at most ${this.maxPos}`);
    const threads = this.dp.threads(c.threads);   // under mpirun: this machine's cores ÷ its ranks
    if (threads > 0) setNumThreads(threads);
    const dpLine = this.dp.describe(c.per_device_train_batch_size, c.gradient_accumulation_steps, threads);
    if (dpLine) this.print(dpLine);
    if (this.writes) {
      ensureDir(this.outputDir, "output_dir");
      this.lock = acquireRunLock(this.outputDir, "output_dir");
    }
    this.stop = o.handleSignals === false ? null : watchStopSignals((sig) => this.print(this.training
      ? `${sig}: saving a checkpoint after this step, then stopping (${sig} again quits without saving)`
      : `${sig}: stopping before training starts (${sig} again quits at once)`));
  }

  /** Recovers output_dir after a crash and records the run's resolved config (every key) and its notes. */
  protected startOutputDir(): void {
    if (this.lock?.tookOver) this.print(`note: took over the lock of ${this.outputDir} from ${this.lock.tookOver}`);
    if (!this.writes) return;
    for (const t of recoverOutputDir(this.outputDir)) this.print(`${this.outputDir}: ${t}`);
    writeJsonFile(join(this.outputDir, "training_args.json"), { ...this.c, preftune_notes: this.o.notes ?? [] });
  }

  /** The training (and eval) rows, tokenized for the method; KTO's KL completions fixed per row. */
  protected async prepareData(): Promise<TrainData> {
    const c = this.c, o = this.o;
    const needEval = c.eval_strategy !== "no" || c.eval_on_start || !!o.evaluateOnly;
    const data = await loadTrainData(c, { rows: o.rows, evalRows: o.evalRows, padTokenId: o.padTokenId, quiet: o.quiet || !this.writes, sources: o.sources }, needEval, (l) => this.print(l));
    if (data.rows.length === 0) throw new Error(`${data.describe}: no training rows`);
    if (needEval && !data.evalRows?.length) throw new Error(`eval_strategy is "${c.eval_strategy}"${c.eval_on_start ? " / eval_on_start" : ""} but no eval rows were given`);
    if (c.generate_during_eval && !data.tokenizer) throw new Error(`generate_during_eval needs the model's tokenizer to turn completions into text, and ${this.modelDir} has no tokenizer.json (pre-tokenized rows were given); add the tokenizer files to the model folder or set generate_during_eval: false`);
    this.unpaired = data.kind === "unpaired";
    this.ktoKl = c.method === "kto" && c.loss_type === "kto";
    if (c.method === "kto") {
      const rows = data.rows as TokenizedUnpaired[];
      const desirable = rows.filter((r) => r.label).length;
      const warning = ktoWeightWarning(desirable, rows.length - desirable, c.desirable_weight, c.undesirable_weight);
      if (warning) this.print(`note: ${warning}`);
    }
    if (this.ktoKl) {
      data.rows = withKlCompletions(data.rows as TokenizedUnpaired[], c.per_device_train_batch_size);
      if (data.evalRows) data.evalRows = withKlCompletions(data.evalRows as TokenizedUnpaired[], c.per_device_eval_batch_size);
    }
    return data;
  }

  /** Steps, schedule, log/eval/save intervals and the data order's settings. */
  protected planSteps(): void {
    const c = this.c, data = this.data;
    // per_device_train_batch_size is per rank; the data order is made of global micro-batches of gbs rows
    const bs = c.per_device_train_batch_size, ga = c.gradient_accumulation_steps, gbs = bs * this.dp.world;
    this.plan = planSteps(data.rows.length, gbs, ga, c.max_steps, c.num_train_epochs, c.dataloader_drop_last);
    const total = this.total = this.plan.totalSteps;
    this.sched = { type: c.lr_scheduler_type, baseLr: c.learning_rate, warmupSteps: warmupSteps(total, c.warmup_steps, c.warmup_ratio), totalSteps: total, kwargs: c.lr_scheduler_kwargs };
    this.loggingSteps = resolveInterval(c.logging_steps, total);
    this.evalSteps = resolveInterval(c.eval_steps ?? c.logging_steps, total);
    this.saveSteps = resolveInterval(c.save_steps, total);
    this.lengths = !c.group_by_length ? undefined
      : isPacked(data.rows) ? packedLengths(data.rows) : this.unpaired ? unpairedLengths(data.rows as TokenizedUnpaired[]) : pairLengths(data.rows as TokenizedPair[]);
    this.orderBase = { seed: c.data_seed ?? c.seed, rows: data.rows.length, batch_size: gbs, shuffle: c.train_sampling_strategy !== "sequential", group_by_length: c.group_by_length, drop_last: c.dataloader_drop_last };
  }

  /**
   * Resuming: the checkpoint's state files are read and checked (against their schemas, each other and this
   * run) before any weight is allocated or read.
   */
  protected readResume(): CheckpointState | null {
    const c = this.c;
    if (c.resume_from_checkpoint === null || c.resume_from_checkpoint === false || this.o.evaluateOnly) return null;
    const ga = c.gradient_accumulation_steps, total = this.total;
    const dir = c.resume_from_checkpoint === true ? latestCheckpoint(this.outputDir) : resolve(c.resume_from_checkpoint);
    if (!dir) throw new Error(`resume_from_checkpoint: true but ${this.outputDir} has no complete checkpoint-N folder; start without resume_from_checkpoint`);
    if (!existsSync(dir)) throw new Error(`resume_from_checkpoint: ${dir} does not exist`);
    const ck = readCheckpoint(dir);
    if (ck.loop.method !== c.method) throw new Error(`${dir} was written by method ${ck.loop.method}, this run's method is ${c.method}`);
    if (ck.loop.gradient_accumulation_steps !== ga) throw new Error(`${dir} was written with gradient_accumulation_steps ${ck.loop.gradient_accumulation_steps}, this run has ${ga}; use the same value to resume`);
    const mism = orderMismatch(ck.order, { ...this.orderBase, batches: this.plan.microBatchesPerEpoch });
    if (mism) {
      const ranks = this.dp.world > 1 || ck.order.batch_size !== this.orderBase.batch_size ? ` (batch_size is per_device_train_batch_size × the number of ranks, ${this.dp.world} now: resume with as many ranks as wrote the checkpoint)` : "";
      throw new Error(`${dir}: the data order cannot continue (${mism}); resume with the same dataset, batch size, seed and sampling settings${ranks}`);
    }
    if (ck.trainerState.global_step > total) throw new Error(`${join(dir, "trainer_state.json")}: global_step ${ck.trainerState.global_step} is beyond this run's ${total} steps (max_steps / num_train_epochs); raise max_steps to continue it, or resume from an earlier checkpoint`);
    return ck;
  }

  /**
   * The policy (the caller's model, or the folder's weights), its compute precision, the LoRA adapter and the
   * optimizer. Compute: transformers' bf16 / fp16 flags, or dtype bfloat16 (TRL's model dtype), as chooseCompute
   * decides for this CPU (its note says when it falls back to fp32). Under LoRA with bf16 compute the frozen base
   * is held in bf16 too (half the memory), unless merge_adapter needs its fp32 weights.
   */
  protected loadPolicy(): void {
    const c = this.c, o = this.o;
    const compute = chooseCompute({ bf16: c.bf16 === true || c.dtype === "bfloat16", fp16: c.fp16 === true });
    for (const n of compute.notes) this.print(`note: ${n}`);
    let policy: NativeModel;
    const plan = quantPlan(c, this.saveDtype);   // load_in_4bit: a 4-bit frozen base
    if (o.model) {
      policy = o.model;
      policy.setCompute(compute.compute);
    } else if (plan) {
      const loaded = loadQuantizedPolicy(this.modelDir, this.dcfg, plan);
      policy = this.policy = loaded.model;
      this.print(loaded.note);
    } else if (c.use_peft && compute.compute === "bf16" && !c.merge_adapter) {
      policy = new NativeModel(this.dcfg, { compute: compute.compute, baseDtype: "bf16" });
      this.policy = policy;
      loadWeightsIntoBf16(this.modelDir, policy.table, policy.paramsBf16);
    } else {
      policy = new NativeModel(this.dcfg, { compute: compute.compute });
      this.policy = policy;
      loadWeightsInto(this.modelDir, policy.table, policy.params);
    }
    this.policy = policy;
    if (c.use_peft && policy.lora) {
      this.lora = policy.lora;   // the caller's model already carries its adapter (evaluating after training)
    } else if (c.use_peft) {
      // PEFT's fresh adapter (B = 0): the policy starts equal to the base, which stays frozen.
      const lora = this.lora = policy.attachLora({ r: c.lora_r, loraAlpha: c.lora_alpha, useRslora: c.use_rslora, targetModules: resolveTargetModules(c.lora_target_modules, "lora_target_modules", policy.config), loraDropout: effectiveLoraDropout(c), useDora: c.use_dora });
      initLora(lora, c.seed);
      this.print(`${c.use_dora ? "DoRA" : "LoRA"}: training ${lora.numParameters} adapter parameters (r ${c.lora_r}, lora_alpha ${c.lora_alpha}${c.use_rslora ? ", rsLoRA" : ""}${lora.config.loraDropout > 0 ? `, lora_dropout ${lora.config.loraDropout}` : ""}, ${lora.config.targetModules.join(", ")}); ${policy.numParameters} base parameters frozen`);
    }
    this.trainable = this.lora ?? policy;
    if (c.gradient_checkpointing) policy.gradientCheckpointing = true;   // as transformers: true enables it, false leaves a given model as it is
    if (!this.o.evaluateOnly) this.opt = createOptimizer(c.optim, this.trainable, { lr: c.learning_rate, beta1: c.adam_beta1, beta2: c.adam_beta2, eps: c.adam_epsilon, weightDecay: c.weight_decay });
    this.mcfg = methodConfig(c);
    this.padOpts = { padTokenId: this.data.padTokenId, padToMultipleOf: c.pad_to_multiple_of ?? undefined };
    // transformers' Trainer.floating_point_ops (trainer.py): 6 · input_ids.numel() · model.num_parameters(exclude_embeddings=True)
    // per training micro-batch; input_ids is the padded policy batch (2B × T for pairs: TRL's concatenated forward;
    // KTO's KL rows are a separate input and not counted), and under PEFT the count includes the adapter.
    this.flopParams = policy.table.filter((p) => !isEmbeddingTensor(p.name)).reduce((s, p) => s + p.size, 0) + (this.lora?.numParameters ?? 0);
  }

  /** Rows idx of `rows` as one batch: packed SFT rows, pairs, or unpaired rows with their fixed KL completions. */
  protected collate(rows: Rows, idx: readonly number[]): PairBatch | UnpairedBatch {
    // packed SFT rows: every segment a batch row of its own, no attention or positions across them
    if (isPacked(rows)) return collatePacked(idx.map((i) => rows[i]), this.padOpts);
    if (!this.unpaired) return collatePairs(idx.map((i) => (rows as TokenizedPair[])[i]), this.padOpts);
    const sel = idx.map((i) => (rows as TokenizedUnpaired[])[i]);
    return collateUnpaired(sel, { ...this.padOpts, kl: this.ktoKl });  // every row carries its fixed KL completion
  }
  protected *indexed(rows: Rows, bs: number): Iterable<IndexedBatch> {
    for (let s = 0; s < rows.length; s += bs) {
      const idx = Array.from({ length: Math.min(bs, rows.length - s) }, (_, i) => s + i);
      const b = this.collate(rows, idx);
      yield this.unpaired ? { kind: "unpaired", rows: idx, ub: b as UnpairedBatch } : { kind: "paired", rows: idx, pb: b as PairBatch };
    }
  }

  /** The reference: a frozen model, the policy with its adapter disabled (LoRA), or its log-probs computed once (train table kept in output_dir). */
  protected buildReference(): void {
    const c = this.c, data = this.data, model = this.model;
    if (!needsReference(c.method)) return;
    if (c.precompute_ref_log_probs) {
      const bs = c.precompute_ref_batch_size ?? c.per_device_eval_batch_size;
      const fp = refFingerprint(this.modelDir, this.modelFiles, data.rows, { method: c.method, ktoKl: this.ktoKl });
      this.trainTable = loadReferenceLogps(this.outputDir, { kind: data.kind, numRows: data.rows.length, fingerprint: fp });
      if (this.dp.any(!this.trainTable)) this.trainTable = null;   // reused only when every rank has it: computing it is collective
      if (this.trainTable) this.print("reference log-probs: reusing ref_logps.safetensors");
      if (!this.trainTable || data.evalRows) {
        // Under LoRA the base model is the policy with its adapter disabled: no second copy is loaded.
        const loaded = this.lora ? null : loadReference(c.model_name_or_path!);
        const ref: LogpModel = loaded ?? model.withoutAdapters();
        try {
          if (!this.trainTable) {
            this.print(`reference log-probs: computing over ${data.rows.length} training rows`);
            this.trainTable = this.sharedReference(ref, data.rows, bs);
            if (this.writes) saveReferenceLogps(this.outputDir, this.trainTable, fp);
          }
          if (data.evalRows) this.evalTable = this.sharedReference(ref, data.evalRows, bs);
        } finally {
          loaded?.free();
        }
      }
      this.reference = { kind: "precomputed" };
    } else if (this.lora) {
      this.reference = { kind: "model", model: model.withoutAdapters() };   // TRL's reference for a fresh PEFT adapter
    } else {
      this.refModel = loadReference(c.model_name_or_path!);
      this.reference = { kind: "model", model: this.refModel };
    }
  }

  /** Reference log-probs of every row of `rows`, in batches of bs, split over the ranks under mpirun. */
  protected sharedReference(ref: LogpModel, rows: Rows, bs: number): RefTable {
    const n = rows.length, nan = () => new Float64Array(n).fill(Number.NaN);
    const empty = (): RefTable => this.unpaired ? { kind: "unpaired", logps: nan(), klLogps: this.ktoKl ? nan() : null } : { kind: "paired", chosen: nan(), rejected: nan() };
    return this.dp.precompute(this.indexed(rows, bs), Math.ceil(n / bs), (mine) => precomputeReference(ref, n, mine), empty);
  }

  /** generate_during_eval: the reference decodes only when it is in memory (a second model, or the base under LoRA). */
  protected makeSampler(): ((step: number) => void) | null {
    const c = this.c, data = this.data, model = this.model;
    if (!c.generate_during_eval || !this.writes) return null;
    return evalSampler({
      outputDir: this.outputDir, tokenizer: data.tokenizer!, prompts: samplePrompts(data.evalRows && !isPacked(data.evalRows) ? data.evalRows : [], c.generate_during_eval_samples ?? c.per_device_eval_batch_size),
      policy: { model }, reference: this.refModel ? { model: this.refModel } : this.lora && needsReference(c.method) ? { model, adapters: false } : null,
      maxNewTokens: c.generate_during_eval_max_new_tokens, maxPositions: this.maxPos, eos: configEosIds(this.configJson), batchSize: c.per_device_eval_batch_size,
    });
  }

  /** One micro-batch through the method's objective (forward, and backward scaled by lossScale when `backward`). */
  protected runBatch(rows: Rows, table: RefTable | null, idx: number[], backward: boolean, lossScale: number): StepOutput {
    const c = this.c, model = this.model;
    const b = this.collate(rows, idx);
    // a packed batch is padding-free in TRL (one row of every sequence end to end): its numel is its tokens
    this.batchNumel = isPacked(rows) ? b.batch.lengths.reduce((n, l) => n + l, 0) : b.batch.B * b.batch.T;
    if (c.method === "sft") return sftStep(model, b as UnpairedBatch, { backward, lossScale, lossTokens: this.dp.world > 1 ? (n) => this.dp.sum(n) : undefined });
    if (this.unpaired) return unpairedStep(model, this.reference, b as UnpairedBatch, this.mcfg, { backward, lossScale, ref: table ? gatherUnpaired(table, idx) : undefined, klMean: this.dp.world > 1 ? (m, n) => this.dp.klMean(m, n) : undefined });
    return pairedStep(model, this.reference, b as PairBatch, this.mcfg, { backward, lossScale, refLogps: table ? gatherPaired(table, idx) : undefined });
  }

  /**
   * A global micro-batch: this rank runs its part (its loss scaled by its share of the rows), and the outputs of
   * every rank are combined into the one-process values (src/parallel/shard.ts).
   */
  protected runGlobal(rows: Rows, table: RefTable | null, global: number[], backward: boolean, lossScale: number): GlobalStep {
    const c = this.c, dp = this.dp;
    const sh = dp.shard(global);
    let part: StepOutput | null = null;
    // SFT's loss is a token mean over every rank's tokens: sftStep weighs its batch by its share of them
    if (sh.rows.length) part = this.runBatch(rows, table, sh.rows, backward, c.method === "sft" ? lossScale : sh.weight * lossScale);
    else if (this.ktoKl) dp.klMean(0, 0);   // no rows here: still takes part in the KL average
    else if (c.method === "sft") dp.sum(0);   // and in the count of loss tokens
    const chosen = c.method === "kto" ? sh.rows.filter((i) => (rows as TokenizedUnpaired[])[i].label).length : 0;
    const sides = c.method === "kto" ? { chosen, rejected: sh.rows.length - chosen } : undefined;
    return dp.combine({ out: part, rows: sh.rows.length, numel: part ? this.batchNumel : 0, sides });
  }

  /** The loop's start: a checkpoint's weights and state (resume), or a fresh state and empty metrics files. */
  protected async restoreOrStart(): Promise<TrainResult | null> {
    const c = this.c, ck = this.ck;
    this.state = initialTrainerState({ maxSteps: this.total, loggingSteps: this.loggingSteps, evalSteps: this.evalSteps, saveSteps: this.saveSteps, batchSize: c.per_device_train_batch_size, epochs: this.plan.epochs });
    this.loop = { interval_loss: 0, interval_steps: 0, interval_metrics: emptySums(), interval_tokens: 0, total_loss: 0, num_tokens: 0, train_seconds: 0, gradient_accumulation_steps: c.gradient_accumulation_steps, method: c.method };
    if (ck) {
      await pausePoint("train:resume", () => !!this.stopReason());
      const stopped = await this.stoppedWhile(`resuming from ${ck.dir}`);
      if (stopped) return stopped;
      loadCheckpointWeights(ck, this.model, this.opt, this.lora);
      if (ck.scheduler.total_steps !== this.total || ck.scheduler.base_lr !== c.learning_rate) this.print(`note: the schedule changed since ${ck.dir} (total steps ${ck.scheduler.total_steps} → ${this.total}, learning_rate ${ck.scheduler.base_lr} → ${c.learning_rate})`);
      this.state = { ...ck.trainerState, max_steps: this.total, logging_steps: this.loggingSteps, eval_steps: this.evalSteps, save_steps: this.saveSteps };
      this.loop = ck.loop;
      this.epoch = ck.order.epoch;
      this.position = ck.order.position;
      this.ended = ck.order.epoch_end_done;
      this.lastCheckpoint = ck.dir;
      if (this.writes) {
        rewriteMetricsFile(this.outputDir, this.state.log_history);
        resetCompletions(this.outputDir, this.state.global_step);
      }
      this.print(`resumed from ${ck.dir} at step ${this.state.global_step} (epoch ${this.state.epoch.toFixed(3)})`);
    } else if (this.writes) {
      rewriteMetricsFile(this.outputDir, []);
      resetCompletions(this.outputDir, null);
      const old = latestCheckpoint(this.outputDir);
      if (old) this.print(`note: ${this.outputDir} already holds checkpoints of an earlier run (latest ${old}); they are kept and may be rotated`);
    }
    return null;
  }

  /** A log entry: into the history, metrics.jsonl (when this process writes), the console and onLog. */
  protected emit(e: LogEntry): void {
    this.state.log_history.push(e);
    if (this.writes) appendMetrics(this.outputDir, e);
    this.progress.log(e);
    this.o.onLog?.(e);
  }

  /** The training metrics averaged over the logging interval. */
  protected logTrain(): void {
    const now = performance.now(), loop = this.loop;
    this.emit({
      step: this.state.global_step, epoch: this.state.epoch, loss: loop.interval_loss / loop.interval_steps, grad_norm: this.gradNorm, learning_rate: this.lrUsed,
      ...meanMetrics(loop.interval_metrics), num_tokens: loop.num_tokens, tokens_per_second: loop.interval_tokens / ((now - this.tInterval) / 1000),
    });
    this.loop = { ...loop, interval_loss: 0, interval_steps: 0, interval_metrics: emptySums(), interval_tokens: 0 };
    this.tInterval = now;
  }

  /** eval_loss (HF: the per-example mean over the whole split) and the method's eval_* metrics; logged and returned. */
  evaluate(): LogEntry {
    const c = this.c, rows = this.data.evalRows!;
    const t0 = performance.now();
    const acc: MetricSums = emptySums();
    let lossSum = 0, batches = 0;
    const ebs = c.per_device_eval_batch_size * this.dp.world;   // every rank evaluates its part of each batch
    for (let s = 0; s < rows.length; s += ebs) {
      const idx = Array.from({ length: Math.min(ebs, rows.length - s) }, (_, i) => s + i);
      const out = this.runGlobal(rows, this.evalTable, idx, false, 1);
      lossSum += out.loss * idx.length;   // HF: per-example mean over the whole split
      addMetrics(acc, out.metrics);
      batches++;
    }
    const secs = (performance.now() - t0) / 1000;
    const entry: LogEntry = {
      step: this.state.global_step, epoch: this.state.epoch, eval_loss: lossSum / rows.length, ...meanMetrics(acc, "eval_"),
      eval_runtime: secs, eval_samples_per_second: rows.length / secs, eval_steps_per_second: batches / secs,
    };
    this.emit(entry);
    this.sample?.(this.state.global_step);
    this.o.onEvaluate?.(entry);
    return entry;
  }

  /** checkpoint-N/ with the weights (or adapter), optimizer, schedule, data position and state; rotated. */
  protected checkpoint(): string | null {
    const c = this.c, state = this.state;
    if (!allFinite(this.trainable.params)) throw new TrainingDivergedError(state.global_step, "a weight", NaN, this.lastCheckpoint);
    state.epoch = this.epoch + this.position / this.plan.microBatchesPerEpoch;
    if (!this.writes) {   // rank 0 writes it
      if (this.dp.world > 1) this.lastCheckpoint = join(this.outputDir, `checkpoint-${state.global_step}`);
      return this.lastCheckpoint;
    }
    const sched = this.sched;
    this.lastCheckpoint = saveCheckpoint(this.outputDir, state.global_step, {
      model: this.model, configJson: this.configJson, optimizer: this.opt,
      scheduler: { lr_scheduler_type: sched.type, base_lr: sched.baseLr, warmup_steps: sched.warmupSteps, total_steps: this.total, last_epoch: state.global_step, last_lr: learningRate(sched, state.global_step) },
      order: { ...this.orderBase, epoch: this.epoch, position: this.position, batches: this.plan.microBatchesPerEpoch, epoch_end_done: this.ended },
      trainerState: state, loop: { ...this.loop, train_seconds: this.loop.train_seconds + (performance.now() - this.tStart) / 1000 },
      args: { ...c }, tokenizerDir: this.data.tokenizerDir, chatTemplate: this.data.chatTemplate,
      adapter: this.lora, baseModelNameOrPath: c.model_name_or_path,
    });
    for (const d of rotateCheckpoints(this.outputDir, c.save_total_limit)) if (d === this.lastCheckpoint) this.lastCheckpoint = null;
    return this.lastCheckpoint;
  }

  /**
   * One optimizer step over the next micro-batches of `order` (gradient accumulation; the epoch's last step takes
   * the remainder): zeroed gradients, forward and backward of each micro-batch, clipping, the AdamW update.
   */
  protected trainStep(order: number[][]): void {
    const c = this.c, ga = c.gradient_accumulation_steps, state = this.state, loop = this.loop, trainable = this.trainable;
    const stepNo = state.global_step + 1;
    const k = Math.min(ga, order.length - this.position);
    trainable.zeroGrad();
    let stepLoss = 0;
    for (let j = 0; j < k; j++) {
      if (j === k - 1) this.dp.startGradientSum(trainable, order[this.position + j]);   // summed over the ranks during its backward
      let out: GlobalStep;
      // LoRA dropout masks: a function of (seed, step, micro-batch, rank), so resume draws the same and ranks differ
      this.lora?.setDropoutSeed(c.seed, stepNo, j * this.dp.group.worldSize + this.dp.group.rank);
      try { out = this.runGlobal(this.data.rows, this.trainTable, order[this.position + j], true, 1 / k); } catch (e) { throw asDivergence(e, stepNo, this.lastCheckpoint, trainable.params); }
      checkFinite("the loss", out.loss, stepNo, this.lastCheckpoint);
      stepLoss += out.loss / k;
      state.total_flos += 6 * out.numel * this.flopParams;
      addMetrics(loop.interval_metrics, out.metrics);
      loop.num_tokens += out.tokens;
      loop.interval_tokens += out.tokens;
    }
    this.position += k;
    this.dp.reduceGradients(trainable);   // Σ over the ranks in place: every rank takes the same step
    this.gradNorm = c.max_grad_norm ? trainable.clipGradNorm(c.max_grad_norm) : trainable.gradNorm();
    checkFinite("the gradient norm", this.gradNorm, stepNo, this.lastCheckpoint);
    this.lrUsed = learningRate(this.sched, state.global_step);
    this.opt.update(this.lrUsed);
    state.global_step = stepNo;
    this.ended = false;
    state.epoch = this.epoch + this.position / order.length;
    state.num_input_tokens_seen = loop.num_tokens;
    loop.interval_loss += stepLoss;
    loop.interval_steps += 1;
    loop.total_loss += stepLoss;
    this.progress.update(stepNo, stepLoss);
  }

  /** The final summary entry, then the model (or adapter, and with merge_adapter the merged model) into output_dir. */
  protected saveFinal(trainSeconds: number): void {
    const c = this.c, state = this.state, lora = this.lora, data = this.data, outputDir = this.outputDir;
    const steps = Math.max(state.global_step, 1);
    const bs = c.per_device_train_batch_size * this.dp.world, ga = c.gradient_accumulation_steps;   // the global batch
    this.emit({
      step: state.global_step, epoch: state.epoch, train_runtime: trainSeconds,
      train_samples_per_second: (state.global_step * bs * ga) / trainSeconds, train_steps_per_second: state.global_step / trainSeconds,
      total_flos: state.total_flos, train_loss: this.loop.total_loss / steps,
    });
    if (!this.writes) return;
    const last = state.log_history.filter((e) => "loss" in e).pop() ?? {};
    const lastEval = state.log_history.filter((e) => "eval_loss" in e).pop() ?? {};
    const card = {
      baseModel: c.model_name_or_path!, method: c.method, dataset: data.describe, steps: state.global_step, epoch: state.epoch,
      hyperparameters: cardHyperparameters(c),
      finalMetrics: { ...last, ...lastEval }, dtype: lora ? undefined : this.saveDtype,
    };
    const final = { tokenizerDir: data.tokenizerDir, chatTemplate: data.chatTemplate, card, trainerState: state };
    if (lora) {
      saveFinalAdapter(outputDir, lora, this.modelDir, final);
      if (c.merge_adapter) {
        // detaches the adapter: nothing trains after this
        saveMergedModel(join(outputDir, "merged"), this.model, this.configJson, { dtype: this.saveDtype, extra: (dir) => copyTokenizerFiles(data.tokenizerDir, dir, data.chatTemplate) });
      }
    } else {
      saveFinalModel(outputDir, this.model, this.configJson, final, this.saveDtype);
    }
    const what = lora ? `LoRA adapter saved to ${outputDir}${c.merge_adapter ? ` (merged model in ${join(outputDir, "merged")})` : ""}` : `model saved to ${outputDir}`;
    this.print(`done: ${state.global_step} steps in ${trainSeconds.toFixed(1)} s; ${what}`);
  }

  protected result(stoppedBy: TrainResult["stoppedBy"]): TrainResult {
    return {
      outputDir: this.outputDir, globalStep: this.state.global_step, epoch: this.state.epoch, logHistory: this.state.log_history, lastCheckpoint: this.lastCheckpoint,
      stoppedBy, exitCode: stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] ?? 1 : 0,
    };
  }

  /** Trains (or, with evaluateOnly, evaluates once) and writes everything into output_dir. */
  async run(): Promise<TrainResult> {
    const o = this.o;
    this.setup();
    try {
      this.startOutputDir();
      await pausePoint("train:start", () => !!this.stopReason());
      const early0 = await this.stoppedWhile("starting");
      if (early0) return early0;
      this.data = await this.prepareData();
      const early = await this.stoppedWhile("loading the data");
      if (early) return early;
      this.planSteps();
      this.ck = this.readResume();
      this.loadPolicy();
      this.buildReference();
      this.sample = this.makeSampler();
      const stopped = await this.restoreOrStart();
      if (stopped) return stopped;
      const early2 = await this.stoppedWhile("loading the model");
      if (early2) return early2;
      this.training = true;
      if (o.evaluateOnly) {
        if (!this.data.evalRows?.length) throw new Error("evaluate: no eval rows were given (eval_dataset)");
        this.evaluate();
        return this.result(null);
      }
      return await this.trainLoop();
    } finally {
      this.progress.stop();
      this.stop?.dispose();
      this.refModel?.free();
      if (this.policy !== o.model) this.policy?.free();
      this.lock?.release();
    }
  }

  /** The HF Trainer's loop: steps with log / eval / save on their intervals, epoch ends, a stop request, the final save. */
  protected async trainLoop(): Promise<TrainResult> {
    const c = this.c, o = this.o, state = this.state, total = this.total;
    this.tStart = this.tInterval = performance.now();
    this.progress.start(total, state.global_step);
    if (c.eval_on_start && state.global_step === 0 && this.data.evalRows) this.evaluate();
    let stoppedBy: TrainResult["stoppedBy"] = null;
    outer: for (;;) {
      // Every pass must train a step or finish an epoch; one that does neither would spin forever without ever
      // yielding to a signal handler (what a non-numeric global_step once caused), so it is an error instead.
      const before = `${state.global_step}/${this.epoch}/${this.position}/${this.ended}`;
      const order = batchOrder(this.orderBase, this.epoch, this.lengths);
      while (this.position < order.length && state.global_step < total) {
        this.trainStep(order);
        const stepNo = state.global_step;
        if ((c.logging_strategy === "steps" && stepNo % this.loggingSteps === 0) || (c.logging_first_step && stepNo === 1)) this.logTrain();
        if (c.eval_strategy === "steps" && stepNo % this.evalSteps === 0 && c.eval_delay <= stepNo) this.evaluate();
        let saved = false;
        if (c.save_strategy === "steps" && stepNo % this.saveSteps === 0) { this.checkpoint(); saved = true; }
        await o.onStep?.(stepNo);
        await tick();   // lets a SIGINT handler run
        if (this.dp.any(!!this.stopReason())) {   // a stop seen by any rank stops every rank after this step
          stoppedBy = this.stopReason() ?? "SIGTERM";
          if (!saved) this.checkpoint();
          this.print(`stopped by ${stoppedBy} after step ${stepNo}; saved ${this.lastCheckpoint} (resume_from_checkpoint: true continues)`);
          break outer;
        }
      }
      // HF runs its end-of-epoch hooks also when max_steps stops an epoch early; `ended` makes a resumed run
      // neither skip nor repeat them.
      if (!this.ended && (this.position >= order.length || state.global_step >= total)) {
        if (c.logging_strategy === "epoch" && this.loop.interval_steps > 0) this.logTrain();
        if (c.eval_strategy === "epoch" && this.data.evalRows && c.eval_delay <= state.epoch) this.evaluate();
        this.ended = true;
        if (this.position >= order.length) { this.epoch += 1; this.position = 0; }
        if (c.save_strategy === "epoch") this.checkpoint();
      }
      if (state.global_step >= total) break;
      if (`${state.global_step}/${this.epoch}/${this.position}/${this.ended}` === before) throw new Error(`the training loop made no progress at step ${state.global_step} (epoch ${this.epoch}, position ${this.position} of ${order.length}); this is a bug in preftune`);
      await tick();
    }
    this.progress.stop();
    const trainSeconds = this.loop.train_seconds + (performance.now() - this.tStart) / 1000;
    if (!stoppedBy) this.saveFinal(trainSeconds);
    this.dp.barrier();   // every rank ends after rank 0's last write
    return this.result(stoppedBy);
  }
}

/** Trains `config` (a resolved TrainConfig, see config.ts) and writes everything into output_dir. */
export function train(config: TrainConfig, o: TrainOptions = {}): Promise<TrainResult> {
  return new Trainer(config, o).run();
}
