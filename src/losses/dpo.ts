// DPO and its TRL loss_type family, current TRL (≥ v0.29) semantics, as pure functions of per-pair numbers.
// DPO: Rafailov et al. 2023 (arXiv 2305.18290) Eq. 7, L = −log σ(β[(log πc − log πc_ref) − (log πr − log πr_ref)]).
// Variants cite their own paper and equation below. f-divergence scores: Wang et al. 2023 (arXiv 2309.16240).
// Not here: WPO weight computation (needs logsumexp of 2·logits; pass the weights in), LD-DPO token
// weighting (an aggregation choice), TR-DPO reference sync, classic reference_free (pass zero refs).

import { checkScalar, checkVec, logSigmoid, mean, sigmoid, type Vec } from "./numerics.ts";

export const DPO_LOSS_TYPES = [
  "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
] as const;
export type DpoLossType = (typeof DPO_LOSS_TYPES)[number];
/**
 * The loss types whose label_smoothing has a narrower range than [0, 1), with the fix a message should give.
 * dpoLoss checks them, and the method registry (src/train/methods.ts) checks them at config time.
 */
export const DPO_PARAM_RULES: Partial<Record<DpoLossType, { label_smoothing: { ok: (eps: number) => boolean; need: string; fix: string } }>> = {
  robust: { label_smoothing: { ok: (e) => e >= 0 && e < 0.5, need: "in [0, 0.5) (it is a label-flip probability; 0.5 divides by zero)", fix: "set label_smoothing below 0.5, e.g. 0.1" } },
  exo_pair: { label_smoothing: { ok: (e) => e > 0 && e < 1, need: "> 0 and < 1 (EXO takes log ε and log(1 − ε))", fix: "set label_smoothing: 1e-3 (the EXO paper's value)" } },
};
export const F_DIVERGENCE_TYPES = ["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"] as const;

export interface DpoConfig {
  beta: number;                      // β (τ for ipo); TRL default 0.1
  loss_type: string | string[];      // one or several of DPO_LOSS_TYPES; default ["sigmoid"]
  loss_weights?: number[] | null;    // one per loss_type; null → 1.0 each
  label_smoothing: number;           // robust: flip prob in [0, 0.5); exo_pair: ε in (0, 1); aot/aot_unpaired
  f_divergence_type?: string;        // default "reverse_kl"
  f_alpha_divergence_coef?: number;  // default 0.5 (classic TRL: 1.0)
  discopop_tau?: number;             // default 0.05
  /** Classic TRL (≤ v0.28) also smoothed "sigmoid" (cDPO); current TRL ignores label_smoothing there. */
  classic_cdpo?: boolean;
}

export interface DpoInputs {
  chosen: Vec;          // (B,) policy Σ completion logp, chosen
  rejected: Vec;        // (B,) policy Σ completion logp, rejected
  refChosen: Vec;       // (B,) reference Σ completion logp (constants; zeros = classic reference_free)
  refRejected: Vec;     // (B,)
  chosenTokens: Vec;    // (B,) completion token counts (ipo, sigmoid_norm; clamped ≥ 1 as TRL)
  rejectedTokens: Vec;  // (B,)
  chosenNll?: number;   // "sft": token-mean NLL over chosen completion tokens of the batch (nllMean)
  weights?: Vec;        // (B,) WPO weights w_chosen·w_rejected, constants (use_weighting)
}

export interface DpoResult {
  loss: number;            // Σ_k w_k · mean_i(loss_k,i)
  losses: Float64Array;    // (B,) Σ_k w_k·loss_k,i; for aot/aot_unpaired index i is the sorted position, as TRL
  dChosen: Float64Array;   // (B,) d loss / d chosen
  dRejected: Float64Array; // (B,) d loss / d rejected
  dChosenNll: number;      // d loss / d chosenNll (0 without "sft")
  metrics: Record<string, number>;
}

/** f'(ρ) score of the f-divergence and its derivative in ρ; reverse_kl is plain DPO. */
function scoreFn(type: string, alpha: number): (rho: number) => [number, number] {
  switch (type) {
    case "reverse_kl": return (p) => [p, 1];
    case "forward_kl": return (p) => { const e = Math.exp(-p); return [-e, e]; };
    case "js_divergence": return (p) => [logSigmoid(p), sigmoid(-p)];
    case "alpha_divergence": {
      if (Math.abs(alpha - 1) < 1e-6) return (p) => [p, 1]; // the α → 1 limit is reverse KL
      // TRL clamps the exponent at 80 (fp32/bf16) so exp stays finite; the clamped side has zero gradient.
      return (p) => {
        const t = (alpha - 1) * p;
        if (t > 80) return [Math.exp(80) / (alpha - 1), 0];
        const e = Math.exp(t);
        return [e / (alpha - 1), e];
      };
    }
    default:
      throw new Error(`dpoLoss: f_divergence_type "${type}" is unknown; use one of ${F_DIVERGENCE_TYPES.join(", ")}`);
  }
}

/** Ascending order of indices by value (ties keep index order). */
function argsort(v: ArrayLike<number>): number[] {
  return Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[a] - v[b] || a - b);
}

export function dpoLoss(inputs: DpoInputs, config: DpoConfig): DpoResult {
  const fn = "dpoLoss";
  const B = inputs.chosen?.length ?? 0;
  if (B === 0) throw new Error(`${fn}: empty batch; chosen must hold one summed log-prob per pair`);
  for (const k of ["chosen", "rejected", "refChosen", "refRejected", "chosenTokens", "rejectedTokens"] as const) {
    checkVec(fn, k, inputs[k], B);
  }
  if (inputs.weights) checkVec(fn, "weights", inputs.weights, B);
  const beta = checkScalar(fn, "beta", config.beta, (x) => Number.isFinite(x) && x > 0, "a finite number > 0");
  const eps = checkScalar(fn, "label_smoothing", config.label_smoothing ?? 0, (x) => x >= 0 && x < 1, "in [0, 1)");
  const tau = checkScalar(fn, "discopop_tau", config.discopop_tau ?? 0.05, (x) => x > 0, "> 0");
  const types = Array.isArray(config.loss_type) ? config.loss_type : [config.loss_type];
  if (types.length === 0) throw new Error(`${fn}: loss_type is empty; use e.g. ["sigmoid"]`);
  for (const t of types) {
    if (!(DPO_LOSS_TYPES as readonly string[]).includes(t)) {
      throw new Error(`${fn}: loss_type "${t}" is unknown; use one of ${DPO_LOSS_TYPES.join(", ")}`);
    }
  }
  const weights = config.loss_weights ?? types.map(() => 1);
  if (weights.length !== types.length) {
    throw new Error(`${fn}: loss_weights has ${weights.length} entries for ${types.length} loss_type(s) [${types.join(", ")}]; give one weight per loss type`);
  }
  for (const t of types) {
    const rule = DPO_PARAM_RULES[t as DpoLossType]?.label_smoothing;
    if (rule && !rule.ok(eps)) throw new Error(`${fn}: ${t} needs label_smoothing ${rule.need}, got ${eps}; ${rule.fix}`);
  }
  if (types.includes("sft") && !Number.isFinite(inputs.chosenNll)) {
    throw new Error(`${fn}: loss_type "sft" needs inputs.chosenNll (nllMean over the chosen completion tokens), got ${inputs.chosenNll}`);
  }

  const score = scoreFn(config.f_divergence_type ?? "reverse_kl", config.f_alpha_divergence_coef ?? 0.5);
  const rc = new Float64Array(B), rr = new Float64Array(B);     // log-ratios ρ
  const sc = new Float64Array(B), sr = new Float64Array(B);     // scores s(ρ)
  const dsc = new Float64Array(B), dsr = new Float64Array(B);   // s'(ρ)
  for (let i = 0; i < B; i++) {
    rc[i] = inputs.chosen[i] - inputs.refChosen[i];
    rr[i] = inputs.rejected[i] - inputs.refRejected[i];
    [sc[i], dsc[i]] = score(rc[i]);
    [sr[i], dsr[i]] = score(rr[i]);
  }

  const losses = new Float64Array(B);
  const gS_c = new Float64Array(B), gS_r = new Float64Array(B); // d loss / d score
  const gR_c = new Float64Array(B), gR_r = new Float64Array(B); // d loss / d log-ratio, not via the score
  let dChosenNll = 0;
  const wpo = (i: number) => (inputs.weights ? inputs.weights[i] : 1);

  // −(1−ε)logσ(x) − ε·logσ(−x) and its derivative: sigmoid (cDPO when ε > 0), aot, aot_unpaired.
  const smoothed = (x: number, e: number): [number, number] =>
    [-(1 - e) * logSigmoid(x) - e * logSigmoid(-x), -(1 - e) * sigmoid(-x) + e * sigmoid(x)];

  for (let k = 0; k < types.length; k++) {
    const type = types[k] as DpoLossType;
    const wk = weights[k];
    for (let i = 0; i < B; i++) {
      const s = (wk * wpo(i)) / B; // this pair's share of the batch loss
      const delta = sc[i] - sr[i];
      const x = beta * delta;
      let l = 0;
      switch (type) {
        case "sigmoid": { // DPO Eq. 7; cDPO (Mitchell 2023) in classic TRL
          const [v, d] = smoothed(x, config.classic_cdpo ? eps : 0);
          l = v; gS_c[i] += s * d * beta; gS_r[i] -= s * d * beta; break;
        }
        case "hinge": { // SLiC / RSO (Liu et al. 2023, arXiv 2309.06657, Eq. 5)
          l = Math.max(0, 1 - x);
          const d = x < 1 ? -beta : 0;
          gS_c[i] += s * d; gS_r[i] -= s * d; break;
        }
        case "ipo": case "sigmoid_norm": { // IPO (Azar et al. 2023, arXiv 2310.12036, Eq. 17), length-normalised as TRL
          const nc = Math.max(inputs.chosenTokens[i], 1), nr = Math.max(inputs.rejectedTokens[i], 1);
          const db = sc[i] / nc - sr[i] / nr;
          let d: number;
          if (type === "ipo") { const u = db - 1 / (2 * beta); l = u * u; d = 2 * u; }
          else { l = -logSigmoid(beta * db); d = -beta * sigmoid(-beta * db); }
          gS_c[i] += (s * d) / nc; gS_r[i] -= (s * d) / nr; break;
        }
        case "exo_pair": { // EXO (Ji et al. 2024, arXiv 2402.00856, Eq. 16), K = 2
          const q = sigmoid(x), lq = logSigmoid(x), lql = logSigmoid(-x);
          l = q * (lq - Math.log1p(-eps)) + (1 - q) * (lql - Math.log(eps));
          // d/dx = q(1−q)·[x − log(1−ε) + log ε], using logq − log(1−q) = x
          const d = beta * q * (1 - q) * (x - Math.log1p(-eps) + Math.log(eps));
          gS_c[i] += s * d; gS_r[i] -= s * d; break;
        }
        case "nca_pair": { // NCA (Chen et al. 2024, arXiv 2402.05369, Eq. 11 for K = 2)
          const a = beta * sc[i], b = beta * sr[i];
          l = -logSigmoid(a) - 0.5 * logSigmoid(-a) - 0.5 * logSigmoid(-b);
          gS_c[i] += s * beta * (-sigmoid(-a) + 0.5 * sigmoid(a)); gS_r[i] += s * beta * 0.5 * sigmoid(b); break;
        }
        case "robust": { // Robust DPO (Chowdhury et al. 2024, arXiv 2403.00409, Eq. 8)
          l = (-(1 - eps) * logSigmoid(x) + eps * logSigmoid(-x)) / (1 - 2 * eps);
          const d = (beta * (-(1 - eps) * sigmoid(-x) - eps * sigmoid(x))) / (1 - 2 * eps);
          gS_c[i] += s * d; gS_r[i] -= s * d; break;
        }
        case "bco_pair": { // BCO (Jung et al. 2024, arXiv 2404.04656, Eq. 7), current TRL: no running reward mean
          const a = beta * sc[i], b = beta * sr[i];
          l = -logSigmoid(a) - logSigmoid(-b);
          gS_c[i] += s * beta * -sigmoid(-a); gS_r[i] += s * beta * sigmoid(b); break;
        }
        case "sppo_hard": { // SPPO (Wu et al. 2024, arXiv 2405.00675, Eq. 4.7) with hard P ∈ {0, 1}
          const u = sc[i] - 0.5 / beta, v = sr[i] + 0.5 / beta;
          l = u * u + v * v;
          gS_c[i] += s * 2 * u; gS_r[i] += s * 2 * v; break;
        }
        case "apo_zero": { // APO-zero (D'Oosterlinck et al. 2024, arXiv 2408.06266, Eq. 7); uses log-ratios, not scores
          const pc = sigmoid(beta * rc[i]), pr = sigmoid(beta * rr[i]);
          l = 1 - pc + pr;
          gR_c[i] -= s * beta * pc * (1 - pc); gR_r[i] += s * beta * pr * (1 - pr); break;
        }
        case "apo_down": { // APO-down (same paper, Eq. 8)
          const pc = sigmoid(beta * rc[i]), pd = sigmoid(x);
          l = pc + 1 - pd;
          gR_c[i] += s * beta * pc * (1 - pc);
          gS_c[i] -= s * beta * pd * (1 - pd); gS_r[i] += s * beta * pd * (1 - pd); break;
        }
        case "discopop": { // DiscoPOP (Chan Lu et al. 2024, arXiv 2406.08414, Eq. 5)
          const m = sigmoid(x / tau), dm = (m * (1 - m)) / tau;
          // e^{−x}·m computed as exp(−x + logσ(x/τ)) so a large negative x cannot give inf·0
          const em = Math.exp(-x + logSigmoid(x / tau));
          const ls = logSigmoid(x);
          l = -ls * (1 - m) + em;
          // d/dx: −σ(−x)(1−m) + logσ(x)·m' − e^{−x}m + e^{−x}m', with e^{−x}m' = e^{−x}m(1−m)/τ
          const d = beta * (-sigmoid(-x) * (1 - m) + ls * dm - em + (em * (1 - m)) / tau);
          gS_c[i] += s * d; gS_r[i] -= s * d; break;
        }
        case "sft": { // NLL on chosen (RPO, Pang et al. 2024, arXiv 2404.19733, Eq. 3), broadcast to the batch
          l = inputs.chosenNll as number;
          dChosenNll += s; break;
        }
        case "aot": case "aot_unpaired": break; // batch-coupled, below
      }
      losses[i] += wk * wpo(i) * l;
    }
    if (type === "aot" || type === "aot_unpaired") {
      // AOT (Melnyk et al. 2024, arXiv 2406.05882, Eq. 9): sort within the batch, then a smoothed logistic loss.
      // aot pairs sorted (c − r) with sorted (c0 − r0); aot_unpaired pairs sorted ρc with sorted ρr.
      let permC: number[], permR: number[];
      const d = new Float64Array(B);
      if (type === "aot") {
        const lr = Array.from({ length: B }, (_, i) => inputs.chosen[i] - inputs.rejected[i]);
        const ref = Array.from({ length: B }, (_, i) => inputs.refChosen[i] - inputs.refRejected[i]);
        permC = argsort(lr); permR = permC;
        const refSorted = argsort(ref).map((i) => ref[i]);
        for (let j = 0; j < B; j++) d[j] = lr[permC[j]] - refSorted[j];
      } else {
        permC = argsort(rc); permR = argsort(rr);
        for (let j = 0; j < B; j++) d[j] = rc[permC[j]] - rr[permR[j]];
      }
      for (let j = 0; j < B; j++) {
        const s = (wk * wpo(j)) / B; // TRL multiplies the sorted losses by weights in batch order
        const [v, g] = smoothed(beta * d[j], eps);
        losses[j] += wk * wpo(j) * v;
        gR_c[permC[j]] += s * g * beta;
        gR_r[permR[j]] -= s * g * beta;
      }
    }
  }

  const dChosen = new Float64Array(B), dRejected = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    dChosen[i] = gR_c[i] + gS_c[i] * dsc[i];
    dRejected[i] = gR_r[i] + gS_r[i] * dsr[i];
  }

  // Metrics use log-ratios (summed logps) whatever the loss type or f-divergence, as current TRL.
  let acc = 0;
  for (let i = 0; i < B; i++) if (beta * rc[i] > beta * rr[i]) acc++;
  const metrics: Record<string, number> = {
    "rewards/chosen": beta * mean(rc),
    "rewards/rejected": beta * mean(rr),
    "rewards/accuracies": acc / B,
    "rewards/margins": beta * (mean(rc) - mean(rr)),
    "logps/chosen": mean(inputs.chosen),
    "logps/rejected": mean(inputs.rejected),
  };
  return { loss: mean(losses), losses, dChosen, dRejected, dChosenNll, metrics };
}
