// Every transformers LR scheduler with its lr_scheduler_kwargs, against values worked out by hand from the
// formulas of transformers' optimization.py (written next to each case); fractional warmup_steps and step
// intervals; eval_steps implying eval_strategy steps; save_steps under save_strategy epoch; and the schedulers
// that step on eval metrics, which are refused with the reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveConfig } from "../../src/train/config.ts";
import { lrLambda, resolveInterval, schedulerKwargsProblems, warmupSteps, type SchedulerKwargs, type SchedulerType } from "../../src/train/schedule.ts";

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
const C45 = 0.5 * (1 + Math.SQRT1_2);   // 0.5 (1 + cos π/4)
const C135 = 0.5 * (1 - Math.SQRT1_2);  // 0.5 (1 + cos 3π/4)

function check(type: SchedulerType, warmup: number, total: number, kwargs: SchedulerKwargs, expected: [number, number][], baseLr = 1) {
  for (const [step, want] of expected) close(lrLambda({ type, baseLr, warmupSteps: warmup, totalSteps: total, kwargs }, step), want, `${type} ${JSON.stringify(kwargs)} w=${warmup} T=${total} step ${step}`);
}

test("cosine_with_restarts: num_cycles hard restarts", () => {
  // p = (s - w)/(T - w); 0.5 (1 + cos(π · ((num_cycles · p) mod 1))); 0 once p ≥ 1
  check("cosine_with_restarts", 2, 10, { num_cycles: 2 }, [[1, 0.5], [2, 1], [4, 0.5], [6, 1], [8, 0.5], [9, C135], [10, 0]]);
  check("cosine_with_restarts", 0, 4, {}, [[0, 1], [2, 0.5], [4, 0]]);   // num_cycles defaults to 1: plain cosine
});

test("polynomial: (lr - lr_end) · remaining^power + lr_end, then lr_end", () => {
  // remaining = 1 - (s - w)/(T - w); multiplier = ((lr - lr_end) · remaining^power + lr_end) / lr
  check("polynomial", 2, 10, { lr_end: 0.2, power: 2 }, [[1, 0.5], [2, 1], [4, (1.8 * 0.5625 + 0.2) / 2], [6, (1.8 * 0.25 + 0.2) / 2], [10, 0.1], [11, 0.1]], 2);
  check("polynomial", 0, 4, {}, [[2, (1 - 1e-7) * 0.5 + 1e-7]]);   // defaults lr_end 1e-7, power 1
  assert.match(schedulerKwargsProblems("polynomial", { lr_end: 1e-5 }, 1e-6).join(), /lr_end \(0.00001\) must be smaller than learning_rate/);
});

test("cosine_with_min_lr: the cosine ends at min_lr_rate (or min_lr / learning_rate)", () => {
  // f = 0.5 (1 + cos(π · 2 · num_cycles · p)); multiplier = f (1 - rate) + rate
  check("cosine_with_min_lr", 2, 10, { min_lr_rate: 0.1 }, [[1, 0.5], [2, 1], [4, C45 * 0.9 + 0.1], [6, 0.55], [10, 0.1]]);
  check("cosine_with_min_lr", 2, 10, { min_lr: 0.25 }, [[4, C45 * 0.9 + 0.1], [6, 0.55], [10, 0.1]], 2.5);   // rate = 0.25 / 2.5
  check("cosine_with_min_lr", 0, 8, { min_lr_rate: 0.5, num_cycles: 1 }, [[4, 0.5], [8, 1]]);
  assert.match(schedulerKwargsProblems("cosine_with_min_lr", null, 1).join(), /needs lr_scheduler_kwargs.min_lr_rate/);
  assert.match(schedulerKwargsProblems("cosine_with_min_lr", { min_lr: 1e-7, min_lr_rate: 0.1 }, 1).join(), /min_lr or min_lr_rate, not both/);
});

test("cosine_warmup_with_min_lr: warmup (s + 1)/w or from warmup_lr_rate, cosine one step ahead", () => {
  // warmup: (s + 1)/w, or r + (1 - r) · s / max(1, w - 1) with warmup_lr_rate r; then p = (s - w + 1)/(T - w)
  check("cosine_warmup_with_min_lr", 3, 7, { min_lr_rate: 0.1 }, [[0, 1 / 3], [2, 1], [3, C45 * 0.9 + 0.1], [4, 0.55], [6, 0.1]]);
  check("cosine_warmup_with_min_lr", 3, 7, { min_lr_rate: 0.1, warmup_lr_rate: 0.2 }, [[0, 0.2], [1, 0.6], [2, 1]]);
});

test("warmup_stable_decay: warmup, stable, decay (linear / cosine / 1-sqrt), floored at min_lr_ratio", () => {
  // defaults: warmup linear, decay cosine 0.5 (1 + cos(π p)), min_lr_ratio 0, num_stable_steps = T - w - num_decay_steps
  check("warmup_stable_decay", 2, 10, { num_decay_steps: 4 }, [[1, 0.5], [2, 1], [5, 1], [6, 1], [8, 0.5], [9, C135], [10, 0]]);
  // cosine warmup 0.5 (1 - cos(π p)), linear decay 1 - p, both scaled to [0.1, 1]
  check("warmup_stable_decay", 2, 10, { num_decay_steps: 4, warmup_type: "cosine", decay_type: "linear", min_lr_ratio: 0.1 }, [[0, 0.1], [1, 0.55], [8, 0.55], [10, 0.1]]);
  // 1-sqrt: warmup 1 - √(1 - p), decay 1 - √p; an explicit num_stable_steps; after the decay, min_lr_ratio
  check("warmup_stable_decay", 4, 10, { num_decay_steps: 4, num_stable_steps: 1, warmup_type: "1-sqrt", decay_type: "1-sqrt" },
    [[1, 1 - Math.sqrt(0.75)], [4, 1], [5, 1], [6, 0.5], [8, 1 - Math.sqrt(0.75)], [9, 0]]);
  assert.match(schedulerKwargsProblems("warmup_stable_decay", {}, 1).join(), /needs lr_scheduler_kwargs.num_decay_steps/);
  assert.match(schedulerKwargsProblems("warmup_stable_decay", { num_decay_steps: 2, decay_type: "exp" }, 1).join(), /decay_type must be one of linear, cosine, 1-sqrt/);
});

test("cosine num_cycles, inverse_sqrt timescale, and kwargs a scheduler does not take", () => {
  check("cosine", 0, 8, { num_cycles: 1 }, [[2, 0.5], [4, 0], [8, 1]]);   // a full wave: 0.5 (1 + cos(2π p))
  check("inverse_sqrt", 0, 100, { timescale: 4 }, [[0, 1], [12, 0.5], [32, 1 / 3]]);   // 1/√((s + τ - w)/τ)
  check("constant", 3, 10, { anything: 1 }, [[0, 1]]);   // get_scheduler passes constant no kwargs at all
  assert.match(schedulerKwargsProblems("linear", { num_cycles: 2 }, 1).join(), /lr_scheduler_kwargs.num_cycles is not an argument of linear \(it takes none\)/);
  assert.match(schedulerKwargsProblems("cosine", { min_lr_rate: 0.1 }, 1).join(), /not an argument of cosine \(it takes num_cycles\)/);
  assert.deepEqual(schedulerKwargsProblems("constant_with_warmup", { x: 1 }, 1), []);
});

const base = { method: "dpo", model_name_or_path: "m", dataset: "d", output_dir: "o" };

test("the config takes every transformers scheduler name; the metric-driven ones are refused with the reason", () => {
  for (const t of ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"]) assert.equal(resolveConfig({ ...base, lr_scheduler_type: t }).config.lr_scheduler_type, t);
  // the smollm3 APO recipe's schedule
  const c = resolveConfig({ ...base, lr_scheduler_type: "cosine_with_min_lr", lr_scheduler_kwargs: { min_lr_rate: 0.1 } }).config;
  assert.deepEqual(c.lr_scheduler_kwargs, { min_lr_rate: 0.1 });
  assert.throws(() => resolveConfig({ ...base, lr_scheduler_type: "cosine_with_min_lr" }), /cosine_with_min_lr needs lr_scheduler_kwargs.min_lr_rate/);
  assert.throws(() => resolveConfig({ ...base, lr_scheduler_type: "warmup_stable_decay" }), /needs lr_scheduler_kwargs.num_decay_steps/);
  for (const t of ["reduce_lr_on_plateau", "greedy"]) assert.throws(() => resolveConfig({ ...base, lr_scheduler_type: t }), new RegExp(`lr_scheduler_type ${t}: transformers steps this schedule on evaluation metrics; it is not built here`));
});

test("fractional warmup_steps and step intervals: a value below 1 is a share of the total steps, rounded up", () => {
  assert.equal(warmupSteps(95, 0.1, 0), 10);    // ceil(9.5)
  assert.equal(warmupSteps(100, 0.05, 0), 5);
  assert.equal(warmupSteps(100, 7, 0.5), 7);    // a count wins over warmup_ratio
  assert.equal(warmupSteps(100, 0, 0.25), 25);  // transformers 4's warmup_ratio
  assert.equal(resolveInterval(0.2, 12), 3);    // ceil(2.4)
  assert.equal(resolveInterval(0.5, 7), 4);
  assert.equal(resolveInterval(0.001, 10), 1);
  const c = resolveConfig({ ...base, warmup_steps: 0.1, logging_steps: 0.25, eval_strategy: "steps", eval_steps: 0.2, save_steps: 0.5 }).config;
  assert.deepEqual([c.warmup_steps, c.logging_steps, c.eval_steps, c.save_steps], [0.1, 0.25, 0.2, 0.5]);
  // above 1 a step count must be whole, as transformers checks
  assert.throws(() => resolveConfig({ ...base, warmup_steps: 1.5, eval_steps: 2.5, save_steps: 10.5, logging_steps: 3.5 }), (e: Error) =>
    ["warmup_steps", "eval_steps", "save_steps", "logging_steps"].every((k) => new RegExp(`${k}: must be a whole number when above 1`).test(e.message)));
});

test("eval_steps alone implies eval_strategy steps; save_steps under save_strategy epoch is ignored, as transformers does", () => {
  const a = resolveConfig({ ...base, eval_steps: 20 });
  assert.equal(a.config.eval_strategy, "steps");
  assert.ok(a.notes.some((n) => /^eval_steps: set without eval_strategy: evaluating every eval_steps/.test(n)), a.notes.join("\n"));
  const b = resolveConfig({ ...base, eval_steps: 20, eval_strategy: "epoch" });
  assert.equal(b.config.eval_strategy, "epoch");
  assert.ok(b.notes.some((n) => /^eval_steps: no effect with eval_strategy "epoch"/.test(n)));
  const c = resolveConfig({ ...base, save_steps: 20, save_strategy: "epoch" });
  assert.equal(c.config.save_strategy, "epoch");
  assert.ok(c.notes.some((n) => /^save_steps: no effect with save_strategy "epoch" \(transformers reads save_steps only with save_strategy steps\)/.test(n)));
  assert.throws(() => resolveConfig({ ...base, save_strategy: "best" }), /save_strategy best .* is not built/);
});
