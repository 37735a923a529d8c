// KTO: Kahneman–Tversky optimisation, Ethayarajh et al. 2024 (arXiv 2402.01306), Eq. 7:
//   desirable L = λ_D(1 − σ(β(ρ − z0))), undesirable L = λ_U(1 − σ(β(z0 − ρ))), ρ = log π/π_ref (summed),
//   z0 = max(0, mean KL estimate over mismatched pairs), treated as a constant (no gradient).
// Also TRL's apo_zero_unpaired (APO, arXiv 2408.06266, Eq. 7 unpaired) and the Eq. 8 weight guidance.
// Pure function of per-sequence numbers: the KL pairs are built by the data pipeline, not here.

import { checkScalar, checkVec, sigmoid, type Vec } from "./numerics.ts";

export const KTO_LOSS_TYPES = ["kto", "apo_zero_unpaired"] as const;
export type KtoLossType = (typeof KTO_LOSS_TYPES)[number];

export interface KtoConfig {
  beta: number;               // TRL default 0.1
  desirable_weight: number;   // λ_D, default 1.0
  undesirable_weight: number; // λ_U, default 1.0
  loss_type: KtoLossType;     // default "kto"
}

export interface KtoInputs {
  logps: Vec;                       // (N,) policy Σ completion logp of each row
  refLogps: Vec;                    // (N,) reference Σ completion logp (constants)
  labels: ArrayLike<boolean | number>; // (N,) truthy = desirable
  klLogps?: Vec | null;             // (M,) policy Σ logp of the mismatched KL completions (kto only)
  refKlLogps?: Vec | null;          // (M,) reference Σ logp of the same
  /** Mean KL difference already averaged across ranks (before the clamp); overrides klLogps/refKlLogps. */
  kl?: number;
}

export interface KtoResult {
  loss: number;             // nanmean of the weighted per-row losses
  losses: Float64Array;     // (N,) weighted loss of each row, in input order
  dLogps: Float64Array;     // (N,) d loss / d logps; none flows to the KL logps (z is detached)
  metrics: Record<string, number>;
}

/** The per-rank mean of (klLogps − refKlLogps), before the clamp at 0; ranks average this then pass `kl`. */
export function ktoKlMean(klLogps: Vec, refKlLogps: Vec): number {
  const M = klLogps.length;
  if (M === 0) throw new Error("ktoKlMean: no KL rows; the KTO KL estimate needs per_device_train_batch_size > 1");
  checkVec("ktoKlMean", "refKlLogps", refKlLogps, M);
  checkVec("ktoKlMean", "klLogps", klLogps, M);
  let s = 0;
  for (let i = 0; i < M; i++) s += klLogps[i] - refKlLogps[i];
  return s / M;
}

export function ktoLoss(inputs: KtoInputs, config: KtoConfig): KtoResult {
  const fn = "ktoLoss";
  const N = inputs.logps?.length ?? 0;
  if (N === 0) throw new Error(`${fn}: empty batch; logps must hold one summed log-prob per row`);
  checkVec(fn, "logps", inputs.logps, N);
  checkVec(fn, "refLogps", inputs.refLogps, N);
  if (!inputs.labels || inputs.labels.length !== N) {
    throw new Error(`${fn}: labels has ${inputs.labels?.length} entries, expected one boolean per row (${N})`);
  }
  const beta = checkScalar(fn, "beta", config.beta, (x) => Number.isFinite(x) && x > 0, "a finite number > 0");
  const wD = checkScalar(fn, "desirable_weight", config.desirable_weight, (x) => Number.isFinite(x) && x >= 0, "a finite number ≥ 0");
  const wU = checkScalar(fn, "undesirable_weight", config.undesirable_weight, (x) => Number.isFinite(x) && x >= 0, "a finite number ≥ 0");
  const type = config.loss_type;
  if (!KTO_LOSS_TYPES.includes(type)) {
    throw new Error(`${fn}: loss_type "${type}" is unknown; use ${KTO_LOSS_TYPES.join(" or ")}`);
  }

  // z0: TRL computes it under no_grad, gathers across ranks, then clamps at 0. apo_zero_unpaired has no KL pass.
  let z = 0;
  if (type === "kto") {
    let raw: number;
    if (inputs.kl !== undefined) raw = checkScalar(fn, "kl", inputs.kl, Number.isFinite, "a finite number");
    else if (inputs.klLogps && inputs.refKlLogps) raw = ktoKlMean(inputs.klLogps, inputs.refKlLogps);
    else throw new Error(`${fn}: loss_type "kto" needs klLogps and refKlLogps (the mismatched-pair KL rows) or kl; use loss_type "apo_zero_unpaired" to train without a KL estimate`);
    z = Math.max(raw, 0);
  }

  const losses = new Float64Array(N), dLogps = new Float64Array(N);
  let nD = 0, nU = 0, sRhoD = 0, sRhoU = 0, sLogpD = 0, sLogpU = 0;
  for (let i = 0; i < N; i++) {
    const rho = inputs.logps[i] - inputs.refLogps[i];
    if (inputs.labels[i]) {
      const p = sigmoid(type === "kto" ? beta * (rho - z) : beta * rho);
      losses[i] = wD * (1 - p);
      dLogps[i] = -wD * beta * p * (1 - p);
      nD++; sRhoD += rho; sLogpD += inputs.logps[i];
    } else {
      if (type === "kto") {
        const p = sigmoid(beta * (z - rho));
        losses[i] = wU * (1 - p);
        dLogps[i] = wU * beta * p * (1 - p);
      } else {
        const p = sigmoid(beta * rho);
        losses[i] = wU * p;
        dLogps[i] = wU * beta * p * (1 - p);
      }
      nU++; sRhoU += rho; sLogpU += inputs.logps[i];
    }
  }
  // nanmean over the concatenated desirable and undesirable losses; an empty half simply contributes nothing.
  let sum = 0, valid = 0;
  for (let i = 0; i < N; i++) if (!Number.isNaN(losses[i])) { sum += losses[i]; valid++; }
  for (let i = 0; i < N; i++) dLogps[i] = Number.isNaN(losses[i]) || valid === 0 ? 0 : dLogps[i] / valid;

  const metrics: Record<string, number> = { kl: z };
  if (nD > 0) { metrics["rewards/chosen"] = (beta * sRhoD) / nD; metrics["logps/chosen"] = sLogpD / nD; }
  if (nU > 0) { metrics["rewards/rejected"] = (beta * sRhoU) / nU; metrics["logps/rejected"] = sLogpU / nU; }
  if (nD > 0 && nU > 0) metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"];
  return { loss: valid > 0 ? sum / valid : Number.NaN, losses, dLogps, metrics };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * TRL's dataset-balance warning (paper Eq. 8: λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3]): null when the counts are
 * equal or either weight is already in its recommended range, otherwise the advice as a sentence.
 * Counts are clamped like TRL's (n_D ≥ 1, n_U = max(total − n_D, 1)); bounds rounded to 2 decimals.
 */
export function ktoWeightWarning(
  numDesirable: number, numUndesirable: number, desirable_weight: number, undesirable_weight: number,
): string | null {
  const total = numDesirable + numUndesirable;
  const nD = Math.max(numDesirable, 1);
  const nU = Math.max(total - nD, 1);
  if (nD === nU) return null;
  const dLo = round2(((nU * undesirable_weight) / nD) * 1), dHi = round2(((nU * undesirable_weight) / nD) * 1.33);
  const uLo = round2((nD * desirable_weight) / nU / 1.33), uHi = round2((nD * desirable_weight) / nU / 1);
  const dOk = dLo <= desirable_weight && desirable_weight <= dHi;
  const uOk = uLo <= undesirable_weight && undesirable_weight <= uHi;
  if (dOk || uOk) return null;
  return (
    `KTO: the data has ${nD} desirable and ${nU} undesirable examples, and desirable_weight = ${desirable_weight}, ` +
    `undesirable_weight = ${undesirable_weight} are outside the recommended balance (KTO paper Eq. 8). ` +
    `Set EITHER desirable_weight in [${dLo}, ${dHi}] OR undesirable_weight in [${uLo}, ${uHi}] (not both).`
  );
}
