// Public face of src/losses: the pure loss functions, the token ↔ sequence aggregation helpers, and
// each method's loss-related TRL defaults as plain objects.
// Training-level defaults (learning_rate 1e-6, max_length, batch sizes, ...) belong to src/train, not here.

import type { CpoConfig } from "./cpo.ts";
import type { DpoConfig } from "./dpo.ts";
import type { KtoConfig } from "./kto.ts";
import type { OrpoConfig } from "./orpo.ts";

export * from "./aggregate.ts";
export * from "./cpo.ts";
export * from "./dpo.ts";
export * from "./kto.ts";
export * from "./orpo.ts";
export * from "./sft.ts";
export { log1mexp, logSigmoid, sigmoid, type Vec } from "./numerics.ts";

/** ORPOConfig (trl.experimental.orpo): beta is the paper's λ. */
export const ORPO_DEFAULTS: Readonly<OrpoConfig> = Object.freeze({ beta: 0.1 });

/** DPOConfig, current TRL (f_alpha_divergence_coef was 1.0 in classic TRL). */
export const DPO_DEFAULTS: Readonly<DpoConfig> = Object.freeze({
  beta: 0.1,
  loss_type: ["sigmoid"],
  loss_weights: null,
  label_smoothing: 0,
  f_divergence_type: "reverse_kl",
  f_alpha_divergence_coef: 0.5,
  discopop_tau: 0.05,
  classic_cdpo: false,
});

/** KTOConfig. */
export const KTO_DEFAULTS: Readonly<KtoConfig> = Object.freeze({
  beta: 0.1,
  desirable_weight: 1,
  undesirable_weight: 1,
  loss_type: "kto",
});

/** CPOConfig (trl.experimental.cpo). For SimPO use loss_type "simpo", cpo_alpha 0, beta ≈ 2–2.5. */
export const CPO_DEFAULTS: Readonly<CpoConfig> = Object.freeze({
  beta: 0.1,
  loss_type: "sigmoid",
  cpo_alpha: 1,
  simpo_gamma: 0.5,
  alpha: 0,
  label_smoothing: 0,
});
