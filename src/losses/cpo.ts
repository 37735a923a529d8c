// CPO / SimPO / AlphaPO, reference-free, TRL semantics (trl.experimental.cpo):
//   CPO: Xu et al. 2024 (arXiv 2401.08417) Eq. 3 + BC regulariser, L = −log σ(β(log πc − log πr)) + cpo_alpha·NLL.
//   SimPO: Meng et al. 2024 (arXiv 2405.14734) Eq. 6, −log σ(β(avg c − avg r) − γ).
//   AlphaPO: Gupta et al. 2025 (arXiv 2501.03884) Eq. 5, reward r = (1 − p^(−α))/α with p = exp(logp).
// Pure function of per-sequence numbers; the caller picks summed or averaged logps (cpoLogpKind).

import { checkScalar, checkVec, logSigmoid, mean, sigmoid, type Vec } from "./numerics.ts";

export const CPO_LOSS_TYPES = ["sigmoid", "hinge", "ipo", "simpo", "alphapo"] as const;
export type CpoLossType = (typeof CPO_LOSS_TYPES)[number];

export interface CpoConfig {
  beta: number;            // default 0.1
  loss_type: CpoLossType;  // default "sigmoid"; "alphapo" = "simpo" with cpo_alpha forced to 0 (as TRL)
  cpo_alpha: number;       // weight of the NLL (BC) term, default 1.0
  simpo_gamma: number;     // SimPO target margin γ, default 0.5 (γ itself, not γ/β)
  alpha: number;           // AlphaPO reward shape, default 0 (plain logps)
  label_smoothing: number; // sigmoid/simpo smoothing, default 0
}

export interface CpoInputs {
  chosen: Vec;   // (B,) chosen completion logp: Σ or average, see cpoLogpKind
  rejected: Vec; // (B,) rejected, same kind
  nll?: number;  // token-mean NLL over chosen completion tokens (prompt masked, unlike ORPO); unused when cpo_alpha = 0
}

export interface CpoResult {
  loss: number;              // mean(losses) + cpo_alpha·nll
  losses: Float64Array;      // (B,) preference term per pair
  dChosen: Float64Array;     // (B,)
  dRejected: Float64Array;   // (B,)
  dNll: number;              // = effective cpo_alpha
  metrics: Record<string, number>;
}

/** Which per-sequence logp CPOTrainer feeds each loss_type: averaged for ipo and simpo (and alphapo), else summed. */
export function cpoLogpKind(loss_type: CpoLossType): "sum" | "avg" {
  return loss_type === "ipo" || loss_type === "simpo" || loss_type === "alphapo" ? "avg" : "sum";
}

/** TRL's CPOConfig.__post_init__ sugar: alphapo → simpo with cpo_alpha = 0. */
export function resolveCpoConfig(config: CpoConfig): CpoConfig {
  return config.loss_type === "alphapo" ? { ...config, loss_type: "simpo", cpo_alpha: 0 } : config;
}

export function cpoLoss(inputs: CpoInputs, config: CpoConfig): CpoResult {
  const fn = "cpoLoss";
  const cfg = resolveCpoConfig(config);
  const B = inputs.chosen?.length ?? 0;
  if (B === 0) throw new Error(`${fn}: empty batch; chosen must hold one log-prob per pair`);
  checkVec(fn, "chosen", inputs.chosen, B);
  checkVec(fn, "rejected", inputs.rejected, B);
  const beta = checkScalar(fn, "beta", cfg.beta, (x) => Number.isFinite(x) && x > 0, "a finite number > 0");
  const eps = checkScalar(fn, "label_smoothing", cfg.label_smoothing ?? 0, (x) => x >= 0 && x < 1, "in [0, 1)");
  const alpha = checkScalar(fn, "alpha", cfg.alpha ?? 0, Number.isFinite, "a finite number");
  const cpoAlpha = checkScalar(fn, "cpo_alpha", cfg.cpo_alpha, Number.isFinite, "a finite number");
  const gamma = checkScalar(fn, "simpo_gamma", cfg.simpo_gamma ?? 0.5, Number.isFinite, "a finite number");
  if (!["sigmoid", "hinge", "ipo", "simpo"].includes(cfg.loss_type)) {
    throw new Error(`${fn}: loss_type "${config.loss_type}" is unknown; use sigmoid, hinge, ipo, simpo or alphapo`);
  }
  // TRL skips the NLL forward entirely when cpo_alpha == 0 and logs nll_loss = 0.
  let nll = 0;
  if (cpoAlpha !== 0) nll = checkScalar(fn, "nll", inputs.nll, Number.isFinite, "a finite number (nllMean over the chosen completion tokens) when cpo_alpha ≠ 0");

  // AlphaPO reward r(l) = (1 − e^{−α·l})/α, r'(l) = e^{−α·l}; α = 0 is the identity.
  const reward = (l: number): [number, number] => alpha !== 0 ? [(1 - Math.exp(-alpha * l)) / alpha, Math.exp(-alpha * l)] : [l, 1];
  const losses = new Float64Array(B), dC = new Float64Array(B), dR = new Float64Array(B);
  const rewC = new Float64Array(B), rewR = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    const [rc, drc] = reward(inputs.chosen[i]);
    const [rr, drr] = reward(inputs.rejected[i]);
    rewC[i] = beta * rc; rewR[i] = beta * rr;
    let z = rc - rr;
    if (cfg.loss_type === "simpo") z -= gamma / beta;
    const x = beta * z;
    let l: number, dz: number;
    switch (cfg.loss_type) {
      case "sigmoid": case "simpo":
        l = -(1 - eps) * logSigmoid(x) - eps * logSigmoid(-x);
        dz = beta * (-(1 - eps) * sigmoid(-x) + eps * sigmoid(x)); break;
      case "hinge":
        l = Math.max(0, 1 - x); dz = x < 1 ? -beta : 0; break;
      default: { // ipo, reference-free: (z − 1/(2β))²
        const u = z - 1 / (2 * beta);
        l = u * u; dz = 2 * u;
      }
    }
    losses[i] = l;
    dC[i] = (dz * drc) / B;
    dR[i] = (-dz * drr) / B;
  }

  let acc = 0;
  for (let i = 0; i < B; i++) if (rewC[i] > rewR[i]) acc++;
  const metrics: Record<string, number> = {
    "rewards/chosen": mean(rewC),
    "rewards/rejected": mean(rewR),
    "rewards/accuracies": acc / B,
    "rewards/margins": mean(rewC) - mean(rewR),
    "logps/rejected": mean(inputs.rejected),
    "logps/chosen": mean(inputs.chosen),
    nll_loss: nll,
  };
  return { loss: mean(losses) + cpoAlpha * nll, losses, dChosen: dC, dRejected: dR, dNll: cpoAlpha, metrics };
}
