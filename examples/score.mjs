// Scoring a model: summed completion log-probs of chosen and rejected for each pair, and the preference accuracy.
// Usage: node examples/score.mjs MODEL_DIR [OUTPUT_FILE] [DATASET]   (default: the HH-RLHF sample's test split)
import { fileURLToPath } from "node:url";
import { score } from "preftune";

const [modelDir, output = "runs/example-scores.jsonl", file] = process.argv.slice(2);
const dataset = file ?? fileURLToPath(new URL("../data/hh-rlhf-harmless-sample", import.meta.url));
const s = await score({ model: modelDir, dataset, split: file ? undefined : "test", output, maxLength: 256, batchSize: 8 });
console.log(`${s.pairs} pairs: preference accuracy ${(100 * s.accuracy).toFixed(1)}%, mean margin ${s.meanMargin.toFixed(4)} -> ${s.output}`);
