// One training objective per batch kind, shared by every method: run the policy (and the reference) over a
// collated batch, reduce the label-aligned token log-probs to what the loss in src/losses takes, and hand
// d loss / d logps back to the native backward. Holds the TRL conventions for which tokens each method
// sums, averages or NLL-averages, and the token metrics; holds no loop logic (no optimizer, no
// accumulation counter, no logging) and no loss math of its own.
import type { LogpModel, NativeModel } from "../core/native.ts";
import type { TokenBatch, TokenStats } from "../core/types.ts";
import type { PairBatch, UnpairedBatch } from "../data/collate.ts";
import { LOSS_KEY_DEFAULTS, lossKeyDefault, lossProblems, methodSpec, normalLossType, type Method, type MethodSpec } from "./methods.ts";
import {
  DPO_DEFAULTS, ORPO_DEFAULTS,
  cpoLogpKind, cpoLoss, dpoLoss, ktoKlMean, ktoLoss, nllMean, nllTokenGrads, orpoLoss, pairedTokenMetrics, resolveCpoConfig,
  sequenceLogitsMetrics, sequenceMask, sequenceStats, sftLoss, tokenGrads, unpairedTokenMetrics,
  type CpoConfig, type CpoLossType, type DpoConfig, type KtoConfig, type KtoLossType, type OrpoConfig,
} from "../losses/index.ts";

export type { PairBatch, UnpairedBatch };

export { METHODS, needsReference, type Method } from "./methods.ts";

/**
 * The loss-related keys of every method's TRL config, flat. Keys a method does not use are ignored; absent ones take
 * the method's default from the registry (methods.ts: ipo is DPO with loss_type "ipo", simpo is CPO with loss_type
 * "simpo" and cpo_alpha 0).
 */
export interface MethodConfig {
  method: Method;
  beta: number;
  loss_type?: string | string[] | null;   // null or absent: the method's TRL default
  loss_weights?: number[] | null;
  label_smoothing?: number;
  cpo_alpha?: number;
  simpo_gamma?: number;
  alpha?: number;
  desirable_weight?: number;
  undesirable_weight?: number;
  f_divergence_type?: string;
  f_alpha_divergence_coef?: number;
}

/** Summed reference completion logps per pair (paired methods). */
export interface RefLogps { chosen: Float64Array; rejected: Float64Array }       // (B,), (B,)
/** KTO: summed reference completion logps per row, and of the KL rows (null without a KL pass). */
export interface RefUnpaired { logps: Float64Array; klLogps: Float64Array | null } // (N,), (N,)
// A reference "model" is anything with a forward: a second NativeModel, or under LoRA the policy itself seen
// through policy.withoutAdapters() (TRL's reference for a fresh PEFT adapter; no second copy in memory).
export type Reference = { kind: "model"; model: LogpModel } | { kind: "precomputed" } | { kind: "none" };

export interface StepOutput {
  loss: number;                      // the unscaled loss of this batch (lossScale only scales the gradient)
  metrics: Record<string, number>;   // TRL keys for this one batch; num_tokens is `tokens`, summed by the loop
  tokens: number;                    // Σ lengths of the policy rows that carry gradient (KTO: not the KL rows)
  /** SFT under data parallelism: this batch's share of the loss tokens of every rank's batch (lossTokens). */
  lossShare?: number;
}

export interface StepOptions { backward: boolean; lossScale: number }
/**
 * KTO under data parallelism: combines this rank's KL estimate (the mean over its `rows` KL rows, before the clamp)
 * with every other rank's (src/parallel/shard.ts); absent, the batch's own estimate is used.
 */
export type KlMean = (localMean: number, rows: number) => number;
/**
 * SFT under data parallelism: the loss tokens of every rank's batch, given this rank's; the token mean is then
 * over all of them (transformers' average_tokens_across_devices), this batch's gradient scaled by its share.
 */
export type LossTokens = (local: number) => number;

/** A batch of prompt+completion rows for SFT; PairBatch and UnpairedBatch also fit. */
export interface SftBatch { batch: TokenBatch; completionMask: Uint8Array } // mask (N, T)

type Resolved =
  | { kind: "orpo"; orpo: OrpoConfig }
  | { kind: "dpo"; dpo: DpoConfig }
  | { kind: "cpo"; cpo: CpoConfig }
  | { kind: "kto"; kto: KtoConfig }
  | { kind: "sft" };

/**
 * MethodConfig → the config object of the loss in src/losses, with the method's TRL defaults (methods.ts) filled in.
 * Refuses, with the registry's messages, every loss setting config validation refuses.
 */
function resolveMethod(fn: string, cfg: MethodConfig): Resolved {
  let spec: MethodSpec;
  try { spec = methodSpec(cfg?.method); } catch (e) { throw new Error(`${fn}: ${(e as Error).message}`); }
  const method = spec.name;
  if (spec.defaults.beta !== null && !(typeof cfg.beta === "number" && Number.isFinite(cfg.beta))) {
    throw new Error(`${fn}: beta = ${cfg.beta} is invalid for method "${method}"; set a finite beta (TRL default ${spec.defaults.beta})`);
  }
  const problems = lossProblems(method, { loss_type: cfg.loss_type, loss_weights: cfg.loss_weights, label_smoothing: cfg.label_smoothing });
  if (problems.length) throw new Error(`${fn}: ${problems.join("; ")}`);
  const loss_type = normalLossType(method, cfg.loss_type);
  const d = LOSS_KEY_DEFAULTS;
  switch (spec.loss) {
    case "orpo":
      return { kind: "orpo", orpo: { ...ORPO_DEFAULTS, beta: cfg.beta } };
    case "dpo":
      return {
        kind: "dpo",
        dpo: {
          ...DPO_DEFAULTS,
          beta: cfg.beta,
          loss_type: loss_type!,
          loss_weights: cfg.loss_weights ?? null,
          label_smoothing: cfg.label_smoothing ?? d.label_smoothing,
          f_divergence_type: cfg.f_divergence_type ?? d.f_divergence_type,
          f_alpha_divergence_coef: cfg.f_alpha_divergence_coef ?? d.f_alpha_divergence_coef,
        },
      };
    case "cpo":
      return {
        kind: "cpo",
        cpo: resolveCpoConfig({
          beta: cfg.beta,
          loss_type: loss_type as CpoLossType,
          cpo_alpha: cfg.cpo_alpha ?? lossKeyDefault(method, "cpo_alpha"),
          simpo_gamma: cfg.simpo_gamma ?? d.simpo_gamma,
          alpha: cfg.alpha ?? d.alpha,
          label_smoothing: cfg.label_smoothing ?? d.label_smoothing,
        }),
      };
    case "kto":
      return {
        kind: "kto",
        kto: {
          beta: cfg.beta,
          desirable_weight: cfg.desirable_weight ?? d.desirable_weight,
          undesirable_weight: cfg.undesirable_weight ?? d.undesirable_weight,
          loss_type: loss_type as KtoLossType,
        },
      };
    case "sft":
      return { kind: "sft" };
  }
}

function checkScale(fn: string, opts: StepOptions): void {
  if (!opts || typeof opts.backward !== "boolean") throw new Error(`${fn}: opts.backward must be true or false`);
  if (!Number.isFinite(opts.lossScale)) {
    throw new Error(`${fn}: opts.lossScale = ${opts.lossScale} must be a finite number (1 / gradient_accumulation_steps, or 1)`);
  }
}

function checkBatch(fn: string, what: string, batch: TokenBatch, mask: Uint8Array): void {
  const { B, T } = batch;
  if (batch.ids.length !== B * T || batch.lengths.length !== B) {
    throw new Error(`${fn}: ${what} has ids of ${batch.ids.length} and lengths of ${batch.lengths.length} entries for B = ${B}, T = ${T}`);
  }
  if (mask.length !== B * T) {
    throw new Error(`${fn}: ${what} completion mask has ${mask.length} entries, expected B*T = ${B}*${T} (label-aligned, from the collator)`);
  }
}

function sumLengths(batch: TokenBatch): number {
  let s = 0;
  for (let b = 0; b < batch.B; b++) s += batch.lengths[b];
  return s;
}

function concat(a: ArrayLike<number>, b: ArrayLike<number>, scale: number): Float64Array {
  const out = new Float64Array(a.length + b.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * scale;
  for (let i = 0; i < b.length; i++) out[a.length + i] = b[i] * scale;
  return out;
}

/** The mask restricted to rows [0, B): the chosen half of a (2B, T) pair mask. */
function chosenRows(mask: Uint8Array, B: number, T: number): Uint8Array {
  const m = new Uint8Array(mask.length);
  m.set(mask.subarray(0, B * T));
  return m;
}

function checkVec(fn: string, field: string, v: ArrayLike<number> | null | undefined, n: number, fix: string): void {
  if (!v || v.length !== n) throw new Error(`${fn}: ${field} has ${v?.length ?? "no"} entries, the batch needs ${n}; ${fix}`);
}

/** Summed reference completion logps of a pair batch (one forward, no gradient). */
export function referenceLogps(ref: LogpModel, pb: PairBatch): RefLogps {
  checkBatch("referenceLogps", "the pair batch", pb.batch, pb.completionMask);
  const { B: N, T } = pb.batch;
  const { sum } = sequenceStats(ref.forward(pb.batch, { train: false }).logps, pb.completionMask, N, T);
  return { chosen: sum.slice(0, N / 2), rejected: sum.slice(N / 2) };
}

/** Summed reference completion logps of an unpaired batch and, when it has KL rows, of those (no gradient). */
export function referenceUnpaired(ref: LogpModel, ub: UnpairedBatch): RefUnpaired {
  checkBatch("referenceUnpaired", "the unpaired batch", ub.batch, ub.completionMask);
  const { B: N, T } = ub.batch;
  const logps = sequenceStats(ref.forward(ub.batch, { train: false }).logps, ub.completionMask, N, T).sum;
  let klLogps: Float64Array | null = null;
  if (ub.kl) {
    checkBatch("referenceUnpaired", "the KL batch", ub.kl.batch, ub.kl.completionMask);
    const k = ub.kl.batch;
    klLogps = sequenceStats(ref.forward(k, { train: false }).logps, ub.kl.completionMask, k.B, k.T).sum;
  }
  return { logps, klLogps };
}

function refusesReference(fn: string, method: Method, ref: Reference): void {
  if (ref?.kind !== "none") {
    throw new Error(`${fn}: method "${method}" is reference-free but got a reference of kind "${ref?.kind}"; pass { kind: "none" }`);
  }
}

/**
 * One chosen/rejected pair batch (rows 0..B−1 chosen, B..2B−1 rejected) for orpo, dpo, ipo, cpo, simpo.
 * Order: the reference forward first, then the policy forward, so that even a reference that is the policy
 * object itself cannot overwrite the activations the backward needs. When opts.backward, exactly one
 * policy.backward(dlogps · lossScale) runs; gradients accumulate (the caller zeroes them).
 *
 * Gradient accumulation: k equal-sized micro-batches with lossScale 1/k give exactly the full batch's
 * gradient only when the loss is a plain mean over pairs (or rows): DPO/IPO for every loss_type except
 * the batch-sorted aot/aot_unpaired and the token-mean "sft", CPO/SimPO with cpo_alpha = 0, and KTO's
 * apo_zero_unpaired. It does not hold for ORPO, CPO with cpo_alpha ≠ 0, DPO "sft" or SFT, whose NLL is a
 * token mean pooled over the micro-batch, nor for KTO's "kto" loss, whose z is estimated per micro-batch.
 * Both are TRL's behaviour too (its trainers divide each micro-batch loss by gradient_accumulation_steps).
 */
export function pairedStep(
  policy: NativeModel, ref: Reference, pb: PairBatch, cfg: MethodConfig,
  opts: StepOptions & { refLogps?: RefLogps },
): StepOutput {
  const fn = "pairedStep";
  const r = resolveMethod(fn, cfg);
  if (r.kind === "kto" || r.kind === "sft") throw new Error(`${fn}: method "${cfg.method}" does not train on pairs; use ${r.kind === "kto" ? "unpairedStep" : "sftStep"}`);
  checkScale(fn, opts);
  checkBatch(fn, "the pair batch", pb.batch, pb.completionMask);
  const { B: N, T } = pb.batch;
  if (N === 0 || N % 2 !== 0) throw new Error(`${fn}: a pair batch needs 2B rows (B chosen then B rejected), got ${N}`);
  const B = N / 2;
  const cm = pb.completionMask;

  let refLogps: RefLogps | null = null;
  if (r.kind === "dpo") {
    if (ref?.kind === "model") refLogps = referenceLogps(ref.model, pb);
    else if (ref?.kind === "precomputed") {
      refLogps = opts.refLogps ?? null;
      if (!refLogps) throw new Error(`${fn}: reference is "precomputed" but opts.refLogps is missing; pass the batch's rows from the precomputed table`);
    } else {
      throw new Error(`${fn}: method "${cfg.method}" needs a reference: pass { kind: "model", model } or { kind: "precomputed" } with opts.refLogps`);
    }
    checkVec(fn, "refLogps.chosen", refLogps.chosen, B, "one summed logp per pair");
    checkVec(fn, "refLogps.rejected", refLogps.rejected, B, "one summed logp per pair");
  } else {
    refusesReference(fn, cfg.method, ref);
  }

  const stats = policy.forward(pb.batch, { train: opts.backward });
  const seq = sequenceStats(stats.logps, cm, N, T);
  const dl = opts.backward ? new Float32Array(N * T) : null; // (2B, T)
  const s = opts.lossScale;
  let loss: number, metrics: Record<string, number>;

  if (r.kind === "orpo") {
    // NLL over the whole chosen sequences, prompt included; odds on completion-averaged logps.
    const seqChosen = chosenRows(sequenceMask(pb.batch.lengths, N, T), B, T);
    const { nll } = nllMean(stats.logps, seqChosen, N, T);
    const res = orpoLoss({ chosenAvg: seq.avg.subarray(0, B), rejectedAvg: seq.avg.subarray(B), nll }, r.orpo);
    if (dl) {
      tokenGrads(null, concat(res.dChosenAvg, res.dRejectedAvg, s), cm, seq.count, N, T, dl);
      nllTokenGrads(res.dNll * s, seqChosen, N, T, dl);
    }
    loss = res.loss;
    metrics = { ...res.metrics, ...sequenceLogitsMetrics(stats.logitsMean, sequenceMask(pb.batch.lengths, N, T), B, T) };
  } else if (r.kind === "cpo") {
    const avg = cpoLogpKind(r.cpo.loss_type) === "avg";
    const v = avg ? seq.avg : seq.sum;
    // CPO's NLL covers chosen completion tokens only (prompt masked, unlike ORPO); skipped when cpo_alpha = 0.
    const chosenCm = chosenRows(cm, B, T);
    const nll = r.cpo.cpo_alpha !== 0 ? nllMean(stats.logps, chosenCm, N, T).nll : undefined;
    const res = cpoLoss({ chosen: v.subarray(0, B), rejected: v.subarray(B), nll }, r.cpo);
    if (dl) {
      const d = concat(res.dChosen, res.dRejected, s);
      tokenGrads(avg ? null : d, avg ? d : null, cm, seq.count, N, T, dl);
      if (res.dNll !== 0) nllTokenGrads(res.dNll * s, chosenCm, N, T, dl);
    }
    loss = res.loss;
    metrics = { ...res.metrics, ...sequenceLogitsMetrics(stats.logitsMean, sequenceMask(pb.batch.lengths, N, T), B, T) };
  } else {
    const rl = refLogps!;
    const types = Array.isArray(r.dpo.loss_type) ? r.dpo.loss_type : [r.dpo.loss_type];
    const chosenCm = types.includes("sft") ? chosenRows(cm, B, T) : null;
    const res = dpoLoss({
      chosen: seq.sum.subarray(0, B), rejected: seq.sum.subarray(B),
      refChosen: rl.chosen, refRejected: rl.rejected,
      chosenTokens: seq.count.subarray(0, B), rejectedTokens: seq.count.subarray(B),
      chosenNll: chosenCm ? nllMean(stats.logps, chosenCm, N, T).nll : undefined,
    }, r.dpo);
    if (dl) {
      tokenGrads(concat(res.dChosen, res.dRejected, s), null, cm, seq.count, N, T, dl);
      if (chosenCm && res.dChosenNll !== 0) nllTokenGrads(res.dChosenNll * s, chosenCm, N, T, dl);
    }
    loss = res.loss;
    metrics = { ...res.metrics, ...pairedTokenMetrics(stats, cm, B, T) };
  }
  if (dl) policy.backward(dl);
  return { loss, metrics, tokens: sumLengths(pb.batch) };
}

/**
 * One unpaired batch for kto (TRL's KTOTrainer). Order: reference forwards (main and KL rows), then the
 * policy's KL forward with train = false (z carries no gradient), then the policy's main forward with
 * train = opts.backward, so the activations the backward needs are the last ones kept.
 * z = max(0, mean(policy KL logps − reference KL logps)) over this batch's KL rows.
 */
export function unpairedStep(
  policy: NativeModel, ref: Reference, ub: UnpairedBatch, cfg: MethodConfig,
  opts: StepOptions & { ref?: RefUnpaired; klMean?: KlMean },
): StepOutput {
  const fn = "unpairedStep";
  const r = resolveMethod(fn, cfg);
  if (r.kind !== "kto") throw new Error(`${fn}: method "${cfg.method}" does not train on unpaired rows; use ${r.kind === "sft" ? "sftStep" : "pairedStep"}`);
  checkScale(fn, opts);
  checkBatch(fn, "the unpaired batch", ub.batch, ub.completionMask);
  const { B: N, T } = ub.batch;
  if (!ub.labels || ub.labels.length !== N) throw new Error(`${fn}: labels has ${ub.labels?.length} entries for ${N} rows; one boolean (desirable) per row`);
  const withKl = r.kto.loss_type === "kto";
  if (withKl && !ub.kl) {
    throw new Error(`${fn}: KTO's KL estimate needs the mismatched KL rows: collate with collateUnpaired(withKlCompletions(rows, batchSize), { kl: true, ... }), or use loss_type "apo_zero_unpaired"`);
  }
  if (withKl) checkBatch(fn, "the KL batch", ub.kl!.batch, ub.kl!.completionMask);

  let rv: RefUnpaired;
  if (ref?.kind === "model") rv = referenceUnpaired(ref.model, withKl ? ub : { ...ub, kl: undefined });
  else if (ref?.kind === "precomputed") {
    if (!opts.ref) throw new Error(`${fn}: reference is "precomputed" but opts.ref is missing; pass the batch's rows from the precomputed table`);
    rv = opts.ref;
  } else {
    throw new Error(`${fn}: method "kto" needs a reference: pass { kind: "model", model } or { kind: "precomputed" } with opts.ref`);
  }
  checkVec(fn, "reference logps", rv.logps, N, "one summed logp per row");
  if (withKl) checkVec(fn, "reference KL logps", rv.klLogps, ub.kl!.batch.B, "precompute them with the KL rows (collate with kl: true)");

  let klLogps: Float64Array | null = null;
  if (withKl) {
    const k = ub.kl!.batch;
    klLogps = sequenceStats(policy.forward(k, { train: false }).logps, ub.kl!.completionMask, k.B, k.T).sum;
  }
  const stats = policy.forward(ub.batch, { train: opts.backward });
  const seq = sequenceStats(stats.logps, ub.completionMask, N, T);
  const kl = withKl && opts.klMean ? opts.klMean(ktoKlMean(klLogps!, rv.klLogps!), klLogps!.length) : undefined;
  const res = ktoLoss({ logps: seq.sum, refLogps: rv.logps, labels: ub.labels, klLogps, refKlLogps: withKl ? rv.klLogps : null, kl }, r.kto);
  if (opts.backward) {
    const d = res.dLogps.map((x) => x * opts.lossScale);
    policy.backward(tokenGrads(d, null, ub.completionMask, seq.count, N, T));
  }
  const metrics = { ...res.metrics, ...unpairedTokenMetrics(stats, ub.completionMask, ub.labels, N, T) };
  return { loss: res.loss, metrics, tokens: sumLengths(ub.batch) };
}

/**
 * Plain SFT on prompt+completion rows: token-mean NLL over the mask (completion tokens for TRL's
 * completion_only_loss; sequenceMask(lengths) for the whole sequence), with entropy and mean_token_accuracy.
 */
export function sftStep(policy: NativeModel, sb: SftBatch, opts: StepOptions & { lossTokens?: LossTokens }): StepOutput {
  const fn = "sftStep";
  checkScale(fn, opts);
  checkBatch(fn, "the SFT batch", sb.batch, sb.completionMask);
  const { B: N, T } = sb.batch;
  const stats: TokenStats = policy.forward(sb.batch, { train: opts.backward });
  const res = sftLoss(stats.logps, sb.completionMask, N, T, { correct: stats.correct, entropy: stats.entropy });
  const lossShare = opts.lossTokens ? res.tokens / opts.lossTokens(res.tokens) : undefined;
  const scale = opts.lossScale * (lossShare ?? 1);
  if (opts.backward) {
    if (scale !== 1) for (let i = 0; i < res.dLogps.length; i++) res.dLogps[i] *= scale;
    policy.backward(res.dLogps);
  }
  return { loss: res.loss, metrics: res.metrics, tokens: sumLengths(sb.batch), lossShare };
}
