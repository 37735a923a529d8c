// ORPO full fine-tuning with the library API (TRL's ORPOTrainer, in TypeScript/JavaScript).
// Usage: node examples/orpo-full.mjs MODEL_DIR [OUTPUT_DIR] [MAX_STEPS]
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, ORPOConfig, ORPOTrainer, load_dataset } from "preftune";

const [modelDir, outputDir = "runs/example-orpo", steps = "20"] = process.argv.slice(2);
const data = fileURLToPath(new URL("../data/hh-rlhf-harmless-sample", import.meta.url));

const model = await AutoModelForCausalLM.from_pretrained(modelDir);
const train_dataset = (await load_dataset(data, { split: "train" })).select([...Array(64).keys()]);
const eval_dataset = (await load_dataset(data, { split: "test" })).select([...Array(16).keys()]);
const args = new ORPOConfig({
  output_dir: outputDir, max_steps: Number(steps), per_device_train_batch_size: 4, learning_rate: 5e-4,
  beta: 0.1, max_length: 256, logging_steps: 5, eval_strategy: "steps", eval_steps: 10, save_strategy: "no",
});
const trainer = new ORPOTrainer({ model, args, train_dataset, eval_dataset, callbacks: [{ on_evaluate: (m) => console.log(`step ${m.step}: eval_rewards/accuracies ${m["eval_rewards/accuracies"]}`) }] });
const out = await trainer.train();
console.log(`trained ${out.global_step} steps, train_loss ${out.training_loss?.toFixed(4)}; model in ${out.output_dir}`);
model.dispose();
