// generate_during_eval: at each evaluation, greedy completions of the first few eval prompts by the policy being
// trained (and by the reference model, when the method has one in memory), appended to output_dir/completions.jsonl
// as one {step, prompt, policy, ref?} line per prompt: TRL's "game_log" table (Prompt, Policy, Ref Model).
// Decoding reuses the policy's own weights through a KV cache (no second load); text is the tokenizer's decode
// with special tokens skipped, cut at EOS. Not the loop's control flow (loop.ts decides when to evaluate) and not
// the report (src/report reads the file).
import { join } from "node:path";
import type { NativeModel } from "../core/native.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import { argmax } from "../generate/greedy.ts";
import { removeFile, writeFileAtomic } from "../util/durable.ts";
import { appendRecords, readRecordLog } from "../util/records.ts";

export const COMPLETIONS_FILE = "completions.jsonl";

/** One line of completions.jsonl. `ref` is absent when the run keeps no reference model. */
export interface CompletionRecord { step: number; prompt: string; policy: string; ref?: string }

/** A model to decode with: a NativeModel, optionally with its LoRA adapters disabled (the LoRA reference). */
export interface Decoder { model: NativeModel; adapters?: boolean }

export interface GreedyOptions {
  maxNewTokens: number;
  maxPositions: number;            // prompt + completion never goes past this (the model's max_position_embeddings)
  eos: ReadonlySet<number>;        // a row ends at the first of these (the token itself is not returned)
  batchSize?: number;              // prompts decoded together (default: all)
}

/**
 * Greedy (argmax) new tokens for each prompt, batched over one KV cache per chunk of `batchSize` prompts; a row
 * stops at EOS, after maxNewTokens, or when it reaches maxPositions, and finished rows drop out of the batch.
 * A prompt that already fills maxPositions gets no tokens.
 */
export function greedyCompletions(d: Decoder, prompts: readonly number[][], o: GreedyOptions): number[][] {
  const out: number[][] = prompts.map(() => []);
  const bs = Math.max(1, o.batchSize ?? prompts.length);
  for (let s = 0; s < prompts.length; s += bs) {
    const idx = Array.from({ length: Math.min(bs, prompts.length - s) }, (_, i) => s + i)
      .filter((i) => prompts[i].length > 0 && Math.min(o.maxNewTokens, o.maxPositions - prompts[i].length) > 0);
    if (idx.length === 0) continue;
    const budget = idx.map((i) => Math.min(o.maxNewTokens, o.maxPositions - prompts[i].length));
    const cache = d.model.kvCache(idx.length, Math.max(...idx.map((i, k) => prompts[i].length + budget[k])));
    const V = d.model.config.vocabSize;
    try {
      let live = idx.map((_, k) => k);           // cache rows still decoding
      let T = Math.max(...idx.map((i) => prompts[i].length));
      let ids = new Int32Array(live.length * T);
      let lengths = Int32Array.from(idx, (i) => prompts[i].length);
      idx.forEach((i, k) => ids.set(prompts[i], k * T));
      while (live.length > 0) {
        const logits = d.model.decode(cache, Int32Array.from(live), ids, lengths, T, { adapters: d.adapters });
        const next: number[] = [];
        live.forEach((k, j) => {
          const tok = argmax(logits.subarray(j * V, (j + 1) * V));
          const row = out[idx[k]];
          if (o.eos.has(tok)) return;
          row.push(tok);
          if (row.length < budget[k]) next.push(k);
        });
        live = next;
        T = 1;
        ids = Int32Array.from(live, (k) => { const row = out[idx[k]]; return row[row.length - 1]; });
        lengths = new Int32Array(live.length).fill(1);
      }
    } finally {
      cache.free();
    }
  }
  return out;
}

/** The first `n` distinct prompts (by token ids) of the eval rows, in order; rows with no prompt (SFT text) are skipped. */
export function samplePrompts(rows: readonly { prompt_ids: number[] }[], n: number): number[][] {
  const seen = new Set<string>();
  const out: number[][] = [];
  for (const r of rows) {
    if (out.length >= n) break;
    if (r.prompt_ids.length === 0) continue;
    const key = r.prompt_ids.join(",");
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(r.prompt_ids);
  }
  return out;
}

export interface EvalSamplerOptions {
  outputDir: string;
  tokenizer: Pick<Tokenizer, "decode" | "eosTokenId">;
  prompts: number[][];
  policy: Decoder;
  reference: Decoder | null;
  maxNewTokens: number;
  maxPositions: number;
  eos: Iterable<number>;           // beside the tokenizer's EOS (e.g. config.json's eos_token_id)
  batchSize: number;
}

/** Returns the per-evaluation step: decode with the policy (and the reference), then append and fsync the lines. */
export function evalSampler(o: EvalSamplerOptions): (step: number) => CompletionRecord[] {
  const eos = new Set<number>(o.eos);
  if (o.tokenizer.eosTokenId != null) eos.add(o.tokenizer.eosTokenId);
  const g: GreedyOptions = { maxNewTokens: o.maxNewTokens, maxPositions: o.maxPositions, eos, batchSize: o.batchSize };
  const text = (ids: number[]) => o.tokenizer.decode(ids, true);
  const promptText = o.prompts.map(text);
  return (step) => {
    const policy = greedyCompletions(o.policy, o.prompts, g).map(text);
    const ref = o.reference ? greedyCompletions(o.reference, o.prompts, g).map(text) : null;
    const records = promptText.map((prompt, i): CompletionRecord => ({ step, prompt, policy: policy[i], ...(ref ? { ref: ref[i] } : {}) }));
    appendCompletions(o.outputDir, records);
    return records;
  };
}

/** Appends records to output_dir/completions.jsonl in one write, fsynced (appendRecords). */
export function appendCompletions(outputDir: string, records: readonly CompletionRecord[]): void {
  appendRecords(join(outputDir, COMPLETIONS_FILE), records);
}

/**
 * Start of a run: a fresh run (keepUpTo null) removes an earlier run's completions.jsonl; a resumed one keeps
 * the lines of steps up to the checkpoint's step (what a crash after it wrote, and any cut-short last line, go).
 */
export function resetCompletions(outputDir: string, keepUpTo: number | null): void {
  const file = join(outputDir, COMPLETIONS_FILE);
  const kept = keepUpTo === null ? [] : readRecordLog<CompletionRecord>(file, { repair: false }).records
    .map((r) => r.value).filter((r) => typeof r.step === "number" && r.step <= keepUpTo);
  if (kept.length) writeFileAtomic(file, kept.map((r) => JSON.stringify(r) + "\n").join(""));
  else removeFile(file);
}

/** config.json's eos_token_id (one id or a list), as the ids generation also stops at. */
export function configEosIds(configJson: Record<string, unknown>): number[] {
  const v = configJson.eos_token_id;
  return (Array.isArray(v) ? v : [v]).filter((x): x is number => Number.isInteger(x));
}
