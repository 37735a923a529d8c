// ORPO: odds-ratio preference optimisation, Hong, Lee & Thorne 2024 (arXiv 2403.07691), Eq. 6–7:
//   L = L_SFT + λ·L_OR,  L_OR = −log σ(log odds(yw|x) − log odds(yl|x)),  odds = P/(1−P), P = exp(avg logp).
// TRL semantics (trl.experimental.orpo): λ = `beta`, L_SFT is the token-mean NLL over the whole chosen
// sequence (prompt included; see aggregate.ts nllMean/sequenceMask), odds from length-averaged logps.
// Pure function of per-sequence numbers: no model, no token arrays.

import { checkScalar, checkVec, log1mexp, log1mexpGrad, logSigmoid, mean, sigmoid, type Vec } from "./numerics.ts";

export interface OrpoConfig {
  beta: number; // λ in the paper (official code: --alpha); TRL default 0.1
}

export interface OrpoInputs {
  chosenAvg: Vec;   // (B,) average completion log-prob of chosen, prompt masked (sequenceStats().avg)
  rejectedAvg: Vec; // (B,) same for rejected
  nll: number;      // token-mean NLL of the chosen rows (nllMean over sequenceMask of the chosen rows)
}

export interface OrpoResult {
  loss: number;              // nll − mean(β·logσ(log_odds))
  losses: Float64Array;      // (B,) −β·logσ(log_odds), the odds-ratio term per pair (NLL excluded)
  dChosenAvg: Float64Array;  // (B,) d loss / d chosenAvg
  dRejectedAvg: Float64Array;// (B,) d loss / d rejectedAvg
  dNll: number;              // d loss / d nll (= 1)
  metrics: Record<string, number>;
}

/**
 * Upper clamp applied to the averaged logps inside the odds term only. A true average log-prob is < 0,
 * but an empty completion (avg 0 from sequenceStats) or a float32 rounding to 0 would make
 * log1mexp(0) = −inf and the loss NaN (TRL issues #1473, #3237). Clamping at −1e-6 (the bound proposed in
 * TRL's unmerged fix for #3237) keeps everything finite: at worst log odds ≈ 13.8, and the clamped entry
 * gets zero gradient, like torch.clamp. Values below −1e-6 are untouched, so TRL's results are reproduced
 * wherever TRL's are finite and the average is not within 1e-6 of zero.
 */
export const ORPO_MAX_AVG_LOGP = -1e-6;

export function orpoLoss(inputs: OrpoInputs, config: OrpoConfig): OrpoResult {
  const fn = "orpoLoss";
  const B = inputs.chosenAvg?.length ?? 0;
  if (B === 0) throw new Error(`${fn}: empty batch; chosenAvg must hold one average log-prob per pair`);
  checkVec(fn, "chosenAvg", inputs.chosenAvg, B);
  checkVec(fn, "rejectedAvg", inputs.rejectedAvg, B);
  const nll = checkScalar(fn, "nll", inputs.nll, Number.isFinite, "a finite number (nllMean of the chosen rows)");
  const beta = checkScalar(fn, "beta", config.beta, (x) => Number.isFinite(x) && x >= 0, "a finite number ≥ 0");

  const losses = new Float64Array(B), dC = new Float64Array(B), dR = new Float64Array(B);
  const logOdds = new Float64Array(B), ratio = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    const c = Math.min(inputs.chosenAvg[i], ORPO_MAX_AVG_LOGP);
    const r = Math.min(inputs.rejectedAvg[i], ORPO_MAX_AVG_LOGP);
    const lo = c - r - (log1mexp(c) - log1mexp(r));
    logOdds[i] = lo;
    ratio[i] = logSigmoid(lo);
    losses[i] = -beta * ratio[i];
    // d(−β/B·logσ(lo))/d lo = −β/B·σ(−lo); d lo/dc = 1 − log1mexp'(c), d lo/dr = −(1 − log1mexp'(r))
    const g = (-beta / B) * sigmoid(-lo);
    dC[i] = inputs.chosenAvg[i] < ORPO_MAX_AVG_LOGP ? g * (1 - log1mexpGrad(c)) : 0;
    dR[i] = inputs.rejectedAvg[i] < ORPO_MAX_AVG_LOGP ? -g * (1 - log1mexpGrad(r)) : 0;
  }

  let acc = 0;
  for (let i = 0; i < B; i++) if (beta * inputs.chosenAvg[i] > beta * inputs.rejectedAvg[i]) acc++; // TRL compares the rewards
  const mc = mean(inputs.chosenAvg), mr = mean(inputs.rejectedAvg);
  const metrics: Record<string, number> = {
    "rewards/chosen": beta * mc,
    "rewards/rejected": beta * mr,
    "rewards/accuracies": acc / B,
    "rewards/margins": beta * (mc - mr),
    "logps/rejected": mr,
    "logps/chosen": mc,
    nll_loss: nll,
    log_odds_ratio: mean(ratio),   // TRL's (misleading) name for mean logσ(log_odds)
    log_odds_chosen: mean(logOdds),
  };
  return { loss: nll + mean(losses), losses, dChosenAvg: dC, dRejectedAvg: dR, dNll: 1, metrics };
}
