// Writes, through the library API, what tools/interop/check_api_interop.py loads with transformers and PEFT: a
// tiny model trained 2 ORPO steps and saved by save_pretrained, a LoRA adapter trained 2 DPO steps and saved by
// save_pretrained, and the logits preftune computes for a fixed sequence with each (logits.json).
// Usage: node --import tsx tools/interop/api-save.mts OUT_DIR
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTinyModel } from "../../src/models/tiny.ts";
import { AutoModelForCausalLM, DPOConfig, DPOTrainer, LoraConfig, ORPOConfig, ORPOTrainer, load_dataset } from "../../src/index.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: api-save.mts OUT_DIR");
const base = makeTinyModel(join(out, "base"), { tokenizer: "llama2", hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128, tie: false, seed: 3 });
const data = (await load_dataset(new URL("../../data/hh-rlhf-harmless-sample", import.meta.url).pathname, { split: "train" })).select([0, 1, 2, 3]);
const ids = [1, 450, 4996, 17354, 1701, 432, 29871, 13, 3492, 338];
const common = { max_steps: 2, per_device_train_batch_size: 2, learning_rate: 1e-3, max_length: 128, save_strategy: "no" as const, dataset_cache_dir: null };

const full = await AutoModelForCausalLM.from_pretrained(base, { print: null });
await new ORPOTrainer({ model: full, args: new ORPOConfig({ ...common, output_dir: join(out, "orpo-run") }), train_dataset: data, quiet: true }).train();
full.save_pretrained(join(out, "full"), { dtype: "float32" });
const fullLogits = Array.from(full.logits(ids));
full.dispose();

const lora = await AutoModelForCausalLM.from_pretrained(base, { print: null });
await new DPOTrainer({ model: lora, args: new DPOConfig({ ...common, output_dir: join(out, "dpo-run") }), train_dataset: data, peft_config: new LoraConfig({ r: 4, lora_alpha: 8, target_modules: "all-linear" }), quiet: true }).train();
lora.save_pretrained(join(out, "adapter"));
const loraLogits = Array.from(lora.logits(ids));
lora.dispose();
writeFileSync(join(out, "logits.json"), JSON.stringify({ ids, full: fullLogits, lora: loraLogits }));
