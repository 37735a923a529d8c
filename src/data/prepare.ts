// prepareDataset: file -> validated examples -> template split -> token ids with the method's BOS/EOS rules
// -> truncation, with a cache keyed by content and a progress bar. The trainer's one entry into the data
// pipeline. Not batching (collate.ts, sampler.ts).
import cliProgress from "cli-progress";
import { DataError } from "./errors.ts";
import { loadExamples, unpairExamples, type ColumnOptions, type LoadedExamples, type Message, type PairExample, type RowRef, type Text, type UnpairedExample } from "./formats.ts";
import { resolveDataFiles } from "./readers.ts";
import { splitConversation, TemplateSplitError } from "./template.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { METHODS, tokenizeJoint, tokenizePairOrpo, TokenizeError, usesOrpoRules, withEosText, type Method, type TokenizedPair, type TokenizedUnpaired } from "./tokenize.ts";
import { truncatePair, truncateUnpaired, truncationOptions, type DropReason, type TruncationMode } from "./truncate.ts";
import { cacheKey, cachePath, readCache, writeCache } from "./cache.ts";

export interface DataOptions extends ColumnOptions {
  method: Method;
  max_length?: number | null;              // default 1024; null: no limit
  max_prompt_length?: number | null;
  max_completion_length?: number | null;
  truncation_mode?: TruncationMode;        // default keep_start
  skip_bad_rows?: boolean;                 // skip (and count) bad rows instead of failing
  cacheDir?: string | null;                // default .cache/preftune under the working directory; null: no cache
  split?: string;                          // for a folder: which split's files (default "train")
  progress?: boolean;                      // progress bar on stderr while tokenizing (default false)
}

export interface PrepStats {
  files: string[];
  method: Method;
  kind: "paired" | "unpaired";
  sourceKind: LoadedExamples["kind"];
  conversational: boolean;
  implicitPrompt: boolean;
  unpairedFromPairs: boolean;              // kto on a paired set: TRL's unpair
  rowsRead: number;
  rows: number;                            // rows returned
  badRowsSkipped: number;
  badRowMessages: string[];
  droppedPromptTooLong: number;            // prompt alone >= max_length (keep_start)
  droppedCompletionTooLong: number;        // longest completion alone >= max_length (keep_end)
  droppedEmptyCompletion: number;
  droppedUndesirable: number;              // sft on unpaired data: label=false rows are not trained on
  truncatedRows: number;
  boundaryMerges: number;                  // prompt/completion token merges at the split
  templatePromptResets: number;            // generation prompt cut back to the common prefix (TRL's apply_chat_template rule)
  promptTokens: number;
  completionTokens: number;
  fromCache: boolean;
  cacheFile: string | null;
  seconds: number;
}

export type PreparedDataset =
  | { kind: "paired"; rows: TokenizedPair[]; stats: PrepStats }
  | { kind: "unpaired"; rows: TokenizedUnpaired[]; stats: PrepStats };

function checkMethod(m: unknown): Method {
  if (!METHODS.includes(m as Method)) throw new Error(`method must be one of ${METHODS.join(", ")}, got ${JSON.stringify(m)}`);
  return m as Method;
}

function wrapRowError(e: unknown, ref: RowRef, field: string | null, skip: boolean): DataError {
  const fix = "Fix or remove the row" + (skip ? "" : " (or set skip_bad_rows to skip such rows)");
  if (e instanceof TemplateSplitError || e instanceof TokenizeError) return new DataError(e.message, { file: ref.file, row: ref.row, rowUnit: ref.unit, field, fix });
  if (e instanceof DataError) return e;
  return new DataError(`the chat template failed: ${(e as Error).message}`, { file: ref.file, row: ref.row, rowUnit: ref.unit, field, fix });
}

/**
 * Reads, validates, renders, tokenizes and truncates a dataset for `opts.method`.
 * - orpo/cpo/simpo/dpo/ipo need paired data; kto takes unpaired data, or unpairs a paired set as TRL does;
 * - sft trains on prompt+chosen of a paired set, or prompt+completion of a prompt/completion set (only
 *   label=true rows when there is a label), returned as unpaired rows with label true.
 */
export async function prepareDataset(path: string, tok: Tokenizer, opts: DataOptions): Promise<PreparedDataset> {
  const t0 = performance.now();
  const method = checkMethod(opts.method);
  const trunc = truncationOptions(opts);
  const settings = {
    method, ...trunc, split: opts.split ?? null, skip_bad_rows: !!opts.skip_bad_rows,
    prompt_column: opts.prompt_column ?? null, chosen_column: opts.chosen_column ?? null, rejected_column: opts.rejected_column ?? null,
    completion_column: opts.completion_column ?? null, label_column: opts.label_column ?? null,
  };
  let cacheFile: string | null = null;
  if (opts.cacheDir !== null) {
    const files = await resolveDataFiles(path, opts.split);
    cacheFile = cachePath(opts.cacheDir, await cacheKey(files, tok.fingerprint, settings));
    const hit = await readCache<TokenizedPair | TokenizedUnpaired, { kind: "paired" | "unpaired"; stats: PrepStats }>(cacheFile);
    if (hit) {
      // the cache is keyed by content: the same bytes may have come from another path
      const stats: PrepStats = { ...hit.header.stats, files, fromCache: true, cacheFile, seconds: (performance.now() - t0) / 1000 };
      return { kind: hit.header.kind, rows: hit.rows, stats } as PreparedDataset;
    }
  }

  const data = await loadExamples(path, { ...opts, split: opts.split });
  const stats: PrepStats = {
    files: data.files, method, kind: "paired", sourceKind: data.kind, conversational: data.conversational,
    implicitPrompt: data.implicitPrompt, unpairedFromPairs: false, rowsRead: data.rowsRead, rows: 0,
    badRowsSkipped: data.badRows, badRowMessages: [...data.badRowMessages], droppedPromptTooLong: 0,
    droppedCompletionTooLong: 0, droppedEmptyCompletion: 0, droppedUndesirable: 0, truncatedRows: 0,
    boundaryMerges: 0, templatePromptResets: 0, promptTokens: 0, completionTokens: 0, fromCache: false, cacheFile, seconds: 0,
  };
  if (data.conversational && !tok.chatTemplate) {
    throw new DataError("the data is conversational but the tokenizer has no chat template", {
      file: data.files[0], fix: `Pass chat_template, use a model whose tokenizer_config.json has one (${tok.dir}), or give the data as plain strings`,
    });
  }

  let paired: PairExample[] = [];
  let unpaired: UnpairedExample[] = [];
  if (method === "kto") {
    if (data.kind === "prompt_completion") throw new DataError(`kto needs a boolean "${opts.label_column ?? "label"}" column or a paired set`, { file: data.files[0], fix: "Add labels (true = desirable), or give chosen/rejected pairs" });
    if (data.kind === "paired") { unpaired = unpairExamples(data.paired); stats.unpairedFromPairs = true; } else unpaired = data.unpaired;
  } else if (method === "sft") {
    if (data.kind === "paired") unpaired = data.paired.map((p) => ({ ref: p.ref, prompt: p.prompt, completion: p.chosen, label: true, tools: p.tools, templateKwargs: p.templateKwargs }));
    else {
      unpaired = data.unpaired.filter((u) => u.label);
      stats.droppedUndesirable = data.unpaired.length - unpaired.length;
    }
  } else {
    if (data.kind !== "paired") {
      throw new DataError(`${method} needs paired data (prompt, chosen, rejected) but this is a ${data.kind === "unpaired" ? "prompt/completion/label" : "prompt/completion"} set`, {
        file: data.files[0], fix: data.kind === "unpaired" ? "Use method kto for unpaired data" : "Use method sft for prompt/completion data",
      });
    }
    paired = data.paired;
  }
  stats.kind = method === "kto" || method === "sft" ? "unpaired" : "paired";

  const total = paired.length + unpaired.length;
  const bar = opts.progress ? new cliProgress.SingleBar({
    format: "tokenizing {bar} {value}/{total} rows | {eta_formatted} left",
    noTTYOutput: true, notTTYSchedule: 5000, stream: process.stderr, hideCursor: true,
  }, cliProgress.Presets.shades_classic) : null;
  bar?.start(total, 0);
  const orpo = usesOrpoRules(method);
  const drop = (why: DropReason) => {
    if (why === "prompt_too_long") stats.droppedPromptTooLong++;
    else if (why === "completion_too_long") stats.droppedCompletionTooLong++;
    else stats.droppedEmptyCompletion++;
  };
  const badRow = (e: unknown, ref: RowRef, field: string | null) => {
    const err = wrapRowError(e, ref, field, !!opts.skip_bad_rows);
    if (!opts.skip_bad_rows) throw err;
    stats.badRowsSkipped++;
    if (stats.badRowMessages.length < 20) stats.badRowMessages.push(err.message);
  };
  const toStrings = (prompt: Text, completions: Text[], ex: PairExample | UnpairedExample) => {
    if (!data.conversational) return { prompt: prompt as string, completions: completions as string[] };
    const s = splitConversation(tok, prompt as Message[], completions as Message[][], { tools: ex.tools, kwargs: ex.templateKwargs });
    if (s.reset) stats.templatePromptResets++;
    return s;
  };

  const pairRows: TokenizedPair[] = [];
  const unpairedRows: TokenizedUnpaired[] = [];
  try {
    let done = 0;
    for (const ex of paired) {
      if (++done % 64 === 0) bar?.update(done);
      let tokd: TokenizedPair & { merged: boolean };
      try {
        const s = toStrings(ex.prompt, [ex.chosen, ex.rejected], ex);
        if (orpo) tokd = tokenizePairOrpo(tok, s.prompt, s.completions[0], s.completions[1]);
        else {
          const std = !data.conversational;
          const cs = std ? s.completions.map((c) => withEosText(tok, c)) : s.completions;
          const j = tokenizeJoint(tok, s.prompt, cs, std);
          tokd = { prompt_ids: j.prompt_ids, chosen_ids: j.completions[0], rejected_ids: j.completions[1], merged: j.merged };
        }
      } catch (e) { badRow(e, ex.ref, null); continue; }
      if (tokd.merged) stats.boundaryMerges++;
      const t = truncatePair({ prompt_ids: tokd.prompt_ids, chosen_ids: tokd.chosen_ids, rejected_ids: tokd.rejected_ids }, trunc);
      if (t.drop) { drop(t.drop); continue; }
      if (t.truncated) stats.truncatedRows++;
      stats.promptTokens += t.row.prompt_ids.length;
      stats.completionTokens += t.row.chosen_ids.length + t.row.rejected_ids.length;
      pairRows.push(t.row);
    }
    for (const ex of unpaired) {
      if (++done % 64 === 0) bar?.update(done);
      let tokd: { prompt_ids: number[]; completion_ids: number[]; merged: boolean };
      try {
        const s = toStrings(ex.prompt, [ex.completion], ex);
        const std = !data.conversational;
        const j = tokenizeJoint(tok, s.prompt, [std ? withEosText(tok, s.completions[0]) : s.completions[0]], std);
        tokd = { prompt_ids: j.prompt_ids, completion_ids: j.completions[0], merged: j.merged };
      } catch (e) { badRow(e, ex.ref, null); continue; }
      if (tokd.merged) stats.boundaryMerges++;
      const t = truncateUnpaired({ prompt_ids: tokd.prompt_ids, completion_ids: tokd.completion_ids, label: ex.label }, trunc);
      if (t.drop) { drop(t.drop); continue; }
      if (t.truncated) stats.truncatedRows++;
      stats.promptTokens += t.row.prompt_ids.length;
      stats.completionTokens += t.row.completion_ids.length;
      unpairedRows.push(t.row);
    }
    bar?.update(total);
  } finally {
    bar?.stop();
  }

  const rows = stats.kind === "paired" ? pairRows : unpairedRows;
  stats.rows = rows.length;
  if (rows.length === 0) {
    throw new DataError("no rows left after validation and truncation", {
      file: data.files.join(", "),
      fix: `Dropped: ${stats.badRowsSkipped} bad, ${stats.droppedPromptTooLong} prompt ≥ max_length, ${stats.droppedCompletionTooLong} completion ≥ max_length, ${stats.droppedEmptyCompletion} empty completion. Raise max_length or check the data`,
    });
  }
  stats.seconds = (performance.now() - t0) / 1000;
  if (cacheFile) await writeCache<TokenizedPair | TokenizedUnpaired>(cacheFile, { kind: stats.kind, stats }, rows);
  return stats.kind === "paired" ? { kind: "paired", rows: pairRows, stats } : { kind: "unpaired", rows: unpairedRows, stats };
}
