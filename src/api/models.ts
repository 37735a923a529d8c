// The library's models and tokenizers, in transformers.js's shape: AutoModelForCausalLM.from_pretrained(dir,
// { dtype }) gives a PreTrainedModel holding its weights in native memory (freed by dispose(), or by a
// FinalizationRegistry when the object is collected), with save_pretrained, generate and scoring;
// AutoTokenizer.from_pretrained(dir); PeftModel.from_pretrained(model, adapterDir) attaches a PEFT adapter.
// Only local folders (nothing is downloaded). Not training (trainer.ts) and not the decoding loop (src/generate).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { chooseCompute, NativeModel } from "../core/native.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import { Generator, type LoadedModel } from "../generate/engine.ts";
import { resolveGenerationConfig } from "../generate/config.ts";
import type { GenerateResult } from "../generate/types.ts";
import { loadWeightsInto, openModelFolder, saveDtypeOf, saveModel, storedDtype, type SaveDtype } from "../models/checkpoint.ts";
import { asModelLoadError, ModelLoadError } from "../models/errors.ts";
import { loadAdapter, saveAdapter, saveMergedModel } from "../models/peft.ts";

/** transformers' dtype names: the weights' dtype when saved, and bfloat16 also asks for bf16 compute. */
export type ModelDtype = "auto" | "float32" | "bfloat16" | "float16";

export interface FromPretrainedOptions {
  /** auto (default): compute fp32, save as the checkpoint is stored; bfloat16: bf16 compute where this CPU gains from it (else fp32 with a note). */
  dtype?: ModelDtype;
  /** where notes go (default: stderr); null: nowhere */
  print?: ((line: string) => void) | null;
}

// The safety net: a model that is collected without dispose() still frees its native memory.
const finalizer = new FinalizationRegistry<NativeModel>((m) => m.free());

/** A causal LM with its weights in native memory (transformers.js's PreTrainedModel). */
export class PreTrainedModel {
  /** The folder it was loaded from (transformers' name_or_path). */
  readonly name_or_path: string;
  /** config.json as read. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly dtype: ModelDtype;
  /** The dtype save_pretrained writes (dtype, else the checkpoint's own). */
  readonly saveDtype: SaveDtype;
  private nativeModel: NativeModel | null;

  /** @internal use AutoModelForCausalLM.from_pretrained */
  constructor(dir: string, configJson: Record<string, unknown>, model: NativeModel, dtype: ModelDtype, saveDtype: SaveDtype) {
    this.name_or_path = dir;
    this.config = configJson;
    this.nativeModel = model;
    this.dtype = dtype;
    this.saveDtype = saveDtype;
    finalizer.register(this, model, this);
  }

  /** The native model (its parameters, forward, LoRA); throws after dispose(). */
  get native(): NativeModel {
    if (!this.nativeModel) throw new Error(`${this.name_or_path}: the model was disposed`);
    return this.nativeModel;
  }
  get disposed(): boolean { return this.nativeModel === null; }
  /** Parameters of the base model (an attached adapter's not counted). */
  num_parameters(): number { return this.native.numParameters; }
  /** Whether a LoRA adapter is attached (by PeftModel.from_pretrained or by training with peft_config). */
  get has_adapter(): boolean { return this.native.lora !== null; }

  /**
   * Writes the model as a Hugging Face folder: with an adapter attached, PEFT's adapter folder
   * (adapter_config.json, adapter_model.safetensors), as PeftModel.save_pretrained; else config.json and
   * model.safetensors in saveDtype. `merge: true` writes the adapter merged into the weights (PEFT's
   * merge_and_unload; the adapter is detached afterwards).
   */
  save_pretrained(dir: string, opts: { merge?: boolean; dtype?: ModelDtype; extra?: (dir: string) => void } = {}): void {
    const m = this.native;
    const dtype = opts.dtype && opts.dtype !== "auto" ? saveDtypeOf(opts.dtype) ?? this.saveDtype : this.saveDtype;
    const extra = opts.extra;   // more files into the same folder before it is renamed into place
    if (m.lora && opts.merge) saveMergedModel(resolve(dir), m, { ...this.config }, { dtype, extra });
    else if (m.lora) saveAdapter(resolve(dir), m.lora, { baseModelNameOrPath: this.name_or_path, extra });
    else saveModel(resolve(dir), { ...this.config }, m.table, m.params, { dtype, extra });
  }

  /**
   * Continues each prompt (token ids) greedily or by sampling with Hugging Face's generation keys
   * (max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, eos_token_id, seed, ...), over
   * generation_config.json's defaults. Returns each row's prompt followed by its new tokens, as HF's generate.
   */
  async generate(input_ids: number[] | number[][], options: Record<string, unknown> = {}): Promise<number[][]> {
    const rows = input_ids.length > 0 && Array.isArray(input_ids[0]) ? (input_ids as number[][]) : [input_ids as number[]];
    const results = await this.generateDetailed(rows, options);
    return rows.map((r, i) => [...r, ...results[i].completionIds]);
  }

  /** generate with each row's decoded completion, finish reason and timings (the tokenizer of the folder, when it has one). */
  async generateDetailed(rows: number[][], options: Record<string, unknown> = {}): Promise<GenerateResult[]> {
    const model = this.native;
    const dir = this.name_or_path;
    const config = resolveGenerationConfig({ modelDir: dir, configJson: { ...this.config }, overrides: options, where: "generate options" });
    const tokenizer = existsSync(join(dir, "tokenizer.json")) ? await loadTokenizer(dir) : null;
    const loaded: LoadedModel = {
      dir, name: dir, model, configJson: { ...this.config }, generationDefaults: config, maxPositions: model.config.maxPositionEmbeddings,
      adapterDir: null, dispose: () => {},
      tokenizer: tokenizer ?? ({ decode: () => "" } as unknown as Tokenizer),   // no tokenizer: ids only (stop_strings need one)
    };
    return new Generator(loaded).generate(rows.map((promptIds) => ({ promptIds, config })));
  }

  /**
   * The logits (T, V) of every position of one sequence, row t predicting token t+1 (transformers'
   * model(input_ids).logits[0]); with an adapter attached, the adapted model's.
   */
  logits(input_ids: readonly number[]): Float32Array {
    const m = this.native;
    const T = input_ids.length, V = m.config.vocabSize;
    if (T === 0) throw new Error("logits: input_ids is empty");
    const out = new Float32Array(T * V);   // (T, V)
    const cache = m.kvCache(1, T);
    try {
      const rows = Int32Array.of(0), one = Int32Array.of(1);
      for (let t = 0; t < T; t++) out.set(m.decode(cache, rows, Int32Array.of(input_ids[t]), one, 1), t * V);
    } finally {
      cache.free();
    }
    return out;
  }

  /** Frees the native memory now (idempotent). The object is unusable afterwards. */
  dispose(): void {
    if (!this.nativeModel) return;
    finalizer.unregister(this);
    this.nativeModel.free();
    this.nativeModel = null;
  }
}

/** transformers' AutoModelForCausalLM: loads a local Hugging Face model folder (Llama, Mistral, Qwen2, Qwen3). */
export class AutoModelForCausalLM {
  private constructor() {}
  static async from_pretrained(dir: string, opts: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
    const dtype = opts.dtype ?? "auto";
    if (!["auto", "float32", "bfloat16", "float16"].includes(dtype)) throw new TypeError(`dtype must be auto, float32, bfloat16 or float16, got ${JSON.stringify(dtype)}`);
    const print = opts.print === undefined ? (l: string) => process.stderr.write(`${l}\n`) : opts.print;
    if (!existsSync(join(dir, "config.json"))) {
      throw new ModelLoadError(dir, `${dir}: no config.json, so this is not a Hugging Face model folder${existsSync(join(dir, "adapter_config.json")) ? " (it is a PEFT adapter: load its base model, then PeftModel.from_pretrained(model, dir))" : ""}`);
    }
    return asModelLoadError(dir, () => {
      const { config, configJson, files, memoryWarning } = openModelFolder(dir);
      if (memoryWarning) print?.(`note: ${memoryWarning}`);
      const choice = chooseCompute({ bf16: dtype === "bfloat16", fp16: dtype === "float16" });
      for (const n of choice.notes) print?.(`note: ${n}`);
      const model = new NativeModel(config, { compute: choice.compute });
      try {
        loadWeightsInto(dir, model.table, model.params);
      } catch (e) {
        model.free();
        throw e;
      }
      const saveDtype = dtype === "auto" ? storedDtype(configJson, files) : saveDtypeOf(dtype) ?? "F32";
      return new PreTrainedModel(dir, configJson, model, dtype, saveDtype);
    });
  }
}

/** PEFT's PeftModel.from_pretrained: attaches the adapter of a PEFT folder to a loaded base model (returned). */
export class PeftModel {
  private constructor() {}
  static async from_pretrained(model: PreTrainedModel, adapterDir: string): Promise<PreTrainedModel> {
    asModelLoadError(adapterDir, () => loadAdapter(adapterDir, model.native));
    return model;
  }
}

/** A tokenizer with its chat template (Hugging Face tokenizer.json + tokenizer_config.json). */
export type PreTrainedTokenizer = Tokenizer;

/** transformers' AutoTokenizer: the tokenizer of a local model folder. */
export class AutoTokenizer {
  private constructor() {}
  static async from_pretrained(dir: string, opts: { chat_template?: string | null } = {}): Promise<PreTrainedTokenizer> {
    if (!existsSync(join(dir, "tokenizer.json"))) throw new ModelLoadError(dir, `${dir}: no tokenizer.json; copy tokenizer.json and tokenizer_config.json from the model repository into the folder`);
    return loadTokenizer(dir, { chat_template: opts.chat_template });
  }
}
