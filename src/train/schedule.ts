// Learning-rate schedules with the exact shape of transformers' get_scheduler (LambdaLR multipliers of
// the base lr), plus the step arithmetic around them: warmup from warmup_ratio/warmup_steps and the total
// number of optimizer steps from max_steps or num_train_epochs. Pure functions; no optimizer state here.

export const SCHEDULER_TYPES = ["linear", "cosine", "constant", "constant_with_warmup", "inverse_sqrt"] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

export interface ScheduleConfig {
  type: SchedulerType;
  baseLr: number;          // learning_rate
  warmupSteps: number;     // already resolved (see warmupSteps())
  totalSteps: number;      // optimizer steps of the whole run (max_steps)
}

/**
 * The multiplier transformers' LambdaLR applies after `step` scheduler steps, i.e. the factor used for
 * optimizer step number step+1. Warmup is linear from 0 (step 0 of a warmed-up run trains with lr 0, as in
 * transformers). `constant` ignores warmup, as transformers' get_constant_schedule does.
 */
export function lrLambda(c: ScheduleConfig, step: number): number {
  const w = c.warmupSteps;
  const warm = () => step / Math.max(1, w);
  switch (c.type) {
    case "constant":
      return 1;
    case "constant_with_warmup":
      return step < w ? warm() : 1;
    case "linear":
      if (step < w) return warm();
      return Math.max(0, (c.totalSteps - step) / Math.max(1, c.totalSteps - w));
    case "cosine": {
      if (step < w) return warm();
      const progress = (step - w) / Math.max(1, c.totalSteps - w);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));   // num_cycles 0.5
    }
    case "inverse_sqrt": {
      if (step < w) return warm();
      const timescale = w || 10_000;   // transformers: timescale defaults to num_warmup_steps, else 10k
      return 1 / Math.sqrt((step + timescale - w) / timescale);
    }
    default:
      throw new Error(`lr_scheduler_type "${String(c.type)}" is unknown; use one of ${SCHEDULER_TYPES.join(", ")}`);
  }
}

/** Learning rate of optimizer step number step+1 (0-based `step` = steps already taken). */
export function learningRate(c: ScheduleConfig, step: number): number {
  return c.baseLr * lrLambda(c, step);
}

/** TrainingArguments.get_warmup_steps: warmup_steps when > 0, else ceil(total · warmup_ratio). */
export function warmupSteps(totalSteps: number, warmup_steps: number, warmup_ratio: number): number {
  return warmup_steps > 0 ? warmup_steps : Math.ceil(totalSteps * warmup_ratio);
}

export interface StepPlan {
  microBatchesPerEpoch: number;   // batches of per_device_train_batch_size in one pass over the data
  updatesPerEpoch: number;        // optimizer steps per epoch: ceil(micro-batches / accumulation)
  totalSteps: number;             // max_steps when > 0, else ceil(num_train_epochs · updatesPerEpoch)
  epochs: number;                 // passes over the data needed (the last may stop early)
}

/**
 * The step arithmetic of the HF Trainer's loop: an epoch's last optimizer step takes the remaining
 * micro-batches (fewer than gradient_accumulation_steps when they do not divide), so an epoch has
 * ceil(batches / GA) updates; max_steps > 0 wins over num_train_epochs and may span several epochs.
 */
export function planSteps(rows: number, batchSize: number, accumulation: number, maxSteps: number, numTrainEpochs: number, dropLast = false): StepPlan {
  if (rows <= 0) throw new Error("the training set is empty");
  const microBatchesPerEpoch = dropLast ? Math.floor(rows / batchSize) : Math.ceil(rows / batchSize);
  if (microBatchesPerEpoch === 0) throw new Error(`dataloader_drop_last with ${rows} rows and per_device_train_batch_size ${batchSize} leaves no batch`);
  const updatesPerEpoch = Math.ceil(microBatchesPerEpoch / accumulation);
  const totalSteps = maxSteps > 0 ? maxSteps : Math.ceil(numTrainEpochs * updatesPerEpoch);
  return { microBatchesPerEpoch, updatesPerEpoch, totalSteps, epochs: Math.ceil(totalSteps / updatesPerEpoch) };
}

/** logging_steps / eval_steps / save_steps below 1 are a fraction of the total steps, as in transformers. */
export function resolveInterval(value: number, totalSteps: number): number {
  return value > 0 && value < 1 ? Math.ceil(value * totalSteps) : Math.round(value);
}
