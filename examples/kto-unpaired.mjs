// KTO on unpaired data (prompt, completion, label) — TRL's KTOTrainer; the rows are filtered and mapped first.
// Usage: node examples/kto-unpaired.mjs MODEL_DIR [OUTPUT_DIR] [MAX_STEPS]
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, KTOConfig, KTOTrainer, load_dataset } from "preftune";

const [modelDir, outputDir = "runs/example-kto", steps = "20"] = process.argv.slice(2);
const data = fileURLToPath(new URL("../data/hh-rlhf-kto-unpaired", import.meta.url));

const model = await AutoModelForCausalLM.from_pretrained(modelDir);
const rows = await load_dataset(data, { split: "train" });
const train_dataset = rows.select([...Array(64).keys()]).filter((r) => r.completion.length > 0);
const trainer = new KTOTrainer({
  model, train_dataset,
  args: new KTOConfig({ output_dir: outputDir, max_steps: Number(steps), per_device_train_batch_size: 4, learning_rate: 5e-4, max_length: 256, logging_steps: 5, save_strategy: "no", desirable_weight: 1.0, undesirable_weight: 1.0 }),
});
const out = await trainer.train();
console.log(`KTO: ${out.global_step} steps, train_loss ${out.training_loss?.toFixed(4)}`);
model.dispose();
