// Everything a checkpoint must hold besides weights and optimizer moments, as plain JSON-able data:
// HF's trainer_state.json, the scheduler state, the data-order state (seed/epoch/position) and the loop's
// partial logging interval, plus the data order itself (batchOrder) so a resumed run sees the same batches.
// Not file I/O (checkpoint.ts) and not the loop.
import { batchIndices } from "../data/sampler.ts";
import type { LogEntry, MetricSums } from "./metrics.ts";
import type { SchedulerType } from "./schedule.ts";

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
