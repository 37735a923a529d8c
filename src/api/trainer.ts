// The library's trainers, in TRL's shape: new ORPOTrainer({ model, args: new ORPOConfig({...}), train_dataset,
// eval_dataset, processing_class, peft_config, callbacks }).train(). One base (Trainer) over the training loop
// of src/train/trainer.ts (the run the CLI's `preftune train` runs too); the method classes fix the config class.
// Callbacks on_log / on_step_end / on_evaluate, an AbortSignal that stops with a checkpoint, evaluate(),
// save_model() and the log history. Not the step math (src/train) or the CLI's parsing.
import { copyTokenizerFiles } from "../train/checkpoint.ts";
import { resolveConfig, type TrainConfig } from "../train/config.ts";
import { Trainer as TrainingRun, type TrainOptions, type TrainResult } from "../train/trainer.ts";
import type { LogEntry } from "../train/metrics.ts";
import { CPOConfig, DPOConfig, KTOConfig, LoraConfig, ORPOConfig, SFTConfig, TrainingArguments } from "./config.ts";
import type { Dataset } from "./datasets.ts";
import type { PreTrainedModel, PreTrainedTokenizer } from "./models.ts";

/** What callbacks see (transformers' TrainerState, the fields that exist here). */
export interface TrainerState { global_step: number; epoch: number; log_history: LogEntry[] }

/** transformers' TrainerCallback events that exist here; every one optional. on_step_end may be async. */
export interface TrainerCallback {
  on_log?(logs: LogEntry, state: TrainerState): void;
  on_step_end?(state: TrainerState): void | Promise<void>;
  on_evaluate?(metrics: LogEntry, state: TrainerState): void;
}

export interface TrainerInit<C extends TrainingArguments> {
  /** the policy: a loaded model (trained in place) or a model folder */
  model: PreTrainedModel | string;
  args: C;
  train_dataset?: Dataset;
  eval_dataset?: Dataset | null;
  /** the tokenizer; default: the model folder's */
  processing_class?: PreTrainedTokenizer;
  /** a LoraConfig trains a LoRA adapter on the frozen model (PEFT's get_peft_model) */
  peft_config?: LoraConfig | null;
  callbacks?: TrainerCallback[];
  /** aborting stops training after the current step, with a checkpoint (as Ctrl-C does in the CLI) */
  signal?: AbortSignal;
  /** no console output (default false) */
  quiet?: boolean;
  /** where progress lines go (default stderr) */
  print?: (line: string) => void;
}

/** transformers' TrainOutput, with how the run ended. */
export interface TrainOutput {
  global_step: number;
  training_loss: number | null;
  metrics: LogEntry;
  stopped_by: TrainResult["stoppedBy"];
  last_checkpoint: string | null;
  output_dir: string;
}

/** The shared trainer: the config resolved with the model, data and adapter given, then the one training loop. */
export class Trainer<C extends TrainingArguments = TrainingArguments> {
  readonly args: C;
  readonly model: PreTrainedModel | null;
  readonly train_dataset: Dataset | null;
  readonly eval_dataset: Dataset | null;
  readonly processing_class: PreTrainedTokenizer | null;
  readonly callbacks: TrainerCallback[];
  /** global_step, epoch and every logged entry (transformers' trainer.state). */
  readonly state: TrainerState = { global_step: 0, epoch: 0, log_history: [] };
  private readonly config: TrainConfig;
  private readonly notes: readonly string[];
  private readonly opts: Pick<TrainerInit<C>, "signal" | "quiet" | "print">;

  constructor(init: TrainerInit<C>) {
    if (!(init.args instanceof TrainingArguments)) throw new TypeError("args must be a config object (new ORPOConfig({...}), new DPOConfig({...}), ...)");
    this.args = init.args;
    this.model = typeof init.model === "string" ? null : init.model;
    this.train_dataset = init.train_dataset ?? null;
    this.eval_dataset = init.eval_dataset ?? null;
    this.processing_class = init.processing_class ?? null;
    this.callbacks = [...(init.callbacks ?? [])];
    this.opts = { signal: init.signal, quiet: init.quiet, print: init.print };
    const modelDir = typeof init.model === "string" ? init.model : init.model.name_or_path;
    // The args' keys, plus what the objects say: the model folder, the adapter, bf16 compute of a bfloat16 model.
    const raw: Record<string, unknown> = { ...init.args.given, model_name_or_path: modelDir };
    if (init.peft_config) Object.assign(raw, init.peft_config.toTrainingKeys(), { use_peft: true });
    if (this.model?.dtype === "bfloat16" && !raw.bf16) raw.bf16 = true;
    if (this.train_dataset) for (const k of ["dataset_name", "dataset", "dataset_mixture", "datasets", "dataset_mixer"]) delete raw[k];
    const { config, notes } = resolveConfig(raw, init.args.constructor.name, [], { modelAndData: !!this.train_dataset });
    this.config = config;
    this.notes = [...init.args.notes, ...notes.filter((n) => !init.args.notes.includes(n))];
  }

  /** The resolved config the loop runs (every key). */
  get train_args(): Readonly<TrainConfig> { return this.config; }
  get log_history(): LogEntry[] { return this.state.log_history; }

  add_callback(cb: TrainerCallback): void { this.callbacks.push(cb); }

  private sources() {
    if (!this.train_dataset) return undefined;
    const ev = this.eval_dataset;
    return { train: this.train_dataset.toDataSource(), test: ev ? ev.toDataSource() : null, describe: this.train_dataset.name };
  }

  private run(over: { evaluateOnly?: boolean; resume?: string | boolean | null } = {}, notes = this.notes): Promise<TrainResult> {
    const config: TrainConfig = { ...this.config };
    if (over.resume !== undefined) config.resume_from_checkpoint = over.resume;
    if (over.evaluateOnly && this.eval_dataset === null && this.train_dataset !== null) throw new Error("evaluate: the trainer has no eval_dataset");
    return this.createRun(config, {
      notes: [...notes], model: this.model?.native, sources: this.sources(), signal: over.evaluateOnly ? undefined : this.opts.signal, quiet: this.opts.quiet, print: this.opts.print,
      handleSignals: false,   // a library caller owns the process's signals (signal is the way to stop); the CLI saves on Ctrl-C
      evaluateOnly: over.evaluateOnly,
      // evaluate() reports its own entry (at the trainer's step); during training the state callbacks see is live,
      // as transformers' TrainerState
      onLog: over.evaluateOnly ? undefined : (e) => {
        this.state.global_step = e.step;
        this.state.epoch = e.epoch;
        this.state.log_history.push(e);
        for (const cb of this.callbacks) cb.on_log?.(e, this.state);
      },
      onEvaluate: over.evaluateOnly ? undefined : (e) => { for (const cb of this.callbacks) cb.on_evaluate?.(e, this.state); },
      onStep: async (step) => {
        this.state.global_step = step;
        for (const cb of this.callbacks) await cb.on_step_end?.(this.state);
      },
    }).run();
  }

  /**
   * The run behind train() and evaluate(): src/train/trainer.ts's Trainer, whose steps (prepareData, loadPolicy,
   * buildReference, trainStep, evaluate, checkpoint, saveFinal, ...) a subclass may override; override this to
   * return such a subclass.
   */
  protected createRun(config: TrainConfig, options: TrainOptions): TrainingRun {
    return new TrainingRun(config, options);
  }

  /** Trains; resume_from_checkpoint: a checkpoint folder, or true for the latest in output_dir. */
  async train(opts: { resume_from_checkpoint?: string | boolean | null } = {}): Promise<TrainOutput> {
    const r = await this.run({ resume: opts.resume_from_checkpoint });
    this.state.global_step = r.globalStep;
    this.state.epoch = r.epoch;
    this.state.log_history.splice(0, this.state.log_history.length, ...r.logHistory);
    const summary = [...r.logHistory].reverse().find((e) => "train_loss" in e) ?? {};
    return { global_step: r.globalStep, training_loss: summary.train_loss ?? null, metrics: summary, stopped_by: r.stoppedBy, last_checkpoint: r.lastCheckpoint, output_dir: r.outputDir };
  }

  /**
   * Evaluates the model as it is now (after train(), the trained weights) on the eval rows: eval_loss and the
   * method's eval_* metrics, as logged during training; nothing is written. Appends the entry to the log history.
   */
  async evaluate(): Promise<LogEntry> {
    const r = await this.run({ evaluateOnly: true }, []);
    const entry = r.logHistory.find((e) => "eval_loss" in e);
    if (!entry) throw new Error("evaluate: the evaluation did not run");
    const e = { ...entry, step: this.state.global_step, epoch: this.state.epoch };
    this.state.log_history.push(e);
    for (const cb of this.callbacks) cb.on_log?.(e, this.state);
    for (const cb of this.callbacks) cb.on_evaluate?.(e, this.state);
    return e;
  }

  /**
   * Writes the model (an adapter folder when training a LoRA adapter) and the tokenizer files into dir
   * (default output_dir), as TRL's save_model. Needs the model object (trainers given a folder write their
   * final model into output_dir themselves).
   */
  save_model(dir: string = this.config.output_dir!): void {
    if (!this.model) throw new Error("save_model needs the model object; a trainer given a model folder writes its final model into output_dir");
    const tokenizerDir = this.processing_class?.dir ?? this.model.name_or_path;
    this.model.save_pretrained(dir, { extra: (d) => copyTokenizerFiles(tokenizerDir, d, this.config.chat_template) });
  }
}

export class ORPOTrainer extends Trainer<ORPOConfig> {}
export class DPOTrainer extends Trainer<DPOConfig> {}
export class KTOTrainer extends Trainer<KTOConfig> {}
export class CPOTrainer extends Trainer<CPOConfig> {}
export class SFTTrainer extends Trainer<SFTConfig> {}
