// DPO with a LoRA adapter (TRL's DPOTrainer + PEFT's LoraConfig): the base stays frozen and is also the reference.
// Usage: node examples/dpo-lora.mjs MODEL_DIR [OUTPUT_DIR] [MAX_STEPS]
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, AutoTokenizer, DPOConfig, DPOTrainer, LoraConfig, load_dataset } from "preftune";

const [modelDir, outputDir = "runs/example-dpo-lora", steps = "20"] = process.argv.slice(2);
const data = fileURLToPath(new URL("../data/hh-rlhf-harmless-sample", import.meta.url));

const model = await AutoModelForCausalLM.from_pretrained(modelDir);
const tokenizer = await AutoTokenizer.from_pretrained(modelDir);
const train_dataset = (await load_dataset(data, { split: "train" })).select([...Array(64).keys()]);
const trainer = new DPOTrainer({
  model, processing_class: tokenizer, train_dataset,
  args: new DPOConfig({ output_dir: outputDir, max_steps: Number(steps), per_device_train_batch_size: 4, learning_rate: 1e-4, beta: 0.1, max_length: 256, logging_steps: 5, save_strategy: "no" }),
  peft_config: new LoraConfig({ r: 8, lora_alpha: 16, target_modules: "all-linear" }),
});
await trainer.train();
trainer.save_model(`${outputDir}/adapter`);   // adapter_config.json + adapter_model.safetensors + tokenizer
console.log(`last log: ${JSON.stringify(trainer.state.log_history.at(-1))}`);
model.dispose();
