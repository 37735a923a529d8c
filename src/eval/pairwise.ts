// Preference accuracy on held-out pairs: completion log-probs of chosen and rejected under the policy (and a
// reference), one forward per batch. With a reference: TRL's DPO eval metrics, rewards β·(policy − ref); without
// one: ranking by mean per-token log-prob (ORPO/SimPO's length-normalised reward). Also `score`, the plain
// summed log-prob comparison behind `preftune score`. Not training and not generation.
import { statSync } from "node:fs";
import { join } from "node:path";
import { NativeModel, setNumThreads, type LogpModel } from "../core/native.ts";
import { collatePairs } from "../data/collate.ts";
import { prepareDataset } from "../data/prepare.ts";
import { resolveDataFiles } from "../data/readers.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import type { Method, TokenizedPair } from "../data/tokenize.ts";
import { methodsWhere, trainsOnUnpairedRows } from "../train/methods.ts";
import { sequenceStats } from "../losses/aggregate.ts";
import { loadModelFolder, readModelDir } from "../models/checkpoint.ts";
import { loadAdapter } from "../models/peft.ts";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";

/** Per pair: summed completion log-probs and completion token counts. */
export interface PairLogps {
  chosen: Float64Array; rejected: Float64Array;             // (pairs,) Σ logp
  chosenTokens: Float64Array; rejectedTokens: Float64Array; // (pairs,)
}

/** Runs `model` (train = false) over the pairs, `batchSize` pairs per forward. */
export function pairLogps(model: LogpModel, rows: TokenizedPair[], padTokenId: number, batchSize: number): PairLogps {
  const n = rows.length;
  const out: PairLogps = { chosen: new Float64Array(n), rejected: new Float64Array(n), chosenTokens: new Float64Array(n), rejectedTokens: new Float64Array(n) };
  for (let s = 0; s < n; s += batchSize) {
    const pb = collatePairs(rows.slice(s, s + batchSize), { padTokenId });
    const { B: N, T } = pb.batch;
    const st = sequenceStats(model.forward(pb.batch, { train: false }).logps, pb.completionMask, N, T);
    const B = N / 2;
    for (let i = 0; i < B; i++) {
      out.chosen[s + i] = st.sum[i]; out.rejected[s + i] = st.sum[B + i];
      out.chosenTokens[s + i] = st.count[i]; out.rejectedTokens[s + i] = st.count[B + i];
    }
  }
  return out;
}

/**
 * Refuses log-probs that are not finite: a model whose weights hold NaN or Inf scores every pair NaN, and
 * "chosen > rejected" is then false for all of them (accuracy 0%) instead of an error.
 */
export function checkFinite(lp: PairLogps, model: string): void {
  let bad = 0, first = -1;
  for (let i = 0; i < lp.chosen.length; i++) {
    if (!Number.isFinite(lp.chosen[i]) || !Number.isFinite(lp.rejected[i])) { bad++; if (first < 0) first = i; }
  }
  if (bad === 0) return;
  const v = [lp.chosen[first], lp.rejected[first]].find((x) => !Number.isFinite(x));
  throw new Error(`${model}: the model's log-probs are not finite (${v} for pair ${first}; ${bad} of ${lp.chosen.length} pairs), so its weights are not finite (NaN or Inf in the safetensors files). Use a checkpoint saved before the weights diverged, or retrain with a lower learning rate or max_grad_norm`);
}

interface PairData { rows: TokenizedPair[]; padTokenId: number }

/** Tokenized pairs of a dataset (test split of a folder when there is one), checked against the model's positions. */
async function loadPairs(model: string, dataset: string, o: { split?: string; method?: Method; maxLength?: number | null; quiet?: boolean }): Promise<PairData> {
  const method = o.method ?? "dpo";
  if (trainsOnUnpairedRows(method)) throw new Error(`scoring needs pairs; --method ${method} tokenizes unpaired rows. Use one of ${methodsWhere((s) => s.data === "paired").join(", ")} (default dpo)`);
  let split = o.split;
  if (!split && statSync(dataset).isDirectory()) split = (await resolveDataFiles(dataset, "test").then(() => true, () => false)) ? "test" : "train";
  const maxPos = readModelDir(model).config.maxPositionEmbeddings;
  if (o.maxLength != null && o.maxLength > maxPos) throw new Error(`--max-length ${o.maxLength} is more than ${model}'s max_position_embeddings (${maxPos}); use at most ${maxPos}`);
  const tok = await loadTokenizer(model);
  const maxLength = o.maxLength === undefined ? Math.min(1024, maxPos) : o.maxLength;
  const data = await prepareDataset(dataset, tok, { method, max_length: maxLength, split, cacheDir: null, progress: !o.quiet });
  if (data.kind !== "paired") throw new Error(`${dataset}: scoring needs chosen/rejected pairs`);
  if (data.rows.length === 0) throw new Error(`${dataset}: no pairs left to score (all dropped by max_length ${maxLength}?)`);
  return { rows: data.rows, padTokenId: tok.padTokenId };
}

function loadModel(dir: string): NativeModel {
  // config.json is checked against the weight headers and this machine's memory before anything is allocated
  return loadModelFolder(dir).model;
}

// ---------------------------------------------------------------------------------------------- score

export interface ScoreOptions {
  model: string;
  dataset: string;
  output: string;
  split?: string;
  method?: Method;
  maxLength?: number | null;
  batchSize?: number;
  threads?: number;
  quiet?: boolean;
}

export interface ScoreSummary { pairs: number; accuracy: number; meanMargin: number; output: string }

/**
 * Summed completion log-probs of chosen and rejected for every pair of a dataset, one JSON line per pair
 * (index, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens), and the preference accuracy: the
 * fraction of pairs whose chosen completion gets the higher summed log-prob.
 */
export async function score(o: ScoreOptions): Promise<ScoreSummary> {
  if (o.threads && o.threads > 0) setNumThreads(o.threads);
  const data = await loadPairs(o.model, o.dataset, o);
  const model = loadModel(o.model);
  let lp: PairLogps;
  try {
    lp = pairLogps(model, data.rows, data.padTokenId, o.batchSize ?? 8);
  } finally {
    model.free();
  }
  checkFinite(lp, o.model);
  const n = data.rows.length;
  let wins = 0, margin = 0;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = lp.chosen[i], r = lp.rejected[i];
    if (c > r) wins++;
    margin += c - r;
    lines.push(JSON.stringify({ index: i, chosen_logps: c, rejected_logps: r, chosen_tokens: lp.chosenTokens[i], rejected_tokens: lp.rejectedTokens[i] }) + "\n");
  }
  writeFileAtomic(o.output, lines.join(""));  // all or nothing: no half-written score file
  return { pairs: n, accuracy: wins / n, meanMargin: margin / n, output: o.output };
}

// ---------------------------------------------------------------------------------------------- pairwise

export interface PairwiseOptions {
  model: string;
  adapter?: string | null;
  refModel?: string | null;          // a separate reference model folder
  noReference?: boolean;             // rank by mean per-token log-prob even when a reference is available
  dataset: string;
  output: string;                    // folder: pairwise.jsonl (per pair) and pairwise_metrics.json
  split?: string;
  method?: Method;                   // tokenization rules; "ipo" also means per-token-mean logps (TRL's IPO)
  beta?: number;                     // default 0.1
  maxLength?: number | null;
  batchSize?: number;
  threads?: number;
  quiet?: boolean;
}

export type Ranking = "reference" | "length-normalised";

export interface PairwiseSummary {
  pairs: number;
  ranking: Ranking;
  note: string;
  metrics: Record<string, number>;   // TRL's eval_* names
  output: string;
  metricsFile: string;
}

function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

/**
 * TRL's DPO eval metrics from per-pair policy and reference logps (summed, or per-token means for IPO):
 * rewards = β·(policy − ref), accuracies = mean(chosen reward > rejected reward), margins = mean difference.
 */
export function rewardMetrics(policy: { chosen: ArrayLike<number>; rejected: ArrayLike<number> }, ref: { chosen: ArrayLike<number>; rejected: ArrayLike<number> } | null, beta: number): { chosen: Float64Array; rejected: Float64Array; metrics: Record<string, number> } {
  const n = policy.chosen.length;
  const chosen = new Float64Array(n), rejected = new Float64Array(n), margins = new Float64Array(n), acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    chosen[i] = beta * (policy.chosen[i] - (ref ? ref.chosen[i] : 0));
    rejected[i] = beta * (policy.rejected[i] - (ref ? ref.rejected[i] : 0));
    margins[i] = chosen[i] - rejected[i];
    acc[i] = chosen[i] > rejected[i] ? 1 : 0;
  }
  return {
    chosen, rejected,
    metrics: {
      "eval_rewards/chosen": mean(chosen), "eval_rewards/rejected": mean(rejected), "eval_rewards/accuracies": mean(acc),
      "eval_rewards/margins": mean(margins), "eval_logps/chosen": mean(policy.chosen), "eval_logps/rejected": mean(policy.rejected),
    },
  };
}

const perToken = (lp: PairLogps) => ({
  chosen: lp.chosen.map((v, i) => v / Math.max(lp.chosenTokens[i], 1)),
  rejected: lp.rejected.map((v, i) => v / Math.max(lp.rejectedTokens[i], 1)),
});

/** The policy (model, plus adapter) and its reference, if any; `free` releases both. */
function loadModels(o: PairwiseOptions): { policy: NativeModel; ref: LogpModel | null; refName: string | null; free(): void } {
  const policy = loadModel(o.model);
  let refModel: NativeModel | null = null;
  try {
    if (o.adapter) loadAdapter(o.adapter, policy);
    if (o.noReference) return { policy, ref: null, refName: null, free: () => policy.free() };
    if (o.refModel) {
      refModel = loadModel(o.refModel);
      if (refModel.config.vocabSize !== policy.config.vocabSize) throw new Error(`--ref-model ${o.refModel} has vocab_size ${refModel.config.vocabSize} but ${o.model} has ${policy.config.vocabSize}; the reference must share the policy's tokenizer`);
      const r = refModel;
      return { policy, ref: r, refName: o.refModel, free: () => { policy.free(); r.free(); } };
    }
    if (o.adapter) return { policy, ref: policy.withoutAdapters(), refName: `${o.model} (adapters disabled)`, free: () => policy.free() };
    return { policy, ref: null, refName: null, free: () => policy.free() };
  } catch (e) {
    policy.free();
    refModel?.free();
    throw e;
  }
}

/**
 * Preference accuracy and TRL's reward metrics on held-out pairs. The reference is --ref-model, else for an
 * adapter the base model with adapters disabled (TRL's PEFT reference), else none: then pairs are ranked by
 * mean per-token log-prob and the rewards are β·(that mean), as TRL's ORPO and SimPO define them.
 */
export async function pairwiseEval(o: PairwiseOptions): Promise<PairwiseSummary> {
  if (o.threads && o.threads > 0) setNumThreads(o.threads);
  const beta = o.beta ?? 0.1;
  if (!(beta > 0)) throw new Error(`--beta must be a number > 0, got ${o.beta}`);
  const data = await loadPairs(o.model, o.dataset, o);
  const m = loadModels(o);
  const bs = o.batchSize ?? 8;
  let policy: PairLogps, ref: PairLogps | null = null;
  try {
    policy = pairLogps(m.policy, data.rows, data.padTokenId, bs);
    checkFinite(policy, o.adapter ? `${o.model} with adapter ${o.adapter}` : o.model);
    if (m.ref) {
      ref = pairLogps(m.ref, data.rows, data.padTokenId, bs);
      checkFinite(ref, m.refName ?? "the reference model");
    }
  } finally {
    m.free();
  }
  const avg = (o.method ?? "dpo") === "ipo";
  const view = (lp: PairLogps) => (avg ? perToken(lp) : { chosen: lp.chosen, rejected: lp.rejected });
  const ranking: Ranking = ref ? "reference" : "length-normalised";
  const r = ref ? rewardMetrics(view(policy), view(ref), beta) : rewardMetrics(perToken(policy), null, beta);
  const note = ref
    ? `rewards = β·(policy − reference) ${avg ? "per-token mean" : "summed"} completion log-probs, β = ${beta}, reference: ${m.refName}`
    : `no reference model: pairs ranked by mean per-token completion log-prob; rewards = β·(that mean), β = ${beta}, as TRL's ORPO/SimPO report them; logps are per-token means`;
  const lines: string[] = [];
  for (let i = 0; i < data.rows.length; i++) {
    lines.push(JSON.stringify({
      index: i, chosen_logps: policy.chosen[i], rejected_logps: policy.rejected[i], chosen_tokens: policy.chosenTokens[i], rejected_tokens: policy.rejectedTokens[i],
      ...(ref ? { ref_chosen_logps: ref.chosen[i], ref_rejected_logps: ref.rejected[i] } : {}),
      chosen_reward: r.chosen[i], rejected_reward: r.rejected[i],
    }) + "\n");
  }
  const output = join(o.output, "pairwise.jsonl");
  const metricsFile = join(o.output, "pairwise_metrics.json");
  ensureDir(o.output, "output folder");
  writeFileAtomic(output, lines.join(""));
  writeFileAtomic(metricsFile, JSON.stringify({ pairs: data.rows.length, ranking, note, ...r.metrics }, null, 2) + "\n");
  return { pairs: data.rows.length, ranking, note, metrics: r.metrics, output, metricsFile };
}
