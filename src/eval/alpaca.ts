// AlpacaEval outputs: the model's answer to every instruction of a file, written as the model_outputs.json that
// `alpaca_eval --model_outputs` reads (a JSON list of {instruction, output, generator, dataset}, input order).
// Resumable: each finished row is appended to a partial JSONL beside it, and the JSON is written atomically.
// Not the judge: win rates need AlpacaEval itself and an API judge, which preftune does not run.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DataError } from "../data/errors.ts";
import { readRecords, resolveDataFiles } from "../data/readers.ts";
import type { Generator, LoadedModel } from "../generate/engine.ts";
import type { GenerateRequest, GenerationConfig } from "../generate/types.ts";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import { appendRecords, readRecordLog } from "../util/records.ts";
import { fillTemplate } from "./judge.ts";
import { cleanAnswer, defaultModelId } from "./mtbench.ts";

export const ALPACA_OUTPUTS_FILE = "model_outputs.json";
export const ALPACA_PARTIAL_FILE = "model_outputs.partial.jsonl";
export const ALPACA_SAMPLE = fileURLToPath(new URL("../../data/alpaca-eval-sample/alpaca_eval.jsonl", import.meta.url));

export interface InstructionRow { instruction: string; dataset?: string; extra: Record<string, unknown> }

/** Rows with a non-empty string `instruction` (and optional string `dataset`) from JSONL, JSON or Parquet. */
export async function readInstructions(path: string, limit?: number | null): Promise<InstructionRow[]> {
  const rows: InstructionRow[] = [];
  for await (const r of readRecords(await resolveDataFiles(path, "eval").catch(() => resolveDataFiles(path)))) {
    const where = { file: r.file, row: r.row, rowUnit: r.unit };
    if (r.error) throw new DataError(r.error, { ...where, fix: "Fix the row" });
    const v = r.value as Record<string, unknown>;
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new DataError("is not an object", { ...where, fix: "Each row must be {\"instruction\": ..., \"dataset\"?: ...}" });
    const { instruction, dataset, output: _o, generator: _g, ...extra } = v;
    if (typeof instruction !== "string" || instruction.trim() === "") {
      throw new DataError(instruction === undefined ? "the row has no instruction" : `instruction is ${JSON.stringify(instruction)}; it must be a non-empty string`, { ...where, field: "instruction", fix: "Give every row an instruction (AlpacaEval's alpaca_eval.json has one per row)" });
    }
    if (dataset !== undefined && dataset !== null && typeof dataset !== "string") throw new DataError(`dataset is ${JSON.stringify(dataset)}, not a string`, { ...where, field: "dataset" });
    rows.push({ instruction, ...(typeof dataset === "string" ? { dataset } : {}), extra });
    if (limit != null && rows.length >= limit) break;
  }
  if (rows.length === 0) throw new DataError("holds no instructions", { file: path });
  return rows;
}

export interface AlpacaOptions {
  model: string;
  adapter?: string | null;
  generator?: string | null;         // the "generator" field; default: the adapter's or model's folder name
  instructions?: string;             // default: the 20-row sample shipped in data/alpaca-eval-sample
  output: string;                    // folder for model_outputs.json and its partial JSONL
  limit?: number | null;
  temperature?: number;              // default 0.7; below 1e-4 decodes greedily
  maxNewTokens?: number;             // default 2048
  seed?: number | null;              // default 0: row i samples with seed + i; null: fresh randomness
  batchSize?: number;
  promptTemplate?: string | null;    // plain-text prompt with {instruction} instead of the chat template
  threads?: number;
  log?: (line: string) => void;
  loadModel?: () => Promise<{ generator: AlpacaGenerator; dispose(): void }>;
}

type AlpacaGenerator = Pick<Generator, "generate" | "chatPromptIds" | "textPromptIds"> & { loaded: Pick<LoadedModel, "generationDefaults" | "tokenizer" | "maxPositions"> };

export interface AlpacaSummary { outputFile: string; partialFile: string; rows: number; generated: number; reused: number }

/** The ORPO authors' AlpacaEval settings by default: sampling at temperature 0.7, up to 2048 new tokens. */
export function alpacaConfig(defaults: GenerationConfig, index: number, o: Pick<AlpacaOptions, "temperature" | "maxNewTokens" | "seed">): GenerationConfig {
  const t = o.temperature ?? 0.7;
  const sample = t >= 1e-4;
  const seed = o.seed === undefined ? 0 : o.seed;
  return { ...defaults, do_sample: sample, temperature: sample ? t : defaults.temperature, max_new_tokens: o.maxNewTokens ?? 2048, seed: seed == null ? null : seed + index };
}

/** Outputs already in the partial file, by row index; a row made from another instruction is an error. */
function readPartial(file: string, rows: InstructionRow[]): Map<number, string> {
  const done = new Map<number, string>();
  for (const { line, value } of readRecordLog<{ index: number; instruction: string; output: string }>(file, { repair: true }).records) {
    const ok = Number.isInteger(value.index) && value.index >= 0 && value.index < rows.length && rows[value.index].instruction === value.instruction && typeof value.output === "string";
    if (!ok) {
      throw new DataError(`row ${value.index} does not match instruction ${value.index} of the input`, {
        file, row: line, rowUnit: "line", fix: "The partial outputs were made from a different instruction file: delete this file, or use another --output folder",
      });
    }
    done.set(value.index, value.output);
  }
  return done;
}

async function engineLoader(o: AlpacaOptions): Promise<{ generator: AlpacaGenerator; dispose(): void }> {
  const { loadGenerationModel, Generator } = await import("../generate/engine.ts");
  const loaded = await loadGenerationModel(o.model, { adapter: o.adapter ?? null, threads: o.threads });
  return { generator: new Generator(loaded), dispose: () => loaded.dispose() };
}

async function generateRows(gen: AlpacaGenerator, rows: InstructionRow[], todo: number[], partialFile: string, o: AlpacaOptions): Promise<void> {
  const { tokenizer, maxPositions, generationDefaults } = gen.loaded;
  const special = [tokenizer.bosToken, tokenizer.eosToken, tokenizer.padToken];
  const bs = Math.max(1, o.batchSize ?? 4);
  for (let s = 0; s < todo.length; s += bs) {
    const t0 = performance.now();
    const batch = todo.slice(s, s + bs);
    const outputs = new Map<number, string>();
    const reqs: GenerateRequest[] = [];
    const idx: number[] = [];
    for (const i of batch) {
      const text = rows[i].instruction;
      const promptIds = o.promptTemplate ? gen.textPromptIds(fillTemplate(o.promptTemplate, { instruction: text }, "--prompt-template")) : gen.chatPromptIds([{ role: "user", content: text }]);
      const room = maxPositions - promptIds.length;
      if (room < 1) {
        o.log?.(`row ${i}: the prompt is ${promptIds.length} tokens, which leaves no room under max_position_embeddings ${maxPositions}; output left empty`);
        outputs.set(i, "");
        continue;
      }
      const config = alpacaConfig(generationDefaults, i, o);
      reqs.push({ promptIds, config: { ...config, max_new_tokens: Math.min(config.max_new_tokens ?? room, room) } });
      idx.push(i);
    }
    const results = await gen.generate(reqs, { adapters: true });
    results.forEach((r, k) => outputs.set(idx[k], cleanAnswer(r.completion, special)));
    appendRecords(partialFile, batch.map((i) => ({ index: i, instruction: rows[i].instruction, output: outputs.get(i) })));
    o.log?.(`rows ${batch[0]}–${batch[batch.length - 1]} of ${rows.length} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}

/** Generates what the partial file lacks, then writes model_outputs.json (atomically) in the input's order. */
export async function runAlpacaEval(o: AlpacaOptions): Promise<AlpacaSummary> {
  const generatorName = o.generator ?? defaultModelId(o.model, o.adapter);
  if (o.promptTemplate != null && !o.promptTemplate.includes("{instruction}")) throw new Error(`--prompt-template ${JSON.stringify(o.promptTemplate)} has no {instruction} placeholder`);
  const rows = await readInstructions(o.instructions ?? ALPACA_SAMPLE, o.limit);
  ensureDir(o.output, "output folder");
  const partialFile = join(o.output, ALPACA_PARTIAL_FILE);
  const done = readPartial(partialFile, rows);
  const todo = rows.map((_, i) => i).filter((i) => !done.has(i));
  o.log?.(`${rows.length} instruction(s): ${rows.length - todo.length} already in ${partialFile}, ${todo.length} to generate`);
  if (todo.length > 0) {
    const m = await (o.loadModel ?? (() => engineLoader(o)))();
    try {
      await generateRows(m.generator, rows, todo, partialFile, o);
    } finally {
      m.dispose();
    }
  }
  const outputs = readPartial(partialFile, rows);
  const list = rows.map((r, i) => ({ instruction: r.instruction, output: outputs.get(i)!, generator: generatorName, ...(r.dataset !== undefined ? { dataset: r.dataset } : {}), ...r.extra }));
  const outputFile = join(o.output, ALPACA_OUTPUTS_FILE);
  writeFileAtomic(outputFile, JSON.stringify(list, null, 2) + "\n");
  return { outputFile, partialFile, rows: rows.length, generated: todo.length, reused: rows.length - todo.length };
}
