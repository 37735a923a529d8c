// PEFT LoRA and DoRA adapters: target_modules resolved per family as PEFT resolves them (each family's module names,
// "all-linear", PEFT's per-model_type default), PEFT's initialisation (A kaiming-uniform with a = √5, B = 0; DoRA's
// magnitude = the row norms of W), an adapter folder written as PEFT's save_pretrained writes it
// (adapter_config.json with sorted keys + adapter_model.safetensors under base_model.model.* names, DoRA's
// lora_magnitude_vector included; GPT-NeoX's query_key_value B rows in the checkpoint's per-head order), loading such
// a folder onto a NativeModel with every name and shape checked, and merging (W += s·B·A; DoRA: each row then scaled
// to m / ‖row‖) into a full Hugging Face model folder (from a 4-bit base: into its dequantized fp32 copy).
// Not the LoRA math (native/src/lora.h) and not how training uses adapters (src/train).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ALL_LORA_MODULE_NAMES, layerPrefix, loraModulesAt, loraModules } from "../core/arch.ts";
import type { LoraAdapter, NativeModel } from "../core/native.ts";
import type { DecoderConfig, LoraConfig, LoraTarget } from "../core/types.ts";
import { readTextFile, writeFolderAtomic, writeNewFile } from "../util/durable.ts";
import { mulberry32 } from "../util/random.ts";
import { saveModel, type SaveOptions } from "./checkpoint.ts";
import { isNeoxQkvAdapter, neoxHeadsOf, neoxQkvToStacked, stackedToNeoxQkv } from "./neox.ts";
import { dequantizedCopy } from "./quantize.ts";
import { readHeader, readTensor, writeSafetensors, type SafetensorsHeader, type TensorToWrite } from "./safetensors.ts";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** PEFT's target_modules for Llama-family models when none are given. */
export const LLAMA_DEFAULT_TARGETS: readonly LoraTarget[] = ["q_proj", "v_proj"];
// PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, by the config.json class; null: PEFT has none and asks
// for target_modules. SmolLM3 (none in PEFT) keeps the Llama default it has always had here.
const PEFT_DEFAULT_TARGETS: Record<string, readonly LoraTarget[] | null> = {
  LlamaForCausalLM: LLAMA_DEFAULT_TARGETS, MistralForCausalLM: LLAMA_DEFAULT_TARGETS, Qwen2ForCausalLM: LLAMA_DEFAULT_TARGETS,
  Qwen3ForCausalLM: LLAMA_DEFAULT_TARGETS, SmolLM3ForCausalLM: LLAMA_DEFAULT_TARGETS, Gemma2ForCausalLM: LLAMA_DEFAULT_TARGETS,
  Gemma3ForCausalLM: LLAMA_DEFAULT_TARGETS, OPTForCausalLM: LLAMA_DEFAULT_TARGETS, PhiForCausalLM: ["q_proj", "v_proj", "fc1", "fc2"],
  GPTNeoXForCausalLM: ["query_key_value"], Phi3ForCausalLM: null,
};

const NAME_RE = /^base_model\.model\.(.+\.layers)\.(\d+)\.(.+)\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector)$/;
// a model-level module (OPT's project_in / project_out): groups 1 and 3 of NAME_RE's shape, the layers prefix ""
const TOP_RE = /^base_model\.model\.()(model\.decoder\.project_(?:in|out))\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector)$/;
const MAX_LISTED_PROBLEMS = 20;
const FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);
const isAnyModule = (s: string): s is LoraTarget => (ALL_LORA_MODULE_NAMES as readonly string[]).includes(s);

/** The list form of lora_target_modules, checked: null, "all-linear", or one or more module names. */
function targetList(v: unknown, where: string): string[] | "all-linear" | null {
  if (v === null || v === undefined) return null;
  if (v === "all-linear") return "all-linear";
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === "string")) {
    throw new Error(`${where}: expected null, "all-linear" or a non-empty list of module names, got ${JSON.stringify(v)}`);
  }
  return list as string[];
}
const headHint = (bad: string[]) => (bad.some((x) => /lm_head|embed_tokens|embed_in|embed_out/.test(x)) ? " (adapters on the embeddings or the head are not supported)" : "");

/**
 * lora_target_modules checked before the model is known (config time): null, "all-linear", or names of linear
 * modules some supported family has; which of them the model has is checked by resolveTargetModules.
 */
export function checkTargetModules(v: unknown, where = "lora_target_modules"): void {
  const list = targetList(v, where);
  if (!Array.isArray(list)) return;
  const bad = list.filter((x) => !isAnyModule(x));
  if (bad.length > 0) {
    throw new Error(`${where}: ${bad.map((x) => JSON.stringify(x)).join(", ")} ${bad.length > 1 ? "are" : "is"} not a LoRA target of any supported model${headHint(bad)}; use a model's linear modules (${ALL_LORA_MODULE_NAMES.join(", ")}) or "all-linear"`);
  }
}

/**
 * lora_target_modules (TRL / PEFT) → the module names of `model`'s family (a Llama when absent), as PEFT resolves
 * them: null → PEFT's default for the family (q_proj, v_proj for Llama, Mistral, Qwen, Gemma and OPT; q_proj, v_proj,
 * fc1, fc2 for Phi-2; query_key_value for GPT-NeoX; Phi-3 has none and must name its targets); "all-linear" → every
 * linear module of the layers (PEFT leaves the output layer out); otherwise module names (a list, or one name), each
 * of which must be a module of the family. In the family's module order.
 */
export function resolveTargetModules(v: unknown, where = "lora_target_modules", model?: DecoderConfig): LoraTarget[] {
  const modules = loraModules(model ?? {});
  const arch = model?.architecture ?? "LlamaForCausalLM";
  const list = targetList(v, where);
  if (list === "all-linear") return modules.map((x) => x.name);
  if (list === null) {
    const def = Object.hasOwn(PEFT_DEFAULT_TARGETS, arch) ? PEFT_DEFAULT_TARGETS[arch] : LLAMA_DEFAULT_TARGETS;
    if (!def) throw new Error(`${where}: PEFT has no default target_modules for ${arch}; name them, e.g. [${modules.map((x) => JSON.stringify(x.name)).join(", ")}] or "all-linear"`);
    return modules.filter((x) => def.includes(x.name)).map((x) => x.name);
  }
  const bad = list.filter((x) => !modules.some((m) => m.name === x));
  if (bad.length > 0) {
    throw new Error(`${where}: ${bad.map((x) => JSON.stringify(x)).join(", ")} ${bad.length > 1 ? "are" : "is"} not a LoRA target of ${arch}${headHint(bad)}; use names from ${modules.map((x) => x.name).join(", ")} or "all-linear"`);
  }
  return modules.filter((m) => list.includes(m.name)).map((x) => x.name);
}

/** PEFT's scaling s: lora_alpha / r, or lora_alpha / √r with use_rslora. */
export function loraScaling(c: Pick<LoraConfig, "r" | "loraAlpha" | "useRslora">): number {
  return c.loraAlpha / (c.useRslora ? Math.sqrt(c.r) : c.r);
}

/**
 * PEFT's init_lora_weights = True: every lora_A ~ U(−1/√in, 1/√in) (kaiming_uniform_ with a = √5), every
 * lora_B = 0, so the adapted model starts equal to the base. Seeded (mulberry32, table order). DoRA: every
 * lora_magnitude_vector = ‖W‖ per output row (PEFT's ‖W + s·B·A‖ with B = 0), so it starts equal to the base too.
 */
export function initLora(adapter: LoraAdapter, seed: number): void {
  adapter.params.fill(0);
  const uniform = mulberry32(seed);
  for (const p of adapter.table) {
    if (!p.name.endsWith(".lora_A.weight")) continue;
    const bound = 1 / Math.sqrt(p.shape[1]);
    const v = adapter.params.subarray(p.offset, p.offset + p.size);
    for (let i = 0; i < v.length; i++) v[i] = (2 * uniform() - 1) * bound;
  }
  if (adapter.config.useDora) adapter.initDoraMagnitude();
}

/** adapter_config.json for a LoRA (or DoRA) CAUSAL_LM adapter, with PEFT's defaults for everything preftune does not use. */
export function adapterConfigJson(c: LoraConfig, baseModelNameOrPath: string | null): Record<string, unknown> {
  return {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: baseModelNameOrPath, bias: "none",
    exclude_modules: null, fan_in_fan_out: false, inference_mode: true, init_lora_weights: true,
    layer_replication: null, layers_pattern: null, layers_to_transform: null, loftq_config: {},
    lora_alpha: c.loraAlpha, lora_bias: false, lora_dropout: c.loraDropout, megatron_config: null,
    megatron_core: "megatron.core", modules_to_save: null, peft_type: "LORA", r: c.r,
    rank_pattern: {}, revision: null, target_modules: [...c.targetModules].sort(),
    target_parameters: null, task_type: "CAUSAL_LM", trainable_token_indices: null,
    use_dora: c.useDora === true, use_rslora: c.useRslora,
  };
}

// Keys PEFT declares as float: Python's json writes them with a decimal point (0.0, not 0).
const FLOAT_KEYS = new Set(["lora_dropout"]);

/** Python's json.dumps(v, indent=2, sort_keys=True), which is how PEFT writes adapter_config.json. */
export function pythonJson(v: unknown, indent = "", key = ""): string {
  const inner = indent + "  ";
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`adapter config: ${key} = ${v} is not a finite number`);
    return FLOAT_KEYS.has(key) && Number.isInteger(v) ? v.toFixed(1) : String(v);
  }
  if (typeof v === "string") return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (ch) => "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0"));
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) return v.length === 0 ? "[]" : `[\n${v.map((x) => inner + pythonJson(x, inner)).join(",\n")}\n${indent}]`;
  const keys = Object.keys(v as object).sort();
  if (keys.length === 0) return "{}";
  return `{\n${keys.map((k) => `${inner}${pythonJson(k)}: ${pythonJson((v as Record<string, unknown>)[k], inner, k)}`).join(",\n")}\n${indent}}`;
}

/** Writes adapter_config.json and adapter_model.safetensors (F32, names sorted, {"format": "pt"}) as new files into dir, a staging folder. */
export function writeAdapterFiles(dir: string, adapter: LoraAdapter, baseModelNameOrPath: string | null): void {
  writeNewFile(join(dir, ADAPTER_CONFIG_FILE), pythonJson(adapterConfigJson(adapter.config, baseModelNameOrPath)));
  const heads = neoxHeadsOf(adapter.modelConfig);
  const tensors: TensorToWrite[] = [...adapter.table]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((p) => {
      const data = adapter.params.subarray(p.offset, p.offset + p.size);
      // GPT-NeoX: query_key_value's B rows (and DoRA magnitude) in the checkpoint's per-head order, as PEFT holds them
      return { name: p.name, dtype: "F32", shape: p.shape, data: heads && isNeoxQkvAdapter(p.name) ? stackedToNeoxQkv(data, heads.numHeads, heads.headSize) : data };
    });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" }, { fsync: true });
}

/**
 * An adapter folder as PEFT's save_pretrained writes it (plus what opts.extra writes). Atomic
 * (writeFolderAtomic): written into a hidden sibling, fsynced, then renamed onto dir.
 */
export function saveAdapter(dir: string, adapter: LoraAdapter, opts: { baseModelNameOrPath: string | null; extra?: (dir: string) => void }): void {
  writeFolderAtomic(dir, (tmp) => {
    writeAdapterFiles(tmp, adapter, opts.baseModelNameOrPath);
    opts.extra?.(tmp);
  });
}

/** Names of the files a saved adapter consists of, for replacing an old adapter's. */
export const isAdapterFile = (name: string) => name === ADAPTER_CONFIG_FILE || name === ADAPTER_WEIGHTS_FILE;

/** What an adapter folder declares: the LoraConfig the core runs, and the raw adapter_config.json. */
export interface AdapterFolder {
  dir: string;
  config: LoraConfig;                    // targetModules from the tensors actually present
  configJson: Record<string, unknown>;
  baseModelNameOrPath: string | null;
}

function refuse(file: string, key: string, v: unknown, why: string): never {
  throw new Error(`${file}: ${key} = ${JSON.stringify(v)} is not supported (${why})`);
}

/**
 * Reads and checks adapter_config.json and the tensor names of adapter_model.safetensors (no data).
 * Refuses PEFT features the core does not run (biases, rank/alpha patterns, modules_to_save, ...).
 */
export function readAdapterFolder(dir: string): AdapterFolder {
  const cfgFile = join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(cfgFile)) throw new Error(`${dir}: no ${ADAPTER_CONFIG_FILE}; is this a PEFT adapter folder (save_pretrained of a PeftModel)?`);
  let j: Record<string, unknown>;
  const text = readTextFile(cfgFile, "adapter config");
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`${cfgFile}: cannot read JSON: ${(e as Error).message}`);
  }
  if (j === null || typeof j !== "object" || Array.isArray(j)) throw new Error(`${cfgFile}: must hold a JSON object`);
  if (j.peft_type !== "LORA") throw new Error(`${cfgFile}: peft_type is ${JSON.stringify(j.peft_type ?? null)}; only LoRA adapters ("LORA") can be loaded`);
  if (j.task_type != null && j.task_type !== "CAUSAL_LM") refuse(cfgFile, "task_type", j.task_type, "only CAUSAL_LM adapters fit a causal language model");
  const r = j.r ?? 8, alpha = j.lora_alpha ?? 8;  // PEFT's LoraConfig defaults
  if (!Number.isInteger(r) || (r as number) < 1) throw new Error(`${cfgFile}: r = ${JSON.stringify(r)} must be a positive integer`);
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw new Error(`${cfgFile}: lora_alpha = ${JSON.stringify(alpha)} must be a number`);
  const unsupported: [string, (v: unknown) => boolean, string][] = [
    ["bias", (v) => v != null && v !== "none", "only bias: \"none\"; trained biases are not implemented"],
    ["lora_bias", (v) => v === true, "lora_B biases are not implemented"],
    ["fan_in_fan_out", (v) => v === true, "that is for GPT-2 Conv1D layers"],
    ["rank_pattern", (v) => v != null && Object.keys(v as object).length > 0, "every projection must have the same r"],
    ["alpha_pattern", (v) => v != null && Object.keys(v as object).length > 0, "every projection must have the same lora_alpha"],
    ["modules_to_save", (v) => v != null && (v as unknown[]).length !== 0, "fully trained extra modules are not supported"],
    ["layers_to_transform", (v) => v != null, "adapters must cover every layer"],
    ["layer_replication", (v) => v != null, "layer replication is not implemented"],
    ["trainable_token_indices", (v) => v != null, "trainable tokens are not implemented"],
    ["target_parameters", (v) => v != null, "adapters on raw parameters are not implemented"],
    ["use_qalora", (v) => v === true, "QA-LoRA is not implemented"],
  ];
  for (const [k, bad, why] of unsupported) if (bad(j[k])) refuse(cfgFile, k, j[k], why);
  for (const k of ["use_rslora", "use_dora"]) if (j[k] != null && typeof j[k] !== "boolean") throw new Error(`${cfgFile}: ${k} must be true or false`);
  const useDora = j.use_dora === true;

  const wFile = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(wFile)) {
    const bin = existsSync(join(dir, "adapter_model.bin")) ? "; found adapter_model.bin, which is not read here: re-save with save_pretrained(dir, safe_serialization=True)" : "";
    throw new Error(`${dir}: no ${ADAPTER_WEIGHTS_FILE}${bin}`);
  }
  // (layers prefix, module path) of every tensor: which family's modules they are
  const pairs = new Map<string, { prefix: string; path: string }>();
  const problems: string[] = [];
  let magnitudes = 0;
  for (const name of readHeader(wFile).tensors.keys()) {
    const t = TOP_RE.exec(name);
    const m = NAME_RE.exec(name) ?? (t ? [t[0], t[1], "", t[2], t[3]] : null);
    const pair = m ? { prefix: m[1], path: m[3] } : null;
    if (!pair || !loraModulesAt([pair])) {
      const why = /lora_embedding|lm_head|embed_tokens|embed_in|embed_out/.test(name) ? " (adapters on embeddings or the head are not supported)" : "";
      problems.push(`unexpected tensor ${name}${why}; expected base_model.model.<layers>.{i}.<module>.lora_{A|B}.weight${useDora ? " or .lora_magnitude_vector" : ""} of a layer module (${ALL_LORA_MODULE_NAMES.join(", ")})`);
    } else {
      pairs.set(`${pair.prefix}|${pair.path}`, pair);
      if (m![4] === "lora_magnitude_vector") magnitudes++;
    }
  }
  if (magnitudes > 0 && !useDora) problems.push(`holds ${magnitudes} DoRA lora_magnitude_vector tensors but ${ADAPTER_CONFIG_FILE} does not say use_dora: true`);
  if (problems.length) throw new Error(`${wFile}: ${problems.slice(0, MAX_LISTED_PROBLEMS).join("; ")}`);
  if (pairs.size === 0) throw new Error(`${wFile}: holds no LoRA tensors`);
  const family = loraModulesAt([...pairs.values()]);
  if (!family) throw new Error(`${wFile}: its tensors adapt modules of different model families (${[...pairs.values()].map((x) => `${x.prefix}.{i}.${x.path}`).join(", ")})`);
  const targetModules = family.names;
  const declared = j.target_modules;
  if (Array.isArray(declared) && declared.every((x) => typeof x === "string" && isAnyModule(x))) {
    const listed = [...new Set(declared as string[])].sort().join(", ");
    if (listed !== [...targetModules].sort().join(", ")) {
      throw new Error(`${dir}: ${ADAPTER_CONFIG_FILE} lists target_modules [${listed}] but ${ADAPTER_WEIGHTS_FILE} holds adapters for [${[...targetModules].sort().join(", ")}]`);
    }
  }
  return {
    dir, configJson: j,
    baseModelNameOrPath: typeof j.base_model_name_or_path === "string" ? j.base_model_name_or_path : null,
    config: { r: r as number, loraAlpha: alpha, useRslora: j.use_rslora === true, targetModules, loraDropout: typeof j.lora_dropout === "number" ? j.lora_dropout : 0, useDora },
  };
}

/** The tensors (names and shapes) an adapter with LoRA settings `lora` has on a model of config `cfg`, without allocating it. */
export function adapterShapes(cfg: DecoderConfig, lora: Pick<LoraConfig, "r" | "targetModules" | "useDora">): { name: string; shape: number[] }[] {
  const modules = loraModules(cfg);
  const bad = lora.targetModules.filter((t) => !modules.some((x) => x.name === t));
  if (bad.length) throw new Error(`the adapter's target_modules ${bad.map((x) => JSON.stringify(x)).join(", ")} are not modules of this ${cfg.architecture} (its modules: ${modules.map((x) => x.name).join(", ")}); the adapter was trained on another model family`);
  const out: { name: string; shape: number[] }[] = [];
  const chosen = modules.filter((x) => lora.targetModules.includes(x.name));
  const add = (mod: (typeof modules)[number], base: string) => {
    const [inDim, outDim] = mod.dims(cfg);
    out.push({ name: `${base}.lora_A.weight`, shape: [lora.r, inDim] }, { name: `${base}.lora_B.weight`, shape: [outDim, lora.r] });
    if (lora.useDora) out.push({ name: `${base}.lora_magnitude_vector`, shape: [outDim] });
  };
  for (let i = 0; i < cfg.numLayers; i++) for (const mod of chosen.filter((x) => !x.top)) add(mod, `base_model.model.${layerPrefix(cfg, i)}.${mod.path}`);
  for (const mod of chosen.filter((x) => x.top)) add(mod, `base_model.model.${mod.path}`);
  return out;
}

/** Checks adapter_model.safetensors' header against the tensors expected; all problems in one error. */
function checkAdapterHeader(h: SafetensorsHeader, expected: readonly { name: string; shape: readonly number[] }[]): void {
  const problems: string[] = [];
  const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;
  const names = new Set(expected.map((p) => p.name));
  for (const p of expected) {
    const t = h.tensors.get(p.name);
    if (!t) problems.push(`missing tensor ${p.name}, expected shape ${fmt(p.shape)}`);
    else if (fmt(t.shape) !== fmt(p.shape)) problems.push(`${p.name}: expected shape ${fmt(p.shape)}, found ${fmt(t.shape)}`);
    else if (!FLOAT_DTYPES.has(t.dtype)) problems.push(`${p.name}: dtype ${t.dtype}; expected F32, F16 or BF16`);
  }
  for (const [name, t] of h.tensors) if (!names.has(name)) problems.push(`unexpected tensor ${name} ${fmt(t.shape)} (not part of this adapter: other layers, targets or rank)`);
  if (problems.length > 0) {
    const shown = problems.slice(0, MAX_LISTED_PROBLEMS).map((s) => `  - ${s}`);
    if (problems.length > MAX_LISTED_PROBLEMS) shown.push(`  ... and ${problems.length - MAX_LISTED_PROBLEMS} more`);
    throw new Error(`${h.file}: adapter does not match the model and its LoRA settings (${problems.length} problem${problems.length > 1 ? "s" : ""}):\n${shown.join("\n")}`);
  }
}

function adapterHeader(dir: string): SafetensorsHeader {
  const file = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(file)) throw new Error(`${dir}: no ${ADAPTER_WEIGHTS_FILE}`);
  return readHeader(file);
}

/**
 * Fills an attached adapter from dir/adapter_model.safetensors: every tensor of the adapter's table must be
 * there with its exact shape and a float dtype, and nothing else may be; all problems are reported at once.
 */
export function loadAdapterWeights(dir: string, adapter: LoraAdapter): void {
  const h = adapterHeader(dir);
  checkAdapterHeader(h, adapter.table);
  adapter.params.fill(0);
  const heads = neoxHeadsOf(adapter.modelConfig);
  for (const p of adapter.table) {
    readTensor(h, p.name, adapter.params, p.offset);
    if (heads && isNeoxQkvAdapter(p.name)) {
      const v = adapter.params.subarray(p.offset, p.offset + p.size);
      v.set(neoxQkvToStacked(v, heads.numHeads, heads.headSize));
    }
  }
}

/**
 * Attaches the adapter folder `dir` to `model` (which must not carry one) and loads its weights. The weights'
 * header is checked against the tensors adapter_config.json implies before the adapter is allocated.
 */
export function loadAdapter(dir: string, model: NativeModel): { adapter: LoraAdapter; folder: AdapterFolder } {
  const folder = readAdapterFolder(dir);
  checkAdapterHeader(adapterHeader(dir), adapterShapes(model.config, folder.config));
  // lora_dropout only acts while training; a loaded adapter runs without it.
  const adapter = model.attachLora({ ...folder.config, loraDropout: 0 });
  try {
    loadAdapterWeights(dir, adapter);
  } catch (e) {
    model.detachLora();
    throw e;
  }
  return { adapter, folder };
}

/**
 * Merges the model's adapter into its base weights (W += s·B·A; DoRA: each row then scaled to m / ‖row‖, PEFT's
 * merge; the adapter is detached) and writes a full
 * Hugging Face model folder loadable without PEFT (atomically, with what opts.extra adds, e.g. the tokenizer).
 */
export function saveMergedModel(dir: string, model: NativeModel, configJson: Record<string, unknown>, opts: SaveOptions = {}): void {
  const lora = model.lora;
  if (!lora) throw new Error("saveMergedModel: the model carries no LoRA adapter to merge");
  if (model.quantization) {
    // A 4-bit base: the merge runs on a dequantized fp32 copy (PEFT would re-quantize the merged weight to 4 bits,
    // a second rounding; the folder written here holds the merged weights unrounded, in opts.dtype).
    const full = dequantizedCopy(model);
    try {
      full.attachLora(lora.config).params.set(lora.params);
      full.mergeLora();
      saveModel(dir, configJson, full.table, full.params, opts);
    } finally {
      full.free();
    }
    model.detachLora();
    return;
  }
  model.mergeLora();
  saveModel(dir, configJson, model.table, model.params, opts);
}
