// The decoding loop: a model folder (plus an optional PEFT adapter) loaded for generation, and a Generator that
// continues a batch of prompts with one native KV-cache call per step (prefill, then one token per live row;
// finished rows drop out), HF's logits processors per row, streaming text and finish reasons.
// Not here: the processors themselves (sampling.ts), GenerationConfig defaults (config.ts), chat UI or HTTP.
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { NativeModel, setNumThreads, type Quant4Config } from "../core/native.ts";
import { DataError } from "../data/errors.ts";
import type { Message } from "../data/formats.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import { loadWeightsInto, openModelFolder } from "../models/checkpoint.ts";
import { ADAPTER_CONFIG_FILE, loadAdapter, readAdapterFolder } from "../models/peft.ts";
import { loadQuantizedModel, quantizedWeightBytes } from "../models/quantize.ts";
import { mulberry32 } from "../util/random.ts";
import { maxNewTokens, resolveGenerationConfig } from "./config.ts";
import { chooseToken } from "./sampling.ts";
import { TextStream } from "./stream.ts";
import type { GenerateRequest, GenerateResult, GenerationConfig } from "./types.ts";

/** A model ready to generate: weights (and adapter) in native memory, its tokenizer and generation defaults. */
export interface LoadedModel {
  dir: string;                       // the base model folder
  name: string;                      // what servers and answer files call it: the adapter's or model's folder name
  model: NativeModel;
  tokenizer: Tokenizer;
  configJson: Record<string, unknown>;
  generationDefaults: GenerationConfig;
  maxPositions: number;
  adapterDir: string | null;
  dispose(): void;
}

export interface LoadOptions {
  adapter?: string | null;
  threads?: number;
  /** HF generation keys layered over generation_config.json for every request of this model. */
  overrides?: Record<string, unknown>;
  /** Hold the base's layer projections in bitsandbytes' 4-bit format (load_in_4bit), the rest in fp32. */
  quantization?: Quant4Config;
}

/**
 * Loads a Hugging Face model folder for generation. `modelDir` may also be a PEFT adapter folder: its
 * adapter_config.json names the base (base_model_name_or_path, resolved against the adapter folder).
 * The tokenizer comes from the adapter folder when it has one (TRL saves it there), else from the base.
 */
export async function loadGenerationModel(modelDir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  let base = modelDir;
  let adapterDir = opts.adapter ?? null;
  if (!adapterDir && !existsSync(join(modelDir, "config.json")) && existsSync(join(modelDir, ADAPTER_CONFIG_FILE))) {
    const named = readAdapterFolder(modelDir).baseModelNameOrPath;
    if (!named) throw new Error(`${modelDir} is a PEFT adapter folder without base_model_name_or_path; pass --model BASE --adapter ${modelDir}`);
    const candidates = [resolve(modelDir, named), resolve(named)];
    const found = candidates.find((d) => existsSync(join(d, "config.json")));
    if (!found) throw new Error(`${modelDir} is a PEFT adapter for "${named}", which is not a local model folder; pass --model BASE --adapter ${modelDir}`);
    adapterDir = modelDir;
    base = found;
  }
  if (opts.threads && opts.threads > 0) setNumThreads(opts.threads);
  // config.json against the weight headers and the model's size against this machine, before any allocation
  const q = opts.quantization;
  const { config, configJson, memoryWarning } = openModelFolder(base, { weightBytesOf: q ? (t) => quantizedWeightBytes(t, q, "fp32") : undefined });
  if (memoryWarning) process.stderr.write(`note: ${memoryWarning}\n`);
  const tokDir = adapterDir && existsSync(join(adapterDir, "tokenizer.json")) ? adapterDir : base;
  if (!existsSync(join(tokDir, "tokenizer.json"))) {
    throw new DataError("the model folder has no tokenizer.json, so text cannot be turned into tokens", {
      file: join(tokDir, "tokenizer.json"),
      fix: "Copy tokenizer.json and tokenizer_config.json from the model repository into the folder (save_pretrained of the tokenizer writes them)",
    });
  }
  const tokenizer = await loadTokenizer(tokDir);
  const model = q ? loadQuantizedModel(base, config, q, "fp32") : new NativeModel(config);
  try {
    if (!q) loadWeightsInto(base, model.table, model.params);
    if (adapterDir) {
      try {
        loadAdapter(adapterDir, model);
      } catch (e) {
        const named = existsSync(join(adapterDir, ADAPTER_CONFIG_FILE)) ? readAdapterFolder(adapterDir).baseModelNameOrPath : null;
        throw new Error(`${(e as Error).message}\nThe adapter in ${adapterDir} does not fit the model in ${base}` +
          (named ? `: it was trained on "${named}"; pass that model as --model` : "; pass the base model it was trained on as --model"));
      }
    }
  } catch (e) {
    model.free();
    throw e;
  }
  const defaults = resolveGenerationConfig({ modelDir: base, configJson, overrides: opts.overrides, where: base });
  // Chat models end a turn with the tokenizer's eos token; a generation_config.json that lists only the base
  // model's eos would otherwise run every answer to the length cap.
  if (tokenizer.eosTokenId != null && !defaults.eos_token_id.includes(tokenizer.eosTokenId)) defaults.eos_token_id.push(tokenizer.eosTokenId);
  return {
    dir: base,
    name: basename(resolve(adapterDir ?? base)),
    model, tokenizer, configJson,
    generationDefaults: defaults,
    maxPositions: config.maxPositionEmbeddings,
    adapterDir,
    dispose: () => model.free(),
  };
}

/** Where each row of a running batch stands. */
interface Row {
  req: GenerateRequest;
  ids: number[];                     // prompt + generated
  promptLength: number;
  maxNew: number;
  rand: () => number;
  stream: TextStream;
  eos: Set<number>;
  finish: GenerateResult["finishReason"] | null;
  firstTokenAt: number;
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

export class Generator {
  constructor(readonly loaded: LoadedModel) {}

  /** Chat template with the generation prompt, tokenized without special tokens (the template writes BOS). */
  chatPromptIds(messages: Message[]): number[] {
    const text = this.loaded.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    return this.loaded.tokenizer.encode(text, false);
  }

  /** Plain text tokenized with the tokenizer's own add_special_tokens default (BOS for Llama). */
  textPromptIds(text: string): number[] {
    return this.loaded.tokenizer.encode(text, true);
  }

  /** The number of new tokens a request may produce; throws (naming the numbers) when the prompt leaves no room. */
  budget(req: GenerateRequest): number {
    return maxNewTokens(req.config, req.promptIds.length, this.loaded.maxPositions);
  }

  /**
   * Decodes every request as one batch and resolves when all are done. Yields to the event loop between
   * steps, so a server keeps accepting requests and streaming while it decodes.
   */
  async generate(requests: GenerateRequest[], opts: { adapters?: boolean } = {}): Promise<GenerateResult[]> {
    if (requests.length === 0) return [];
    const { model, tokenizer } = this.loaded;
    const start = performance.now();
    const rows: Row[] = requests.map((req, i) => {
      if (req.promptIds.length === 0) throw new Error(`request ${i}: the prompt has no tokens`);
      const seed = req.config.seed ?? Math.floor(Math.random() * 2 ** 32);
      return {
        req, ids: [...req.promptIds], promptLength: req.promptIds.length, maxNew: this.budget(req),
        rand: mulberry32(seed), eos: new Set(req.config.eos_token_id), finish: null, firstTokenAt: 0,
        stream: new TextStream((ids) => tokenizer.decode(ids, true), req.config.stop_strings),
      };
    });
    const positions = Math.max(...rows.map((r) => r.promptLength + r.maxNew));
    const cache = model.kvCache(rows.length, positions);
    try {
      let live = rows.map((_, i) => i);
      let fresh = true;  // the first call appends whole prompts
      while (live.length > 0) {
        const T = fresh ? Math.max(...live.map((i) => rows[i].promptLength)) : 1;
        const ids = new Int32Array(live.length * T);
        const lengths = new Int32Array(live.length);
        live.forEach((i, k) => {
          const r = rows[i];
          const add = fresh ? r.ids : [r.ids[r.ids.length - 1]];
          ids.set(add, k * T);
          lengths[k] = add.length;
        });
        const logits = model.decode(cache, Int32Array.from(live), ids, lengths, T, { adapters: opts.adapters });
        const V = model.config.vocabSize;
        live.forEach((i, k) => this.advance(rows[i], logits.subarray(k * V, (k + 1) * V)));
        fresh = false;
        live = live.filter((i) => rows[i].finish === null);
        if (live.length > 0) await yieldToEventLoop();
      }
    } finally {
      cache.free();
    }
    const end = performance.now();
    return rows.map((r) => {
      const completionIds = r.ids.slice(r.promptLength);
      const tail = r.stream.flush();
      if (tail) r.req.onText?.(tail);
      const decodeSeconds = (end - r.firstTokenAt) / 1000;
      return {
        completion: r.stream.text,
        completionIds,
        finishReason: r.finish!,
        promptTokens: r.promptLength,
        completionTokens: completionIds.length,
        timeToFirstTokenMs: r.firstTokenAt - start,
        seconds: (end - start) / 1000,
        tokensPerSecond: completionIds.length > 1 && decodeSeconds > 0 ? (completionIds.length - 1) / decodeSeconds : 0,
      };
    });
  }

  /** Picks the next token of one row from its logits (V) and decides whether the row is done. */
  private advance(r: Row, logits: Float32Array): void {
    if (r.req.aborted?.()) { r.finish = "abort"; return; }
    const id = chooseToken(logits, r.ids, r.promptLength, r.req.config, r.rand);
    r.ids.push(id);
    if (r.firstTokenAt === 0) r.firstTokenAt = performance.now();
    const generated = r.ids.length - r.promptLength;
    if (r.eos.has(id)) { r.finish = "eos"; return; }  // EOS text is never shown
    const { delta, stopped } = r.stream.push(id);
    if (delta) r.req.onText?.(delta);
    if (stopped) r.finish = "stop";
    else if (generated >= r.maxNew) r.finish = "length";
  }
}
