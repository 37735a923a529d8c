// The plainest decoding loop: greedy continuations with no processors and no EOS, batched over one KV cache.
// What the parity tests compare with transformers' generate(do_sample=False) and with the full forward; the
// loop users run (sampling, stop rules, streaming) is engine.ts.
import type { NativeModel } from "../core/native.ts";
import { argmax } from "./sampling.ts";

export { argmax };

/**
 * Greedy continuations (argmax every step, no EOS, no processors) of each prompt, batched with one KV cache:
 * what the parity tests compare with transformers' generate(do_sample=False).
 */
export function greedyIds(model: NativeModel, prompts: number[][], maxNew: number, opts: { adapters?: boolean } = {}): number[][] {
  const n = prompts.length;
  const T = Math.max(...prompts.map((p) => p.length));
  const cache = model.kvCache(n, T + maxNew);
  const V = model.config.vocabSize;
  const out: number[][] = prompts.map(() => []);
  try {
    let ids = new Int32Array(n * T);
    let lengths = Int32Array.from(prompts, (p) => p.length);
    prompts.forEach((p, i) => ids.set(p, i * T));
    const rows = Int32Array.from(prompts, (_, i) => i);
    for (let step = 0; step < maxNew; step++) {
      const logits = model.decode(cache, rows, ids, lengths, step === 0 ? T : 1, opts);
      ids = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const next = argmax(logits.subarray(i * V, (i + 1) * V));
        out[i].push(next);
        ids[i] = next;
      }
      lengths = new Int32Array(n).fill(1);
    }
  } finally {
    cache.free();
  }
  return out;
}
