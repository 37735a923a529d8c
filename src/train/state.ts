// Everything a checkpoint must hold besides weights and optimizer moments, as plain JSON-able data:
// HF's trainer_state.json, the scheduler state, the data-order state (seed/epoch/position) and the loop's
// partial logging interval, plus the data order itself (batchOrder) so a resumed run sees the same batches;
// and the schemas every one of them is checked against when it is read back (a file someone edited, a disk
// that lost bits), with errors naming the file, the field, what it must be and what it is.
// Not file I/O (checkpoint.ts) and not the loop.
import { z } from "zod";
import { batchIndices } from "../data/sampler.ts";
import { preview } from "../data/errors.ts";
import type { LogEntry, MetricSums } from "./metrics.ts";
import { SCHEDULER_TYPES, type SchedulerType } from "./schedule.ts";

/** transformers' TrainerState, as written to trainer_state.json (same keys, so HF tools can read it). */
export interface TrainerStateJson {
  best_global_step: number | null;
  best_metric: number | null;
  best_model_checkpoint: string | null;
  epoch: number;
  eval_steps: number;
  global_step: number;
  is_hyper_param_search: boolean;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  log_history: LogEntry[];
  logging_steps: number;
  max_steps: number;
  num_input_tokens_seen: number;
  num_train_epochs: number;
  save_steps: number;
  stateful_callbacks: Record<string, unknown>;
  total_flos: number;
  train_batch_size: number;
  trial_name: string | null;
  trial_params: Record<string, unknown> | null;
}

/** scheduler.json: what LambdaLR's state_dict holds, in words. */
export interface SchedulerState {
  lr_scheduler_type: SchedulerType;
  base_lr: number;
  warmup_steps: number;
  total_steps: number;
  last_epoch: number;       // scheduler steps taken = optimizer steps (torch's name)
  last_lr: number;          // lr the next step will use
}

/**
 * rng_state.json: the only randomness in a run is the data order, a pure function of these fields
 * (batchOrder), so restoring them restores the order exactly. `position` counts micro-batches of `epoch`
 * already consumed; epoch_end_done says whether the end-of-epoch hooks (eval/save with strategy "epoch")
 * already ran after the last step, so a resumed run neither repeats nor skips them.
 */
export interface DataOrderState {
  seed: number;
  epoch: number;
  position: number;
  batches: number;          // micro-batches in one epoch
  rows: number;             // training rows (a different data set cannot resume)
  batch_size: number;
  shuffle: boolean;
  group_by_length: boolean;
  drop_last: boolean;
  epoch_end_done: boolean;
}

/** preftune_state.json: the loop's running sums, so a resumed run logs the same numbers. */
export interface LoopState {
  interval_loss: number;        // Σ step losses since the last log
  interval_steps: number;
  interval_metrics: MetricSums;
  interval_tokens: number;
  total_loss: number;           // Σ of every step loss (train_loss at the end)
  num_tokens: number;           // cumulative Σ attention mask of training rows (TRL num_tokens)
  train_seconds: number;        // time spent training before this checkpoint (train_runtime)
  gradient_accumulation_steps: number;
  method: string;
}

export function initialTrainerState(o: { maxSteps: number; loggingSteps: number; evalSteps: number; saveSteps: number; batchSize: number; epochs: number }): TrainerStateJson {
  return {
    best_global_step: null, best_metric: null, best_model_checkpoint: null, epoch: 0, eval_steps: o.evalSteps,
    global_step: 0, is_hyper_param_search: false, is_local_process_zero: true, is_world_process_zero: true,
    log_history: [], logging_steps: o.loggingSteps, max_steps: o.maxSteps, num_input_tokens_seen: 0,
    num_train_epochs: o.epochs, save_steps: o.saveSteps, stateful_callbacks: {}, total_flos: 0,
    train_batch_size: o.batchSize, trial_name: null, trial_params: null,
  };
}

/**
 * The micro-batches (row indices) of one epoch: reshuffled per epoch from seed + epoch when shuffling,
 * as a DistributedSampler-style set_epoch does; the same inputs give the same order in every process.
 */
export function batchOrder(s: Omit<DataOrderState, "epoch" | "position" | "batches" | "epoch_end_done">, epoch: number, lengths?: ArrayLike<number>): number[][] {
  return batchIndices(s.rows, {
    batchSize: s.batch_size, shuffle: s.shuffle, seed: s.seed + epoch,
    groupByLength: s.group_by_length, lengths, dropLast: s.drop_last,
  });
}

/** Why a checkpoint's data-order state cannot continue with this run's data and settings, or null. */
export function orderMismatch(saved: DataOrderState, now: Omit<DataOrderState, "epoch" | "position" | "epoch_end_done">): string | null {
  const keys = ["rows", "batch_size", "seed", "shuffle", "group_by_length", "drop_last", "batches"] as const;
  const diff = keys.filter((k) => saved[k] !== now[k]).map((k) => `${k} ${saved[k]} → ${now[k]}`);
  return diff.length ? diff.join(", ") : null;
}

// ---------------------------------------------------------------------------------------------------------
// schemas of what is read back

const whole = (min = 0) => { const m = `must be a whole number ≥ ${min}`; return z.number({ error: m }).int({ error: m }).min(min, { error: m }); };
const int = () => z.number({ error: "must be a whole number" }).int({ error: "must be a whole number" });
const nonNegative = () => z.number({ error: "must be a number ≥ 0" }).min(0, { error: "must be a number ≥ 0" });
const finite = () => z.number({ error: "must be a finite number" });
const bool = () => z.boolean({ error: "must be true or false" });
const nullable = <T extends z.ZodType>(t: T) => t.nullable();
const numbers = () => z.record(z.string(), z.number({ error: "must be a number" }), { error: "must be an object of numbers" });

export const TrainerStateSchema = z.looseObject({
  global_step: whole(), epoch: nonNegative(), max_steps: whole(), log_history: z.array(numbers(), { error: "must be a list of log entries" }),
  best_global_step: nullable(whole()), best_metric: nullable(finite()), best_model_checkpoint: nullable(z.string({ error: "must be a string or null" })),
  eval_steps: nonNegative(), is_hyper_param_search: bool(), is_local_process_zero: bool(), is_world_process_zero: bool(),
  logging_steps: nonNegative(), num_input_tokens_seen: whole(), num_train_epochs: nonNegative(), save_steps: nonNegative(),
  stateful_callbacks: z.record(z.string(), z.unknown(), { error: "must be an object" }), total_flos: nonNegative(), train_batch_size: whole(1),
  trial_name: nullable(z.string({ error: "must be a string or null" })), trial_params: nullable(z.record(z.string(), z.unknown(), { error: "must be an object or null" })),
}, { error: "must be a JSON object" });

export const SchedulerStateSchema = z.looseObject({
  lr_scheduler_type: z.enum(SCHEDULER_TYPES, { error: `must be one of ${SCHEDULER_TYPES.join(", ")}` }),
  base_lr: nonNegative(), warmup_steps: whole(), total_steps: whole(), last_epoch: whole(), last_lr: finite(),
}, { error: "must be a JSON object" });

export const DataOrderStateSchema = z.looseObject({
  seed: int(), epoch: whole(), position: whole(), batches: whole(1), rows: whole(1), batch_size: whole(1),
  shuffle: bool(), group_by_length: bool(), drop_last: bool(), epoch_end_done: bool(),
}, { error: "must be a JSON object" });

export const LoopStateSchema = z.looseObject({
  interval_loss: finite(), interval_steps: whole(),
  interval_metrics: z.object({ sum: numbers(), count: z.record(z.string(), whole(1), { error: "must be an object of counts" }) }, { error: "must be an object {sum, count}" }),
  interval_tokens: whole(), total_loss: finite(), num_tokens: whole(), train_seconds: nonNegative(),
  gradient_accumulation_steps: whole(1), method: z.string({ error: "must be a method name" }),
}, { error: "must be a JSON object" });

/** The metadata preftune writes into optimizer.safetensors (safetensors metadata values are strings). */
export const OptimizerMetaSchema = z.looseObject({
  format: z.enum(["preftune.adamw", "preftune.adamw_8bit"], { error: "must be \"preftune.adamw\" or \"preftune.adamw_8bit\" (a preftune AdamW state)" }),
  step: z.string({ error: "must be a whole number ≥ 0 (as a string)" }).regex(/^\d{1,15}$/, { error: "must be a whole number ≥ 0 (as a string)" }),
}, { error: "is missing (the file has no metadata)" });

/**
 * Checks `value` (read from `file`) against `schema`; every problem becomes one line "FILE: FIELD must be …, got
 * VALUE" and the lines are thrown together, followed by `fix`.
 */
export function checkSchema<T>(schema: z.ZodType<T>, value: unknown, file: string, fix: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  if (shape && value !== null && typeof value === "object" && !Array.isArray(value) && !Object.keys(shape).some((k) => k in value)) {
    const keys = Object.keys(shape);
    throw new Error(`${file}: has none of the fields it must hold (${keys.slice(0, 4).join(", ")}${keys.length > 4 ? ", …" : ""}), got ${preview(value)}\n${fix}`);
  }
  const lines = r.error.issues.slice(0, 12).map((iss) => {
    const field = iss.path.length ? iss.path.map((k, i) => (typeof k === "number" ? `[${k}]` : i ? `.${String(k)}` : String(k))).join("") : "the file";
    let got: unknown = value;
    for (const k of iss.path) got = got !== null && typeof got === "object" ? (got as Record<PropertyKey, unknown>)[k as PropertyKey] : undefined;
    const shown = got === undefined ? "it is missing" : `got ${preview(got)}`;
    return `${file}: ${field} ${iss.message}, ${shown}`;
  });
  if (r.error.issues.length > 12) lines.push(`… and ${r.error.issues.length - 12} more problems`);
  throw new Error(`${lines.join("\n")}\n${fix}`);
}

/** Optimizer steps a data position stands for: whole epochs of ceil(batches / GA) steps, then ceil(position / GA). */
export function stepsAt(order: Pick<DataOrderState, "epoch" | "position" | "batches">, ga: number): number {
  return order.epoch * Math.ceil(order.batches / ga) + Math.ceil(order.position / ga);
}
