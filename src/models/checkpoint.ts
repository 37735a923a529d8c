// Hugging Face model folders in and out: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json. Opening a folder checks every tensor name and shape the config implies against
// the weight files' headers, and the memory the model needs against the machine's, before any buffer exists;
// loading then reads the data (a checkpoint of the base model, without its model. / gpt_neox. prefix, reads too, as
// transformers reads it; GPT-NeoX's per-head query_key_value rows are put into the core's q | k | v order);
// saving writes a folder transformers loads (those rows back in the checkpoint's order), atomically
// (src/util/durable.ts). Not the training checkpoint (optimizer state, trainer_state.json) and not adapters (PEFT files).
import { existsSync, lstatSync } from "node:fs";
import { freemem, totalmem } from "node:os";
import { basename, join } from "node:path";
import { embeddingOf } from "../core/arch.ts";
import { NativeModel, paramLayout } from "../core/native.ts";
import type { DecoderConfig, ParamInfo } from "../core/types.ts";
import { configJsonText, parseConfig } from "./config.ts";
import { describeModel, KNOWN_ARCHITECTURES } from "./family.ts";
import { isNeoxQkv, neoxHeadsOfJson, neoxQkvToStacked, stackedToNeoxQkv } from "./neox.ts";
import { DTYPE_SIZES, forEachTensorChunk, readHeader, readTensor, writeSafetensors, type SafetensorsHeader, type TensorToWrite } from "./safetensors.ts";
import { f32ToBf16 } from "./dtype.ts";
import { checkTable } from "./params.ts";
import { readTextFile, writeFolderAtomic, writeNewFile } from "../util/durable.ts";

export { buildParamTable, paramBufferSize, randomInit } from "./params.ts";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
const MAX_LISTED_PROBLEMS = 20;

/** Where each tensor of a model folder lives; headers are read and validated, data is not. */
export interface ModelFiles {
  dir: string;
  configPath: string;
  indexPath: string | null;                  // set when the checkpoint is sharded
  shards: SafetensorsHeader[];               // one per .safetensors file
  tensors: Map<string, SafetensorsHeader>;   // tensor name -> the file holding it
}

function readJson(file: string): unknown {
  const text = readTextFile(file, "JSON file");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: cannot read JSON: ${(e as Error).message}`);
  }
}

/** Whether a name exists in its folder at all, even as a link to nothing (existsSync follows links). */
function present(p: string): boolean {
  try { lstatSync(p); return true; } catch { return false; }
}

/** Find and validate the weight files of a folder (model.safetensors first, as transformers does, else the index). */
export function readWeightFiles(dir: string): ModelFiles {
  const configPath = join(dir, "config.json");
  const single = join(dir, SINGLE_FILE);
  const indexPath = join(dir, INDEX_FILE);
  if (present(single)) {  // a broken link or a link loop is present too: readHeader names what is wrong with it
    const h = readHeader(single);
    return { dir, configPath, indexPath: null, shards: [h], tensors: new Map([...h.tensors.keys()].map((n) => [n, h])) };
  }
  if (!existsSync(indexPath)) {
    const bin = existsSync(join(dir, "pytorch_model.bin")) ? "; found pytorch_model.bin, which is not read here: re-save it with transformers' save_pretrained(dir, safe_serialization=True)" : "";
    throw new Error(`${dir}: no model weights: looked for ${SINGLE_FILE} and ${INDEX_FILE}${bin}`);
  }
  const index = readJson(indexPath) as { weight_map?: unknown };
  const wm = index?.weight_map;
  if (wm === null || typeof wm !== "object" || Array.isArray(wm)) throw new Error(`${indexPath}: "weight_map" must be an object of tensor name -> shard file`);
  const byFile = new Map<string, SafetensorsHeader>();
  for (const [name, f] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof f !== "string" || f !== basename(f) || !f.endsWith(".safetensors")) {
      throw new Error(`${indexPath}: weight_map["${name}"] must be a .safetensors file name in the same folder, got ${JSON.stringify(f)}`);
    }
    if (!byFile.has(f)) {
      const p = join(dir, f);
      if (!existsSync(p)) throw new Error(`${indexPath}: shard ${f} (listed for "${name}") is missing from ${dir}`);
      byFile.set(f, readHeader(p));
    }
  }
  const tensors = new Map<string, SafetensorsHeader>();
  for (const h of byFile.values()) {
    for (const n of h.tensors.keys()) {
      const other = tensors.get(n);
      if (other) throw new Error(`${indexPath}: tensor "${n}" is stored in both ${basename(other.file)} and ${basename(h.file)}`);
      if ((wm as Record<string, string>)[n] !== basename(h.file)) throw new Error(`${indexPath}: tensor "${n}" is in ${basename(h.file)} but weight_map says ${JSON.stringify((wm as Record<string, string>)[n] ?? null)}`);
      tensors.set(n, h);
    }
  }
  for (const [name, f] of Object.entries(wm as Record<string, string>)) {
    if (!tensors.has(name)) throw new Error(`${indexPath}: weight_map lists "${name}" in ${f}, but that file does not hold it`);
  }
  return { dir, configPath, indexPath, shards: [...byFile.keys()].sort().map((f) => byFile.get(f)!), tensors };
}

/** config.json (parsed and raw) plus the validated weight files of a Hugging Face model folder. */
export function readModelDir(dir: string): { config: DecoderConfig; configJson: Record<string, unknown>; files: ModelFiles } {
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw new Error(`${dir}: no config.json (looked for ${configPath}); is this a Hugging Face model folder?`);
  const configJson = readJson(configPath) as Record<string, unknown>;
  const config = parseConfig(configJson, configPath);
  return { config, configJson, files: readWeightFiles(dir) };
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);
// Buffers transformers recomputes and ignores: old Llama checkpoints' RoPE frequencies, old GPT-NeoX checkpoints'
// causal mask (attention.bias, attention.masked_bias) and rotary frequencies.
const IGNORED = /(\.rotary_emb\.inv_freq|^(gpt_neox\.)?layers\.\d+\.attention\.(bias|masked_bias))$/;
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/** Where a table tensor's data is: its file and the name it has there. */
export interface TensorSource { header: SafetensorsHeader; name: string }

/**
 * The file name of each table tensor: the table's own name, or, for a checkpoint of the base model (transformers'
 * OPTModel / GPTNeoXModel / LlamaModel ... without the ForCausalLM wrapper, e.g. facebook/opt-*), that name without
 * its base-model prefix (model. or gpt_neox.), as transformers reads such a checkpoint into the ForCausalLM; and
 * GPT-NeoX's head under transformers v5's name lm_head.weight when embed_out.weight is absent.
 */
function sourceNames(files: ModelFiles, table: readonly ParamInfo[]): Map<string, string> {
  const prefix = /^(model|gpt_neox)\./.exec(embeddingOf(table)?.embed.name ?? "")?.[0];
  const baseOnly = prefix !== undefined && files.tensors.size > 0 && ![...files.tensors.keys()].some((n) => n.startsWith(prefix));
  const out = new Map<string, string>();
  for (const p of table) {
    let name = p.name;
    if (!files.tensors.has(name) && baseOnly && name.startsWith(prefix)) name = name.slice(prefix.length);
    if (!files.tensors.has(name) && name === "embed_out.weight" && files.tensors.has("lm_head.weight")) name = "lm_head.weight";
    out.set(p.name, name);
  }
  return out;
}

/**
 * Checks the weight files' headers against a parameter table without reading any tensor data: every table name
 * must be present with its exact shape and a float dtype, and no unknown tensor may be left over; all problems are
 * reported in one error. Tied models (no head in the table) may carry a copy of the embeddings as the head
 * (lm_head.weight, GPT-NeoX's embed_out.weight); its source is returned so loadWeightsInto can check that it equals
 * the embeddings. sources: where each table tensor is read from.
 */
export function checkWeightFiles(files: ModelFiles, table: readonly ParamInfo[]): { tiedHead: TensorSource | null; sources: Map<string, TensorSource> } {
  const names = sourceNames(files, table);
  const used = new Set(names.values());
  const eh = embeddingOf(table);
  const headNames = eh ? [eh.head, "lm_head.weight"] : [];
  const problems: string[] = [];
  const sources = new Map<string, TensorSource>();
  for (const p of table) {
    const name = names.get(p.name)!;
    const h = files.tensors.get(name);
    if (!h) {
      const hint = p.name === eh?.head ? " (if the model ties embeddings, set tie_word_embeddings: true in config.json)" : "";
      problems.push(`missing tensor ${p.name}, expected shape ${fmt(p.shape)}${hint}`);
      continue;
    }
    const t = h.tensors.get(name)!;
    const as = name === p.name ? "" : ` (as ${name})`;
    if (fmt(t.shape) !== fmt(p.shape)) problems.push(`${p.name}${as}: expected shape ${fmt(p.shape)}, found ${fmt(t.shape)} in ${basename(h.file)}`);
    else if (!FLOAT_DTYPES.has(t.dtype)) problems.push(`${p.name}${as}: dtype ${t.dtype} in ${basename(h.file)}; expected F32, F16 or BF16`);
    else sources.set(p.name, { header: h, name });
  }
  let tiedHead: TensorSource | null = null;
  for (const [name, h] of files.tensors) {
    if (used.has(name) || IGNORED.test(name)) continue;
    const t = h.tensors.get(name)!;
    if (eh && headNames.includes(name) && !table.some((p) => p.name === eh.head) && !tiedHead) {
      const embed = eh.embed;
      if (fmt(t.shape) !== fmt(embed.shape)) problems.push(`${name}: tied to ${embed.name} ${fmt(embed.shape)} but found ${fmt(t.shape)} in ${basename(h.file)}`);
      else if (!FLOAT_DTYPES.has(t.dtype)) problems.push(`${name}: dtype ${t.dtype} in ${basename(h.file)}; expected F32, F16 or BF16`);
      else tiedHead = { header: h, name };
      continue;
    }
    problems.push(`unexpected tensor ${name} ${fmt(t.shape)} in ${basename(h.file)} (not part of this model)`);
  }
  if (problems.length > 0) {
    const expected = table.reduce((n, p) => n + p.size, 0);
    let found = 0;
    for (const [name, h] of files.tensors) found += h.tensors.get(name)!.shape.reduce((a, b) => a * b, 1);
    const shown = problems.slice(0, MAX_LISTED_PROBLEMS).map((s) => `  - ${s}`);
    if (problems.length > MAX_LISTED_PROBLEMS) shown.push(`  ... and ${problems.length - MAX_LISTED_PROBLEMS} more`);
    throw new Error(
      `${files.dir}: checkpoint does not match the model config (${problems.length} problem${problems.length > 1 ? "s" : ""}); ` +
      `config.json implies ${expected.toLocaleString("en-US")} parameters, the weight files hold ${found.toLocaleString("en-US")}:\n${shown.join("\n")}`,
    );
  }
  return { tiedHead, sources };
}

/**
 * The heads behind GPT-NeoX's per-head query_key_value rows in the table (read from the folder's config.json, the
 * config that says how its files are laid out), or null when the table has no such tensor.
 */
export function qkvHeadsOfFolder(files: ModelFiles, table: readonly ParamInfo[]): { numHeads: number; headSize: number } | null {
  if (!table.some((p) => isNeoxQkv(p.name))) return null;
  const heads = neoxHeadsOfJson(readJson(files.configPath), files.configPath);
  if (!heads) throw new Error(`${files.configPath}: the model has GPT-NeoX's query_key_value tensors but config.json is not a GPTNeoXForCausalLM config`);
  return heads;
}

/**
 * Fill params (the native flat buffer) from the folder's safetensors, converting F16/BF16 to fp32, after
 * checkWeightFiles. Tied models: a checkpoint's copy of the head is accepted only if it equals the embeddings value
 * for value (transformers sometimes saves the tied copy); if it differs the config and weights disagree, and we
 * refuse.
 */
export function loadWeightsInto(dir: string, table: readonly ParamInfo[], params: Float32Array): void {
  checkTable(table, params.length, "loadWeightsInto");
  const files = readWeightFiles(dir);
  const { tiedHead, sources } = checkWeightFiles(files, table);
  const heads = qkvHeadsOfFolder(files, table);
  for (const p of table) {
    const src = sources.get(p.name)!;
    readTensor(src.header, src.name, params, p.offset);
    if (heads && isNeoxQkv(p.name)) {
      const v = params.subarray(p.offset, p.offset + p.size);
      v.set(neoxQkvToStacked(v, heads.numHeads, heads.headSize));
    }
  }
  const embed = embeddingOf(table)?.embed;
  if (tiedHead && embed) {
    const e = params.subarray(embed.offset, embed.offset + embed.size);
    forEachTensorChunk(tiedHead.header, tiedHead.name, (v, start) => {
      for (let i = 0; i < v.length; i++) {
        const a = v[i], b = e[start + i];
        if (a !== b && !(a !== a && b !== b)) {
          throw new Error(
            `${tiedHead!.header.file}: ${tiedHead!.name} differs from ${embed.name} (element ${start + i}: ${a} vs ${b}) although config.json ` +
              `says tie_word_embeddings: true; set it to false if the head is meant to be separate`,
          );
        }
      }
    });
  }
}

/**
 * loadWeightsInto for a model whose frozen base is held in bf16 (NativeModel baseDtype "bf16", LoRA training):
 * each tensor is streamed chunk by chunk, rounded to bf16 (round to nearest even) into the bf16 buffer, never
 * widened into a whole fp32 copy. The same checks as loadWeightsInto; a tied checkpoint head is not compared.
 */
export function loadWeightsIntoBf16(dir: string, table: readonly ParamInfo[], bits: Uint16Array): void {
  checkTable(table, bits.length, "loadWeightsIntoBf16");
  const files = readWeightFiles(dir);
  const { sources } = checkWeightFiles(files, table);
  const heads = qkvHeadsOfFolder(files, table);
  for (const p of table) {
    const src = sources.get(p.name)!;
    forEachTensorChunk(src.header, src.name, (v, start) => bits.set(f32ToBf16(v), p.offset + start));
    if (heads && isNeoxQkv(p.name)) {
      const v = bits.subarray(p.offset, p.offset + p.size);
      v.set(neoxQkvToStacked(v, heads.numHeads, heads.headSize));
    }
  }
}

const GiB = 1024 ** 3;
const gib = (b: number) => (b / GiB < 10 ? (b / GiB).toFixed(2) : (b / GiB).toFixed(1));

/** What a model of n parameters needs in memory: fp32 weights, and for full training fp32 gradients and AdamW's two moments. */
export interface MemoryUse {
  parameters: number;          // floats of the model's parameter buffer
  training?: boolean;          // gradients + AdamW moments for every parameter (full fine-tuning)
  optimizerBytes?: number;     // bytes of optimizer state per trained parameter: 8 for fp32 AdamW (the default), about 2 for 8-bit
  extraCopies?: number;        // further fp32 copies of the weights held at once (a reference model)
  weightBytes?: number;        // bytes of the weights when not 4 a parameter (a 4-bit base); default 4 · parameters
}

/** Bytes needed for weights (and gradients and optimizer state when training); activations come on top. */
export function modelBytes(m: MemoryUse): number {
  return (m.weightBytes ?? 4 * m.parameters) * (1 + (m.extraCopies ?? 0)) + (m.training ? (4 + (m.optimizerBytes ?? 8)) * m.parameters : 0);
}

/**
 * Refuses, before anything is allocated, a model whose weights (and gradients and optimizer state) alone do not
 * fit into this machine's memory (or the process's memory limit); returns a warning when they exceed what is free now.
 */
export function checkMemory(dir: string, m: MemoryUse): string | null {
  const need = modelBytes(m);
  const limit = typeof process.constrainedMemory === "function" ? process.constrainedMemory() ?? 0 : 0;
  const total = totalmem();
  const has = limit > 0 && limit < total ? limit : total;
  const what = m.training ? "parameters, gradients and optimizer state" : "parameters";
  const copies = m.extraCopies ? ` (and ${m.extraCopies} more cop${m.extraCopies > 1 ? "ies" : "y"} of the weights for the reference model)` : "";
  if (need > has) {
    throw new Error(
      `${dir}: a model of ${m.parameters.toLocaleString("en-US")} parameters needs ${gib(need)} GiB for ${what}${copies}, before activations; ` +
      `this machine has ${gib(has)} GiB${has < total ? " (the process's memory limit)" : ""}. ` +
      (m.training ? "Train a smaller model, or only a LoRA adapter (use_peft: true), or use precompute_ref_log_probs: true" : "Use a smaller model or a machine with more memory"),
    );
  }
  const free = freemem();
  return need > free ? `${dir}: the model needs ${gib(need)} GiB for ${what}${copies} and only ${gib(free)} GiB of memory is free now; the system may swap or stop the run` : null;
}

/** A model folder checked for loading: config, weight headers checked against the table the config implies. */
export interface OpenedModel {
  dir: string;
  config: DecoderConfig;
  configJson: Record<string, unknown>;
  files: ModelFiles;
  parameters: number;          // floats of the parameter buffer the config implies
}

/**
 * Reads config.json and the weight headers of `dir` and checks them against each other (names, shapes and so
 * the parameter count) and the memory `use` needs against the machine's, all before any buffer is allocated.
 */
export function openModelFolder(dir: string, use: Omit<MemoryUse, "parameters" | "weightBytes"> & { weightBytesOf?: (table: readonly ParamInfo[]) => number } = {}): OpenedModel & { memoryWarning: string | null } {
  const { config, configJson, files } = readModelDir(dir);
  const { table, numFloats: parameters } = paramLayout(config);
  checkWeightFiles(files, table);
  const { weightBytesOf, ...rest } = use;
  const memoryWarning = checkMemory(dir, { ...rest, parameters, weightBytes: weightBytesOf?.(table) });
  return { dir, config, configJson, files, parameters, memoryWarning };
}

/** openModelFolder, then the native model allocated and its weights read. Free the model when done. */
export function loadModelFolder(dir: string, use: Omit<MemoryUse, "parameters"> = {}): OpenedModel & { model: NativeModel; memoryWarning: string | null } {
  const opened = openModelFolder(dir, use);
  const model = new NativeModel(opened.config);
  try {
    loadWeightsInto(dir, model.table, model.params);
  } catch (e) {
    model.free();
    throw e;
  }
  return { ...opened, model };
}

export interface SaveOptions {
  dtype?: "F32" | "BF16" | "F16";      // stored dtype, default F32
  maxShardBytes?: number;              // shard above this many bytes of tensor data; default 5 GB as transformers
  onFileWritten?: (file: string) => void; // called after each file is complete (progress); a throw aborts the save
  extra?: (dir: string) => void;       // writes further files (tokenizer, README) into the folder before it is put in place
}

const TORCH_DTYPE = { F32: "float32", BF16: "bfloat16", F16: "float16" } as const;
export type SaveDtype = keyof typeof TORCH_DTYPE;

/** A torch dtype name ("bfloat16", "torch.float16", "half", ...) as a stored dtype, or null when it is not a float dtype we write. */
export function saveDtypeOf(name: unknown): SaveDtype | null {
  if (typeof name !== "string") return null;
  const n = name.replace(/^torch\./, "");
  return n === "bfloat16" || n === "bf16" ? "BF16" : n === "float16" || n === "half" || n === "fp16" ? "F16" : n === "float32" || n === "float" || n === "fp32" ? "F32" : null;
}

/**
 * The dtype a folder's weights are in, as transformers' dtype="auto" reads it: config.json's dtype (or its
 * older name torch_dtype), else the dtype of its first floating-point tensor; F32 when neither says.
 */
export function storedDtype(configJson: Record<string, unknown>, files: ModelFiles): SaveDtype {
  const fromConfig = saveDtypeOf(configJson.dtype ?? configJson.torch_dtype);
  if (fromConfig) return fromConfig;
  for (const h of files.shards) {
    for (const t of h.tensors.values()) {
      const d = t.dtype as string;
      if (d === "F32" || d === "BF16" || d === "F16") return d;
    }
  }
  return "F32";
}

/**
 * Write a transformers-loadable folder: config.json (torch_dtype/dtype set to the stored dtype), and
 * model.safetensors or model-0000i-of-0000N.safetensors + index, each with __metadata__ {"format": "pt"}, and
 * whatever opts.extra adds. Atomic (writeFolderAtomic): written into a hidden sibling, fsynced, renamed onto dir.
 */
export function saveModel(dir: string, configJson: Record<string, unknown>, table: readonly ParamInfo[], params: Float32Array, opts: SaveOptions = {}): void {
  const write = planModelFiles(configJson, table, params, opts);
  writeFolderAtomic(dir, (tmp) => {
    write(tmp);
    opts.extra?.(tmp);
  });
}

/** The model's files (config.json and the weights, as saveModel describes) written as new files into `dir`, a staging folder. */
export function writeModelFiles(dir: string, configJson: Record<string, unknown>, table: readonly ParamInfo[], params: Float32Array, opts: SaveOptions = {}): void {
  planModelFiles(configJson, table, params, opts)(dir);
}

/** Names of the files a saved model consists of (weights and index), for replacing an old model's. */
export const isModelWeightFile = (name: string) => name === SINGLE_FILE || name === INDEX_FILE || /^model-\d+-of-\d+\.safetensors$/.test(name);

function planModelFiles(configJson: Record<string, unknown>, table: readonly ParamInfo[], params: Float32Array, opts: SaveOptions): (dir: string) => void {
  const dtype = opts.dtype ?? "F32";
  if (!(dtype in TORCH_DTYPE)) throw new Error(`saveModel: dtype must be F32, BF16 or F16, got ${JSON.stringify(dtype)}`);
  const maxShard = opts.maxShardBytes ?? 5_000_000_000;
  checkTable(table, params.length, "saveModel");
  // tie_word_embeddings as transformers reads it: the key, else the family's default (Gemma and OPT tie)
  const archs = configJson.architectures;
  const described = Array.isArray(archs) && archs.length === 1 && KNOWN_ARCHITECTURES.includes(archs[0]);
  const tied = typeof configJson.tie_word_embeddings === "boolean" || !described
    ? configJson.tie_word_embeddings === true : describeModel(configJson, "saveModel config").head.tied;
  const head = embeddingOf(table)?.head ?? "lm_head.weight";
  const hasHead = table.some((p) => p.name === head);
  if (tied === hasHead) {
    throw new Error(`saveModel: config says tie_word_embeddings=${tied} but the parameter table ${hasHead ? "has" : "has no"} ${head}`);
  }
  // GPT-NeoX: query_key_value's rows back in the checkpoint's per-head order (copies; the model is untouched)
  const heads = table.some((p) => isNeoxQkv(p.name)) ? neoxHeadsOfJson(configJson, "saveModel config") : null;
  if (table.some((p) => isNeoxQkv(p.name)) && !heads) throw new Error("saveModel: the table has GPT-NeoX's query_key_value tensors but the config is not a GPTNeoXForCausalLM config");
  const tensors: TensorToWrite[] = table.map((p) => {
    const data = params.subarray(p.offset, p.offset + p.size);
    return { name: p.name, dtype, shape: p.shape, data: heads && isNeoxQkv(p.name) ? stackedToNeoxQkv(data, heads.numHeads, heads.headSize) : data };
  });
  // Greedy shards in table order, as transformers does; a tensor larger than the limit gets a shard of its own.
  const shards: TensorToWrite[][] = [[]];
  let bytes = 0;
  for (const t of tensors) {
    const b = t.data.length * DTYPE_SIZES[dtype];
    if (bytes > 0 && bytes + b > maxShard) {
      shards.push([]);
      bytes = 0;
    }
    shards[shards.length - 1].push(t);
    bytes += b;
  }

  return (tmp) => {
    const cfg = { ...configJson };
    cfg["dtype" in cfg ? "dtype" : "torch_dtype"] = TORCH_DTYPE[dtype];
    writeNewFile(join(tmp, "config.json"), configJsonText(cfg));
    opts.onFileWritten?.(join(tmp, "config.json"));
    const meta = { format: "pt" };
    if (shards.length === 1) {
      writeSafetensors(join(tmp, SINGLE_FILE), shards[0], meta);
      opts.onFileWritten?.(join(tmp, SINGLE_FILE));
    } else {
      const n = String(shards.length).padStart(5, "0");
      const weightMap: Record<string, string> = {};
      shards.forEach((group, i) => {
        const f = `model-${String(i + 1).padStart(5, "0")}-of-${n}.safetensors`;
        writeSafetensors(join(tmp, f), group, meta);
        for (const t of group) weightMap[t.name] = f;
        opts.onFileWritten?.(join(tmp, f));
      });
      const total = tensors.reduce((s, t) => s + t.data.length * DTYPE_SIZES[dtype], 0);
      const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
      writeNewFile(join(tmp, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: sortedMap }, null, 2) + "\n");
      opts.onFileWritten?.(join(tmp, INDEX_FILE));
    }
  };
}
