// Plain SFT: token-mean negative log-likelihood over completion tokens (TRL SFTTrainer with
// completion_only_loss; the maximum-likelihood objective, e.g. Ouyang et al. 2022 arXiv 2203.02155 §3.5).
// Works on token arrays directly, since SFT has no per-sequence structure; not a preference loss.

import { maskedTokenMean, nllMean, nllTokenGrads, type Floats } from "./aggregate.ts";

export interface SftResult {
  loss: number;          // Σ mask·(−logp) / Σ mask (0 when the batch has no completion token)
  dLogps: Float32Array;  // (N, T) d loss / d logps
  tokens: number;        // Σ mask
  metrics: Record<string, number>;
}

/**
 * logps, mask: (N, T) label-aligned; mask = completion tokens (or every real token but the first, for
 * full-sequence SFT). stats: optional per-token `correct` (argmax hits) and `entropy` for TRL's
 * mean_token_accuracy and entropy metrics over the same tokens.
 */
export function sftLoss(
  logps: Floats, mask: Uint8Array, N: number, T: number,
  stats?: { correct?: Uint8Array; entropy?: Floats },
): SftResult {
  const { nll, tokens } = nllMean(logps, mask, N, T);
  const dLogps = nllTokenGrads(1, mask, N, T);
  const metrics: Record<string, number> = {};
  if (stats?.entropy) metrics.entropy = maskedTokenMean(stats.entropy, mask, N, T).mean;
  if (stats?.correct) metrics.mean_token_accuracy = maskedTokenMean(stats.correct, mask, N, T).mean;
  return { loss: nll, dLogps, tokens, metrics };
}
