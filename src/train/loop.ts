// The one training loop every method shares, with the HF Trainer's step arithmetic: micro-batches of
// per_device_train_batch_size, gradient accumulation (the epoch's last step takes the remainder), clipping,
// AdamW, the LR schedule, logging averaged over the interval, eval with the eval_ prefix (and, with
// generate_during_eval, completions of a few eval prompts: samples.ts), checkpoints,
// exact resume, guards, and the final model in output_dir. With use_peft only a LoRA adapter trains (the
// reference is then the policy with its adapter disabled) and output_dir gets a PEFT adapter folder. The
// per-batch math is objectives.ts; the rows come from data.ts (dataset keys through src/data, SFT packing, or
// pre-tokenized rows passed in); packed SFT rows count as one row each for the batch size and step plan. Not the CLI.
import { createHash } from "node:crypto";
import { existsSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { AdamW, NativeModel, setNumThreads, type LoraAdapter, type LogpModel, type Trainable } from "../core/native.ts";
import { collatePairs, collateUnpaired, type PairBatch, type UnpairedBatch } from "../data/collate.ts";
import { collatePacked, packedLengths, type PackedRow } from "../data/packing.ts";
import { pairLengths, unpairedLengths } from "../data/sampler.ts";
import type { TokenizedPair, TokenizedUnpaired } from "../data/tokenize.ts";
import { loadWeightsInto, openModelFolder, saveDtypeOf, storedDtype, type ModelFiles, type SaveDtype } from "../models/checkpoint.ts";
import { initLora, resolveTargetModules, saveMergedModel } from "../models/peft.ts";
import { needsReference, pairedStep, sftStep, unpairedStep, type MethodConfig, type Reference, type StepOutput } from "./objectives.ts";
import { gatherPaired, gatherUnpaired, loadReference, loadReferenceLogps, precomputeReference, saveReferenceLogps, type IndexedBatch, type RefTable } from "./reference.ts";
import { copyTokenizerFiles, latestCheckpoint, loadCheckpointWeights, readCheckpoint, recoverOutputDir, rotateCheckpoints, saveCheckpoint, saveFinalAdapter, saveFinalModel, writeJsonFile, type CheckpointState } from "./checkpoint.ts";
import { defaultsFor, IGNORED_KEYS, type TrainConfig } from "./config.ts";
import { asDivergence, checkFinite, SIGNAL_EXIT_CODES, TrainingDivergedError, watchStopSignals } from "./guards.ts";
import { addMetrics, appendMetrics, emptySums, meanMetrics, Progress, rewriteMetricsFile, type LogEntry, type MetricSums } from "./metrics.ts";
import { loadTrainData, type Rows } from "./data.ts";
import { configEosIds, evalSampler, resetCompletions, samplePrompts } from "./samples.ts";
import { learningRate, planSteps, resolveInterval, warmupSteps, type ScheduleConfig } from "./schedule.ts";
import { batchOrder, initialTrainerState, orderMismatch, type LoopState } from "./state.ts";
import { ktoWeightWarning } from "../losses/kto.ts";
import { ensureDir, pausePoint, readTextFile } from "../util/durable.ts";
import { acquireRunLock } from "../util/lock.ts";
import { DataParallel } from "../parallel/shard.ts";

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
}

export interface TrainResult {
  outputDir: string;
  globalStep: number;
  epoch: number;
  logHistory: LogEntry[];
  lastCheckpoint: string | null;
  stoppedBy: NodeJS.Signals | null;
  exitCode: number;                // 0, or 130 (SIGINT) / 143 (SIGTERM) after saving
}


/**
 * TRL's KTO KL pairs, fixed at data-prep time for every row (TRL's _get_kl_dataset, mapped in chunks of the batch
 * size): within a chunk, row i gets row i−1's completion and the first row the last's; a chunk of one row (the
 * last of an odd-sized set) gets its own. Rows that already have kl_completion_ids keep them. The KL term and
 * precomputed reference KL log-probs (reference.ts) are per row, so the collator never picks a pairing itself.
 */
function withKlCompletions(rows: TokenizedUnpaired[], chunk: number): TokenizedUnpaired[] {
  const out = rows.map((r) => ({ ...r }));
  for (let s = 0; s < out.length; s += chunk) {
    const n = Math.min(chunk, out.length - s);
    for (let i = 0; i < n; i++) out[s + i].kl_completion_ids ??= rows[s + ((i + n - 1) % n)].completion_ids;
  }
  return out;
}

const isPacked = (rows: Rows): rows is PackedRow[] => rows.length > 0 && "segments" in rows[0];

function methodConfig(c: TrainConfig): MethodConfig {
  return {
    method: c.method, beta: c.method === "sft" ? 0 : c.beta, loss_type: c.loss_type ?? undefined, loss_weights: c.loss_weights,
    label_smoothing: c.label_smoothing, cpo_alpha: c.cpo_alpha, simpo_gamma: c.simpo_gamma, alpha: c.alpha,
    desirable_weight: c.desirable_weight, undesirable_weight: c.undesirable_weight,
    f_divergence_type: c.f_divergence_type, f_alpha_divergence_coef: c.f_alpha_divergence_coef,
  };
}

/** What precomputed reference values depend on; file stats stand in for hashing multi-GB weights. */
function refFingerprint(modelDir: string, modelFiles: ModelFiles, rows: Rows, extra: unknown): string {
  const h = createHash("sha256");
  h.update(resolve(modelDir)).update(readTextFile(join(modelDir, "config.json"), "model config"));
  for (const f of modelFiles.shards.map((s) => s.file)) { const st = statSync(f); h.update(`${f}:${st.size}:${st.mtimeMs}`); }
  h.update(JSON.stringify(rows)).update(JSON.stringify(extra));
  return h.digest("hex").slice(0, 32);
}

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** The model card's settings: the ones people compare runs by, plus every key that differs from its default. */
function cardHyperparameters(c: TrainConfig): Record<string, unknown> {
  const d = defaultsFor(c.method) as Record<string, unknown>;
  const core = ["learning_rate", "beta", "loss_type", "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "max_length", "seed"];
  // the data source is named by the card itself; paths and run switches are not hyperparameters
  const skip = new Set<string>([...IGNORED_KEYS, "model_name_or_path", "dataset", "dataset_name", "dataset_mixture", "datasets", "dataset_mixer", "eval_dataset", "chat_template_path", "output_dir", "resume_from_checkpoint", "method", "threads", "disable_tqdm", "dataset_cache_dir"]);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (skip.has(k) || v === null) continue;
    if (core.includes(k) || JSON.stringify(v) !== JSON.stringify(d[k])) out[k] = v;
  }
  return out;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/** The real path of p, for a p that may not exist yet: its longest existing prefix resolved, the rest appended. */
function realPath(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  for (let q = abs; ; q = dirname(q)) {
    try { return join(realpathSync(q), ...rest.reverse()); } catch { /* not there yet */ }
    if (dirname(q) === q) return abs;
    rest.push(basename(q));
  }
}

/**
 * Refuses, before anything is written, an output_dir that is the folder the run reads its model (and, for
 * dpo/ipo/kto, its reference) from, or lies inside it: the final save would overwrite the weights it starts from.
 */
function checkOutputDir(outputDir: string, modelDir: string): void {
  const out = realPath(outputDir), model = realPath(modelDir);
  const rel = relative(model, out);
  if (rel === "") throw new Error(`output_dir ${outputDir} is the model folder (model_name_or_path: ${modelDir}); the final save would overwrite the weights this run starts from. Use another output_dir`);
  if (!rel.startsWith("..") && !isAbsolute(rel)) throw new Error(`output_dir ${outputDir} lies inside the model folder (model_name_or_path: ${modelDir}); runs write beside models, not into them. Use an output_dir outside ${modelDir}`);
}

/** Trains `config` (a resolved TrainConfig, see config.ts) and writes everything into output_dir. */
export async function train(config: TrainConfig, o: TrainOptions = {}): Promise<TrainResult> {
  const c = config;
  const outputDir = resolve(c.output_dir!);
  const modelDir = c.model_name_or_path!;
  const dp = DataParallel.forRun();   // data parallel under mpirun: rank 0 alone writes files and logs
  const main = dp.isMainProcess;
  const progress = new Progress(!!o.quiet || !main, c.disable_tqdm, o.print);
  const print = (l: string) => progress.note(l);
  for (const n of o.notes ?? []) print(`note: ${n}`);

  // Before anything is written or allocated: where the run writes, and the model folder checked against itself
  // (config.json against the weight headers) and against this machine's memory.
  checkOutputDir(outputDir, modelDir);
  const withRefModel = needsReference(c.method) && !c.use_peft;   // a second copy (or one while precomputing)
  const base = openModelFolder(modelDir, { training: !c.use_peft, extraCopies: withRefModel ? 1 : 0 });
  if (base.memoryWarning) print(`note: ${base.memoryWarning}`);
  const { config: dcfg, configJson, files: modelFiles } = base;
  // the saved model's dtype: the run's dtype, else the input checkpoint's (transformers' dtype="auto")
  const saveDtype: SaveDtype = c.dtype === "auto" ? storedDtype(configJson, modelFiles) : saveDtypeOf(c.dtype) ?? "F32";
  // A sequence longer than the model's positions would stop the run at its first long batch (the core refuses
  // it with the numbers); when max_length already allows that, say so before tokenizing. (Pre-tokenized rows
  // are not truncated, and max_length null means no limit: the core's own check covers those.)
  const maxPos = dcfg.maxPositionEmbeddings;
  if (!o.rows && c.max_length != null && c.max_length > maxPos)
    throw new Error(`max_length ${c.max_length} is more than ${modelDir}'s max_position_embeddings (${maxPos}): set max_length to at most ${maxPos}`);
  const threads = dp.threads(c.threads);
  if (threads > 0) setNumThreads(threads);
  const dpLine = dp.describe(c.per_device_train_batch_size, c.gradient_accumulation_steps, threads);
  if (dpLine) print(dpLine);

  if (main) ensureDir(outputDir, "output_dir");
  const lock = main ? acquireRunLock(outputDir, "output_dir") : { tookOver: null, release() {} };
  let training = false;
  const stop = o.handleSignals === false ? null : watchStopSignals((sig) => print(training
    ? `${sig}: saving a checkpoint after this step, then stopping (${sig} again quits without saving)`
    : `${sig}: stopping before training starts (${sig} again quits at once)`));
  let policy: NativeModel | null = null;
  let refModel: NativeModel | null = null;
  /** A signal that arrived while loading stops the run here: nothing was trained, so there is nothing to save. */
  const stoppedWhile = async (phase: string): Promise<TrainResult | null> => {
    await tick();   // lets a signal handler run
    if (!stop?.signal) return null;
    print(`stopped by ${stop.signal} while ${phase}: nothing was trained and nothing was saved`);
    return { outputDir, globalStep: 0, epoch: 0, logHistory: [], lastCheckpoint: null, stoppedBy: stop.signal, exitCode: SIGNAL_EXIT_CODES[stop.signal] ?? 1 };
  };
  try {
    if (lock.tookOver) print(`note: took over the lock of ${outputDir} from ${lock.tookOver}`);
    if (main) {
      for (const t of recoverOutputDir(outputDir)) print(`${outputDir}: ${t}`);
      writeJsonFile(join(outputDir, "training_args.json"), { ...c, preftune_notes: o.notes ?? [] });  // the run's resolved config (every key) and its notes
    }
    await pausePoint("train:start", () => !!stop?.signal);
    const early0 = await stoppedWhile("starting");
    if (early0) return early0;

    const needEval = c.eval_strategy !== "no" || c.eval_on_start;
    const data = await loadTrainData(c, { rows: o.rows, evalRows: o.evalRows, padTokenId: o.padTokenId, quiet: o.quiet || !main }, needEval, print);
    if (data.rows.length === 0) throw new Error(`${data.describe}: no training rows`);
    if (needEval && !data.evalRows?.length) throw new Error(`eval_strategy is "${c.eval_strategy}"${c.eval_on_start ? " / eval_on_start" : ""} but no eval rows were given`);
    if (c.generate_during_eval && !data.tokenizer) throw new Error(`generate_during_eval needs the model's tokenizer to turn completions into text, and ${modelDir} has no tokenizer.json (pre-tokenized rows were given); add the tokenizer files to the model folder or set generate_during_eval: false`);
    const unpaired = data.kind === "unpaired";
    const ktoKl = c.method === "kto" && c.loss_type === "kto";
    if (c.method === "kto") {
      const rows = data.rows as TokenizedUnpaired[];
      const desirable = rows.filter((r) => r.label).length;
      const warning = ktoWeightWarning(desirable, rows.length - desirable, c.desirable_weight, c.undesirable_weight);
      if (warning) print(`note: ${warning}`);
    }
    if (ktoKl) {
      data.rows = withKlCompletions(data.rows as TokenizedUnpaired[], c.per_device_train_batch_size);
      if (data.evalRows) data.evalRows = withKlCompletions(data.evalRows as TokenizedUnpaired[], c.per_device_eval_batch_size);
    }
    const early = await stoppedWhile("loading the data");
    if (early) return early;

    // Steps and schedule.
    // bs is per rank; the data order is made of global micro-batches of gbs rows, each rank reading its part
    const bs = c.per_device_train_batch_size, ga = c.gradient_accumulation_steps, gbs = bs * dp.world;
    const plan = planSteps(data.rows.length, gbs, ga, c.max_steps, c.num_train_epochs, c.dataloader_drop_last);
    const total = plan.totalSteps;
    const sched: ScheduleConfig = { type: c.lr_scheduler_type, baseLr: c.learning_rate, warmupSteps: warmupSteps(total, c.warmup_steps, c.warmup_ratio), totalSteps: total, kwargs: c.lr_scheduler_kwargs };
    const loggingSteps = resolveInterval(c.logging_steps, total);
    const evalSteps = resolveInterval(c.eval_steps ?? c.logging_steps, total);
    const saveSteps = resolveInterval(c.save_steps, total);
    const lengths = !c.group_by_length ? undefined
      : isPacked(data.rows) ? packedLengths(data.rows) : unpaired ? unpairedLengths(data.rows as TokenizedUnpaired[]) : pairLengths(data.rows as TokenizedPair[]);
    const orderBase = { seed: c.data_seed ?? c.seed, rows: data.rows.length, batch_size: gbs, shuffle: c.train_sampling_strategy !== "sequential", group_by_length: c.group_by_length, drop_last: c.dataloader_drop_last };

    // Resuming: the checkpoint's state files are read and checked (against their schemas, each other and this
    // run) before any weight is allocated or read.
    let ck: CheckpointState | null = null;
    if (c.resume_from_checkpoint !== null && c.resume_from_checkpoint !== false) {
      const dir = c.resume_from_checkpoint === true ? latestCheckpoint(outputDir) : resolve(c.resume_from_checkpoint);
      if (!dir) throw new Error(`resume_from_checkpoint: true but ${outputDir} has no complete checkpoint-N folder; start without resume_from_checkpoint`);
      if (!existsSync(dir)) throw new Error(`resume_from_checkpoint: ${dir} does not exist`);
      ck = readCheckpoint(dir);
      if (ck.loop.method !== c.method) throw new Error(`${dir} was written by method ${ck.loop.method}, this run's method is ${c.method}`);
      if (ck.loop.gradient_accumulation_steps !== ga) throw new Error(`${dir} was written with gradient_accumulation_steps ${ck.loop.gradient_accumulation_steps}, this run has ${ga}; use the same value to resume`);
      const mism = orderMismatch(ck.order, { ...orderBase, batches: plan.microBatchesPerEpoch });
      if (mism) throw new Error(`${dir}: the data order cannot continue (${mism}); resume with the same dataset, batch size, seed and sampling settings`);
      if (ck.trainerState.global_step > total) throw new Error(`${join(dir, "trainer_state.json")}: global_step ${ck.trainerState.global_step} is beyond this run's ${total} steps (max_steps / num_train_epochs); raise max_steps to continue it, or resume from an earlier checkpoint`);
    }

    policy = new NativeModel(dcfg);
    loadWeightsInto(modelDir, policy.table, policy.params);
    let lora: LoraAdapter | null = null;
    if (c.use_peft) {
      // PEFT's fresh adapter (B = 0): the policy starts equal to the base, which stays frozen.
      lora = policy.attachLora({ r: c.lora_r, loraAlpha: c.lora_alpha, useRslora: c.use_rslora, targetModules: resolveTargetModules(c.lora_target_modules), loraDropout: 0 });   // lora_dropout is not applied yet (config.ts notes it)
      initLora(lora, c.seed);
      print(`LoRA: training ${lora.numParameters} adapter parameters (r ${c.lora_r}, lora_alpha ${c.lora_alpha}${c.use_rslora ? ", rsLoRA" : ""}, ${lora.config.targetModules.join(", ")}); ${policy.numParameters} base parameters frozen`);
    }
    const trainable: Trainable = lora ?? policy;
    const opt = new AdamW(trainable, { lr: c.learning_rate, beta1: c.adam_beta1, beta2: c.adam_beta2, eps: c.adam_epsilon, weightDecay: c.weight_decay });
    const model = policy;
    const mcfg = methodConfig(c);
    const padOpts = { padTokenId: data.padTokenId, padToMultipleOf: c.pad_to_multiple_of ?? undefined };

    const collate = (rows: Rows, idx: readonly number[]): PairBatch | UnpairedBatch => {
      // packed SFT rows: every segment a batch row of its own, no attention or positions across them
      if (isPacked(rows)) return collatePacked(idx.map((i) => rows[i]), padOpts);
      if (!unpaired) return collatePairs(idx.map((i) => (rows as TokenizedPair[])[i]), padOpts);
      const sel = idx.map((i) => (rows as TokenizedUnpaired[])[i]);
      return collateUnpaired(sel, { ...padOpts, kl: ktoKl });  // every row carries its fixed KL completion
    };
    const indexed = function* (rows: Rows, bs: number): Iterable<IndexedBatch> {
      for (let s = 0; s < rows.length; s += bs) {
        const idx = Array.from({ length: Math.min(bs, rows.length - s) }, (_, i) => s + i);
        const b = collate(rows, idx);
        yield unpaired ? { kind: "unpaired", rows: idx, ub: b as UnpairedBatch } : { kind: "paired", rows: idx, pb: b as PairBatch };
      }
    };

    // Reference: a frozen model, or its log-probs computed once (train table kept in output_dir).
    let reference: Reference = { kind: "none" };
    let trainTable: RefTable | null = null, evalTable: RefTable | null = null;
    if (needsReference(c.method)) {
      if (c.precompute_ref_log_probs) {
        const bs = c.precompute_ref_batch_size ?? c.per_device_eval_batch_size;
        const fp = refFingerprint(modelDir, modelFiles, data.rows, { method: c.method, ktoKl });
        trainTable = loadReferenceLogps(outputDir, { kind: data.kind, numRows: data.rows.length, fingerprint: fp });
        if (trainTable) print("reference log-probs: reusing ref_logps.safetensors");
        if (!trainTable || data.evalRows) {
          // Under LoRA the base model is the policy with its adapter disabled: no second copy is loaded.
          const loaded = lora ? null : loadReference(c.model_name_or_path!);
          const ref: LogpModel = loaded ?? model.withoutAdapters();
          try {
            if (!trainTable) {
              print(`reference log-probs: computing over ${data.rows.length} training rows`);
              trainTable = precomputeReference(ref, data.rows.length, indexed(data.rows, bs));
              if (main) saveReferenceLogps(outputDir, trainTable, fp);
            }
            if (data.evalRows) evalTable = precomputeReference(ref, data.evalRows.length, indexed(data.evalRows, bs));
          } finally {
            loaded?.free();
          }
        }
        reference = { kind: "precomputed" };
      } else if (lora) {
        reference = { kind: "model", model: model.withoutAdapters() };   // TRL's reference for a fresh PEFT adapter
      } else {
        refModel = loadReference(c.model_name_or_path!);
        reference = { kind: "model", model: refModel };
      }
    }

    // generate_during_eval: the reference decodes only when it is in memory (a second model, or the base under LoRA).
    const sample = c.generate_during_eval && main ? evalSampler({
      outputDir, tokenizer: data.tokenizer!, prompts: samplePrompts(data.evalRows && !isPacked(data.evalRows) ? data.evalRows : [], c.generate_during_eval_samples ?? c.per_device_eval_batch_size),
      policy: { model }, reference: refModel ? { model: refModel } : lora && needsReference(c.method) ? { model: model, adapters: false } : null,
      maxNewTokens: c.generate_during_eval_max_new_tokens, maxPositions: maxPos, eos: configEosIds(configJson), batchSize: c.per_device_eval_batch_size,
    }) : null;

    // transformers' Trainer.floating_point_ops (trainer.py): 6 · input_ids.numel() · model.num_parameters(exclude_embeddings=True)
    // per training micro-batch; input_ids is the padded policy batch (2B × T for pairs: TRL's concatenated forward;
    // KTO's KL rows are a separate input and not counted), and under PEFT the count includes the adapter.
    const flopParams = model.table.filter((p) => p.name !== "model.embed_tokens.weight").reduce((s, p) => s + p.size, 0) + (lora?.numParameters ?? 0);
    let batchNumel = 0;
    const runBatch = (rows: Rows, table: RefTable | null, idx: number[], backward: boolean, lossScale: number): StepOutput => {
      const b = collate(rows, idx);
      // a packed batch is padding-free in TRL (one row of every sequence end to end): its numel is its tokens
      batchNumel = isPacked(rows) ? b.batch.lengths.reduce((n, l) => n + l, 0) : b.batch.B * b.batch.T;
      if (c.method === "sft") return sftStep(model, b as UnpairedBatch, { backward, lossScale });
      if (unpaired) return unpairedStep(model, reference, b as UnpairedBatch, mcfg, { backward, lossScale, ref: table ? gatherUnpaired(table, idx) : undefined, klMean: dp.world > 1 ? (m, n) => dp.klMean(m, n) : undefined });
      return pairedStep(model, reference, b as PairBatch, mcfg, { backward, lossScale, refLogps: table ? gatherPaired(table, idx) : undefined });
    };

    /** A global micro-batch: this rank runs its part (loss scaled by its share), the outputs combined over the ranks. */
    const runGlobal = (rows: Rows, table: RefTable | null, global: number[], backward: boolean, lossScale: number) => {
      const sh = dp.shard(global);
      let part: StepOutput | null = null;
      if (sh.rows.length) part = runBatch(rows, table, sh.rows, backward, sh.weight * lossScale);
      else if (ktoKl) dp.klMean(0, 0);   // no rows here: still takes part in the KL average
      const chosen = c.method === "kto" ? sh.rows.filter((i) => (rows as TokenizedUnpaired[])[i].label).length : 0;
      const sides = c.method === "kto" ? { chosen, rejected: sh.rows.length - chosen } : undefined;
      return dp.combine({ out: part, rows: sh.rows.length, numel: part ? batchNumel : 0, sides });
    };

    let state = initialTrainerState({ maxSteps: total, loggingSteps, evalSteps, saveSteps, batchSize: bs, epochs: plan.epochs });
    let loop: LoopState = { interval_loss: 0, interval_steps: 0, interval_metrics: emptySums(), interval_tokens: 0, total_loss: 0, num_tokens: 0, train_seconds: 0, gradient_accumulation_steps: ga, method: c.method };
    let epoch = 0, position = 0, ended = false;
    let lastCheckpoint: string | null = null;
    let tStart = performance.now();
    let tInterval = tStart;

    if (ck) {
      await pausePoint("train:resume", () => !!stop?.signal);
      const stopped = await stoppedWhile(`resuming from ${ck.dir}`);
      if (stopped) return stopped;
      loadCheckpointWeights(ck, model, opt, lora);
      if (ck.scheduler.total_steps !== total || ck.scheduler.base_lr !== c.learning_rate) print(`note: the schedule changed since ${ck.dir} (total steps ${ck.scheduler.total_steps} → ${total}, learning_rate ${ck.scheduler.base_lr} → ${c.learning_rate})`);
      state = { ...ck.trainerState, max_steps: total, logging_steps: loggingSteps, eval_steps: evalSteps, save_steps: saveSteps };
      loop = ck.loop;
      epoch = ck.order.epoch;
      position = ck.order.position;
      ended = ck.order.epoch_end_done;
      lastCheckpoint = ck.dir;
      if (main) {
        rewriteMetricsFile(outputDir, state.log_history);
        resetCompletions(outputDir, state.global_step);
      }
      print(`resumed from ${ck.dir} at step ${state.global_step} (epoch ${state.epoch.toFixed(3)})`);
    } else {
      if (main) {
        rewriteMetricsFile(outputDir, []);
        resetCompletions(outputDir, null);
      }
      const old = latestCheckpoint(outputDir);
      if (old) print(`note: ${outputDir} already holds checkpoints of an earlier run (latest ${old}); they are kept and may be rotated`);
    }
    const early2 = await stoppedWhile("loading the model");
    if (early2) return early2;
    training = true;

    const emit = (e: LogEntry) => {
      state.log_history.push(e);
      if (main) appendMetrics(outputDir, e);
      progress.log(e);
      o.onLog?.(e);
    };
    const logTrain = () => {
      const now = performance.now();
      emit({
        step: state.global_step, epoch: state.epoch, loss: loop.interval_loss / loop.interval_steps, grad_norm: gradNorm, learning_rate: lrUsed,
        ...meanMetrics(loop.interval_metrics), num_tokens: loop.num_tokens, tokens_per_second: loop.interval_tokens / ((now - tInterval) / 1000),
      });
      loop = { ...loop, interval_loss: 0, interval_steps: 0, interval_metrics: emptySums(), interval_tokens: 0 };
      tInterval = now;
    };
    const evaluate = () => {
      const rows = data.evalRows!;
      const t0 = performance.now();
      const acc: MetricSums = emptySums();
      let lossSum = 0, batches = 0;
      const ebs = c.per_device_eval_batch_size * dp.world;   // every rank evaluates its part of each batch
      for (let s = 0; s < rows.length; s += ebs) {
        const idx = Array.from({ length: Math.min(ebs, rows.length - s) }, (_, i) => s + i);
        const out = runGlobal(rows, evalTable, idx, false, 1);
        lossSum += out.loss * idx.length;   // HF: per-example mean over the whole split
        addMetrics(acc, out.metrics);
        batches++;
      }
      const secs = (performance.now() - t0) / 1000;
      emit({
        step: state.global_step, epoch: state.epoch, eval_loss: lossSum / rows.length, ...meanMetrics(acc, "eval_"),
        eval_runtime: secs, eval_samples_per_second: rows.length / secs, eval_steps_per_second: batches / secs,
      });
      sample?.(state.global_step);
    };
    const checkpoint = () => {
      if (!allFinite(trainable.params)) throw new TrainingDivergedError(state.global_step, "a weight", NaN, lastCheckpoint);
      state.epoch = epoch + position / plan.microBatchesPerEpoch;
      if (!main) return (lastCheckpoint = join(outputDir, `checkpoint-${state.global_step}`));   // rank 0 writes it
      lastCheckpoint = saveCheckpoint(outputDir, state.global_step, {
        model: model, configJson, optimizer: opt,
        scheduler: { lr_scheduler_type: sched.type, base_lr: sched.baseLr, warmup_steps: sched.warmupSteps, total_steps: total, last_epoch: state.global_step, last_lr: learningRate(sched, state.global_step) },
        order: { ...orderBase, epoch, position, batches: plan.microBatchesPerEpoch, epoch_end_done: ended },
        trainerState: state, loop: { ...loop, train_seconds: loop.train_seconds + (performance.now() - tStart) / 1000 },
        args: { ...c }, tokenizerDir: data.tokenizerDir, chatTemplate: data.chatTemplate,
        adapter: lora, baseModelNameOrPath: c.model_name_or_path,
      });
      for (const d of rotateCheckpoints(outputDir, c.save_total_limit)) if (d === lastCheckpoint) lastCheckpoint = null;
      return lastCheckpoint;
    };

    tStart = tInterval = performance.now();
    progress.start(total, state.global_step);
    if (c.eval_on_start && state.global_step === 0 && data.evalRows) evaluate();
    let stoppedBy: NodeJS.Signals | null = null;
    let gradNorm = 0, lrUsed = 0;

    outer: for (;;) {
      // Every pass must train a step or finish an epoch; one that does neither would spin forever without ever
      // yielding to a signal handler (what a non-numeric global_step once caused), so it is an error instead.
      const before = `${state.global_step}/${epoch}/${position}/${ended}`;
      const order = batchOrder(orderBase, epoch, lengths);
      while (position < order.length && state.global_step < total) {
        const stepNo = state.global_step + 1;
        const k = Math.min(ga, order.length - position);
        trainable.zeroGrad();
        let stepLoss = 0;
        for (let j = 0; j < k; j++) {
          if (j === k - 1) dp.startGradientSum(trainable, order[position + j]);   // summed over ranks during its backward
          let out: ReturnType<typeof runGlobal>;
          try { out = runGlobal(data.rows, trainTable, order[position + j], true, 1 / k); } catch (e) { throw asDivergence(e, stepNo, lastCheckpoint, trainable.params); }
          checkFinite("the loss", out.loss, stepNo, lastCheckpoint);
          stepLoss += out.loss / k;
          state.total_flos += 6 * out.numel * flopParams;
          addMetrics(loop.interval_metrics, out.metrics);
          loop.num_tokens += out.tokens;
          loop.interval_tokens += out.tokens;
        }
        position += k;
        dp.reduceGradients(trainable);   // Σ over ranks in place: every rank takes the same step
        gradNorm = c.max_grad_norm ? trainable.clipGradNorm(c.max_grad_norm) : trainable.gradNorm();
        checkFinite("the gradient norm", gradNorm, stepNo, lastCheckpoint);
        lrUsed = learningRate(sched, state.global_step);
        opt.update(lrUsed);
        state.global_step = stepNo;
        ended = false;
        state.epoch = epoch + position / order.length;
        state.num_input_tokens_seen = loop.num_tokens;
        loop.interval_loss += stepLoss;
        loop.interval_steps += 1;
        loop.total_loss += stepLoss;
        progress.update(stepNo, stepLoss);

        if ((c.logging_strategy === "steps" && stepNo % loggingSteps === 0) || (c.logging_first_step && stepNo === 1)) logTrain();
        if (c.eval_strategy === "steps" && stepNo % evalSteps === 0 && c.eval_delay <= stepNo) evaluate();
        let saved = false;
        if (c.save_strategy === "steps" && stepNo % saveSteps === 0) { checkpoint(); saved = true; }
        await o.onStep?.(stepNo);
        await tick();   // lets a SIGINT handler run
        if (dp.any(!!stop?.signal)) {   // a signal seen by any rank stops every rank after this step
          stoppedBy = stop?.signal ?? "SIGTERM";
          if (!saved) checkpoint();
          print(`stopped by ${stoppedBy} after step ${stepNo}; saved ${lastCheckpoint} (resume_from_checkpoint: true continues)`);
          break outer;
        }
      }
      // HF runs its end-of-epoch hooks also when max_steps stops an epoch early; `ended` makes a resumed run
      // neither skip nor repeat them.
      if (!ended && (position >= order.length || state.global_step >= total)) {
        if (c.logging_strategy === "epoch" && loop.interval_steps > 0) logTrain();
        if (c.eval_strategy === "epoch" && data.evalRows && c.eval_delay <= state.epoch) evaluate();
        ended = true;
        if (position >= order.length) { epoch += 1; position = 0; }
        if (c.save_strategy === "epoch") checkpoint();
      }
      if (state.global_step >= total) break;
      if (`${state.global_step}/${epoch}/${position}/${ended}` === before) throw new Error(`the training loop made no progress at step ${state.global_step} (epoch ${epoch}, position ${position} of ${order.length}); this is a bug in preftune`);
      await tick();
    }
    progress.stop();
    const trainSeconds = loop.train_seconds + (performance.now() - tStart) / 1000;
    if (!stoppedBy) {
      const steps = Math.max(state.global_step, 1);
      emit({
        step: state.global_step, epoch: state.epoch, train_runtime: trainSeconds,
        train_samples_per_second: (state.global_step * gbs * ga) / trainSeconds, train_steps_per_second: state.global_step / trainSeconds,
        total_flos: state.total_flos, train_loss: loop.total_loss / steps,
      });
      const last = state.log_history.filter((e) => "loss" in e).pop() ?? {};
      const lastEval = state.log_history.filter((e) => "eval_loss" in e).pop() ?? {};
      const card = {
        baseModel: c.model_name_or_path!, method: c.method, dataset: data.describe, steps: state.global_step, epoch: state.epoch,
        hyperparameters: cardHyperparameters(c),
        finalMetrics: { ...last, ...lastEval }, dtype: lora ? undefined : saveDtype,
      };
      const final = { tokenizerDir: data.tokenizerDir, chatTemplate: data.chatTemplate, card, trainerState: state };
      if (!main) { /* rank 0 saves the final model */ } else if (lora) {
        saveFinalAdapter(outputDir, lora, modelDir, final);
        if (c.merge_adapter) {
          // detaches the adapter: nothing trains after this
          saveMergedModel(join(outputDir, "merged"), model, configJson, { dtype: saveDtype, extra: (dir) => copyTokenizerFiles(data.tokenizerDir, dir, data.chatTemplate) });
        }
      } else {
        saveFinalModel(outputDir, model, configJson, final, saveDtype);
      }
      const what = lora ? `LoRA adapter saved to ${outputDir}${c.merge_adapter ? ` (merged model in ${join(outputDir, "merged")})` : ""}` : `model saved to ${outputDir}`;
      print(`done: ${state.global_step} steps in ${trainSeconds.toFixed(1)} s; ${what}`);
    }
    dp.barrier();   // every rank ends after rank 0's last write
    return {
      outputDir, globalStep: state.global_step, epoch: state.epoch, logHistory: state.log_history, lastCheckpoint,
      stoppedBy, exitCode: stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] ?? 1 : 0,
    };
  } finally {
    progress.stop();
    stop?.dispose();
    refModel?.free();
    policy?.free();
    lock.release();
  }
}

