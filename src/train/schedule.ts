// Learning-rate schedules with the exact shape of transformers' get_scheduler (LambdaLR multipliers of the
// base lr, optimization.py), their lr_scheduler_kwargs, plus the step arithmetic around them: warmup from
// warmup_steps (a fraction below 1, as transformers 5) or warmup_ratio, and the total number of optimizer
// steps from max_steps or num_train_epochs. Pure functions; no optimizer state here.

export const SCHEDULER_TYPES = [
  "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
  "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
] as const;
export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

/** transformers' schedulers that step on evaluation metrics rather than on the step count; not built here. */
export const METRIC_SCHEDULERS: readonly SchedulerType[] = ["reduce_lr_on_plateau", "greedy"];

export type SchedulerKwargs = Record<string, unknown>;

export interface ScheduleConfig {
  type: SchedulerType;
  baseLr: number;          // learning_rate
  warmupSteps: number;     // already resolved (see warmupSteps())
  totalSteps: number;      // optimizer steps of the whole run (max_steps)
  kwargs?: SchedulerKwargs | null;   // lr_scheduler_kwargs (scheduler_specific_kwargs)
}

/** The keyword arguments each get_*_schedule function takes besides the optimizer, warmup and total steps. */
const KWARGS: Record<SchedulerType, readonly string[]> = {
  linear: [],
  cosine: ["num_cycles"],
  cosine_with_restarts: ["num_cycles"],
  polynomial: ["lr_end", "power"],
  constant: [],                     // get_scheduler passes no kwargs to these two, so any are ignored
  constant_with_warmup: [],
  inverse_sqrt: ["timescale"],
  reduce_lr_on_plateau: [],
  cosine_with_min_lr: ["num_cycles", "min_lr", "min_lr_rate"],
  cosine_warmup_with_min_lr: ["num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"],
  warmup_stable_decay: ["num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio", "num_cycles"],
  greedy: [],
};
const SHAPES = ["linear", "cosine", "1-sqrt"];

/**
 * Problems with lr_scheduler_kwargs for this scheduler, as transformers would raise them (an unexpected
 * keyword is a TypeError there), each naming the key and the fix. Empty when fine.
 */
export function schedulerKwargsProblems(type: SchedulerType, kwargs: SchedulerKwargs | null | undefined, baseLr: number): string[] {
  const kw = kwargs ?? {};
  const out: string[] = [];
  if (METRIC_SCHEDULERS.includes(type)) return out;   // refused as a whole elsewhere
  const allowed = KWARGS[type];
  const ignoresKwargs = type === "constant" || type === "constant_with_warmup";
  if (!ignoresKwargs) {
    for (const k of Object.keys(kw)) {
      if (!allowed.includes(k)) out.push(`lr_scheduler_kwargs.${k} is not an argument of ${type}${allowed.length ? ` (it takes ${allowed.join(", ")})` : " (it takes none)"}`);
    }
  }
  const num = (k: string, ok: (x: number) => boolean, what: string) => {
    if (kw[k] === undefined || kw[k] === null) return;
    if (typeof kw[k] !== "number" || !Number.isFinite(kw[k] as number) || !ok(kw[k] as number)) out.push(`lr_scheduler_kwargs.${k} must be ${what}, got ${JSON.stringify(kw[k])}`);
  };
  if (type === "cosine" || type === "cosine_with_min_lr" || type === "cosine_warmup_with_min_lr" || type === "warmup_stable_decay") num("num_cycles", (x) => x >= 0, "a number ≥ 0");
  if (type === "cosine_with_restarts") num("num_cycles", (x) => Number.isInteger(x) && x >= 1, "a whole number ≥ 1");
  if (type === "polynomial") {
    num("lr_end", (x) => x >= 0, "a number ≥ 0");
    num("power", () => true, "a number");
    const lrEnd = typeof kw.lr_end === "number" ? kw.lr_end : 1e-7;
    if (!(baseLr > lrEnd)) out.push(`polynomial: lr_end (${lrEnd}) must be smaller than learning_rate (${baseLr}); set lr_scheduler_kwargs.lr_end below it`);
  }
  if (type === "inverse_sqrt") num("timescale", (x) => Number.isInteger(x) && x > 0, "a whole number > 0");
  if (type === "cosine_with_min_lr" || type === "cosine_warmup_with_min_lr") {
    num("min_lr", (x) => x >= 0, "a number ≥ 0");
    num("min_lr_rate", (x) => x >= 0 && x <= 1, "a number in [0, 1]");
    if (type === "cosine_warmup_with_min_lr") num("warmup_lr_rate", (x) => x >= 0 && x <= 1, "a number in [0, 1]");
    const hasLr = kw.min_lr != null, hasRate = kw.min_lr_rate != null;
    if (hasLr && hasRate) out.push(`${type}: set lr_scheduler_kwargs min_lr or min_lr_rate, not both`);
    if (!hasLr && !hasRate) out.push(`${type} needs lr_scheduler_kwargs.min_lr_rate (a fraction of learning_rate, e.g. {min_lr_rate: 0.1}) or lr_scheduler_kwargs.min_lr`);
  }
  if (type === "warmup_stable_decay") {
    if (kw.num_decay_steps == null) out.push("warmup_stable_decay needs lr_scheduler_kwargs.num_decay_steps (steps of the final decay phase)");
    num("num_decay_steps", (x) => Number.isInteger(x) && x >= 0, "a whole number ≥ 0");
    num("num_stable_steps", (x) => Number.isInteger(x) && x >= 0, "a whole number ≥ 0");
    num("min_lr_ratio", (x) => x >= 0 && x <= 1, "a number in [0, 1]");
    for (const k of ["warmup_type", "decay_type"]) {
      if (kw[k] != null && !SHAPES.includes(kw[k] as string)) out.push(`lr_scheduler_kwargs.${k} must be one of ${SHAPES.join(", ")}, got ${JSON.stringify(kw[k])}`);
    }
  }
  return out;
}

const n = (kw: SchedulerKwargs | null | undefined, k: string, def: number): number => (typeof kw?.[k] === "number" ? (kw[k] as number) : def);

/**
 * The multiplier transformers' LambdaLR applies after `step` scheduler steps, i.e. the factor used for
 * optimizer step number step+1. Warmup is linear from 0 (step 0 of a warmed-up run trains with lr 0, as in
 * transformers). `constant` ignores warmup, as transformers' get_constant_schedule does. Each case follows
 * the lr_lambda of the matching get_*_schedule function in transformers' optimization.py.
 */
export function lrLambda(c: ScheduleConfig, step: number): number {
  const w = c.warmupSteps, T = c.totalSteps, kw = c.kwargs;
  const warm = () => step / Math.max(1, w);
  const progress = () => (step - w) / Math.max(1, T - w);
  switch (c.type) {
    case "constant":
      return 1;
    case "constant_with_warmup":
      return step < w ? warm() : 1;
    case "linear":
      if (step < w) return warm();
      return Math.max(0, (T - step) / Math.max(1, T - w));
    case "cosine": {
      if (step < w) return warm();
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * n(kw, "num_cycles", 0.5) * 2 * progress())));
    }
    case "cosine_with_restarts": {
      // hard restarts: num_cycles half-cosines from 1 to 0, each restarting at 1
      if (step < w) return warm();
      const p = progress();
      if (p >= 1) return 0;
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((n(kw, "num_cycles", 1) * p) % 1))));
    }
    case "polynomial": {
      // lr decays from learning_rate to lr_end as (remaining fraction)^power, then stays at lr_end
      const lrEnd = n(kw, "lr_end", 1e-7), power = n(kw, "power", 1);
      if (step < w) return warm();
      if (step > T) return lrEnd / c.baseLr;
      const remaining = 1 - (step - w) / (T - w);
      return ((c.baseLr - lrEnd) * remaining ** power + lrEnd) / c.baseLr;
    }
    case "inverse_sqrt": {
      if (step < w) return warm();
      const timescale = typeof kw?.timescale === "number" ? kw.timescale : w || 10_000;   // default: warmup steps, else 10k
      return 1 / Math.sqrt((step + timescale - w) / timescale);
    }
    case "cosine_with_min_lr": {
      if (step < w) return warm();
      const rate = minLrRate(c);
      const f = 0.5 * (1 + Math.cos(Math.PI * n(kw, "num_cycles", 0.5) * 2 * progress()));
      return Math.max(0, f * (1 - rate) + rate);
    }
    case "cosine_warmup_with_min_lr": {
      // the _lr_rate variant: warmup reaches 1 one step earlier (step + 1), and so does the cosine
      const rate = minLrRate(c);
      if (step < w) {
        const wr = kw?.warmup_lr_rate;
        if (typeof wr !== "number") return (step + 1) / Math.max(1, w);
        return wr + ((1 - wr) * step) / Math.max(1, w - 1);
      }
      const p = (step - w + 1) / Math.max(1, T - w);
      const f = 0.5 * (1 + Math.cos(Math.PI * n(kw, "num_cycles", 0.5) * 2 * p));
      return Math.max(0, f * (1 - rate) + rate);
    }
    case "warmup_stable_decay": {
      // warmup (shape warmup_type) → stable at 1 → decay (shape decay_type), all floored at min_lr_ratio
      const minRatio = n(kw, "min_lr_ratio", 0), cycles = n(kw, "num_cycles", 0.5);
      const decay = n(kw, "num_decay_steps", 0);
      const stable = typeof kw?.num_stable_steps === "number" ? kw.num_stable_steps : T - w - decay;
      const shape = (kind: string, p: number, rising: boolean): number => {
        if (kind === "linear") return rising ? p : 1 - p;
        if (kind === "cosine") return rising ? 0.5 * (1 - Math.cos(Math.PI * p)) : 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * p));
        return rising ? 1 - Math.sqrt(1 - p) : 1 - Math.sqrt(p);   // "1-sqrt"
      };
      if (step < w) return Math.max(0, shape((kw?.warmup_type as string) ?? "linear", step / Math.max(1, w), true) * (1 - minRatio) + minRatio);
      if (step < w + stable) return 1;
      if (step < w + stable + decay) {
        const p = (step - w - stable) / Math.max(1, decay);
        return Math.max(0, shape((kw?.decay_type as string) ?? "cosine", p, false) * (1 - minRatio) + minRatio);
      }
      return minRatio;
    }
    default:
      throw new Error(`lr_scheduler_type "${String(c.type)}" has no step-count schedule here; use one of ${SCHEDULER_TYPES.filter((t) => !METRIC_SCHEDULERS.includes(t)).join(", ")}`);
  }
}

/** cosine_with_min_lr's floor as a fraction of the base lr: min_lr_rate, or min_lr / learning_rate. */
function minLrRate(c: ScheduleConfig): number {
  const kw = c.kwargs ?? {};
  if (typeof kw.min_lr_rate === "number") return kw.min_lr_rate;
  if (typeof kw.min_lr === "number") return kw.min_lr / c.baseLr;
  throw new Error(`${c.type} needs lr_scheduler_kwargs.min_lr_rate or min_lr`);
}

/** Learning rate of optimizer step number step+1 (0-based `step` = steps already taken). */
export function learningRate(c: ScheduleConfig, step: number): number {
  return c.baseLr * lrLambda(c, step);
}

/**
 * TrainingArguments.get_warmup_steps: warmup_steps ≥ 1 is a step count, a warmup_steps in (0, 1) is a fraction
 * of the total (transformers 5: ceil(total · warmup_steps)); with warmup_steps 0, transformers 4's warmup_ratio
 * applies the same way.
 */
export function warmupSteps(totalSteps: number, warmup_steps: number, warmup_ratio: number): number {
  if (warmup_steps >= 1) return Math.floor(warmup_steps);
  if (warmup_steps > 0) return Math.ceil(totalSteps * warmup_steps);
  return Math.ceil(totalSteps * warmup_ratio);
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

/** logging_steps / eval_steps / save_steps below 1 are a fraction of the total steps, as in transformers (ceil). */
export function resolveInterval(value: number, totalSteps: number): number {
  return value > 0 && value < 1 ? Math.max(1, Math.ceil(value * totalSteps)) : Math.round(value);
}
