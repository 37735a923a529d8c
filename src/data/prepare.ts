// prepareDataset: dataset (a path, a cached Hugging Face dataset, a mixture) -> validated examples -> template
// split -> token ids with the method's BOS/EOS rules -> truncation, with a cache keyed by content and a
// progress bar. The trainer's one entry into the data pipeline. Not batching (collate.ts, sampler.ts,
// packing.ts).
import cliProgress from "cli-progress";
import { DataError } from "./errors.ts";
import { loadExamples, toDataSource, unpairExamples, type ColumnOptions, type LoadedExamples, type Message, type PairExample, type RowRef, type Text, type UnpairedExample } from "./formats.ts";
import type { DataSource } from "./readers.ts";
import { assistantCharSpans, charSpansToTokenMask, hasTargets, rowFromMask, sftMessages, sftTextIds, truncateMasked, type AssistantMaskMethod, type MaskedIds } from "./sft.ts";
import { splitConversation, TemplateSplitError } from "./template.ts";
import { TokenizerBudgetError, type Tokenizer } from "./tokenizer.ts";
import { isMethod, methodSpec, trainsOnUnpairedRows } from "../train/methods.ts";
import { METHODS, tokenizeJoint, tokenizePairOrpo, TokenizeError, usesOrpoRules, withEosText, type Method, type TokenizedPair, type TokenizedUnpaired } from "./tokenize.ts";
import { truncatePair, truncateUnpaired, truncationOptions, type DropReason, type TruncationMode } from "./truncate.ts";
import type { Side } from "./budget.ts";
import { cacheError, cacheKey, cachePath, readCache, writeCache } from "./cache.ts";
import { TextBudget } from "./budget.ts";
import { maxRowBytes } from "./readers.ts";

export interface DataOptions extends ColumnOptions {
  method: Method;
  max_length?: number | null;              // default 1024; null: no limit
  max_seq_length?: number | null;          // SFTConfig's deprecated name for max_length; wins when set
  max_prompt_length?: number | null;
  max_completion_length?: number | null;
  truncation_mode?: TruncationMode;        // default keep_start
  skip_bad_rows?: boolean;                 // skip (and count) bad rows instead of failing
  cacheDir?: string | null;                // default .cache/preftune under the working directory; null: no cache
  split?: string;                          // for a folder or Hugging Face dataset: which split (default "train")
  dataset_config?: string | null;          // for a Hugging Face dataset (or a folder of configs): which config
  progress?: boolean;                      // progress bar on stderr while tokenizing (default false)
  max_row_bytes?: number | null;           // the most bytes one JSONL line may have (default 16 MiB; PREFTUNE_MAX_ROW_BYTES)
  // SFT (TRL SFTConfig); ignored by the other methods
  dataset_text_field?: string;             // the text column of language-modelling data (default "text")
  assistant_only_loss?: boolean;           // conversational data: loss on assistant tokens only (default false)
  completion_only_loss?: boolean | null;   // prompt/completion data: loss on the completion only (default null = true)
}

export interface PrepStats {
  source: string;                          // the dataset name / path / "dataset_mixture (train)"
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
  droppedNoTargets: number;                // sft: no token left to train on after truncation
  assistantMask: AssistantMaskMethod | null;   // sft with assistant_only_loss: how assistant tokens were found
  truncatedRows: number;
  boundaryMerges: number;                  // prompt/completion token merges at the split
  templatePromptResets: number;            // generation prompt cut back to the common prefix (TRL's apply_chat_template rule)
  textCutRows: number;                     // rows whose text was cut before tokenizing (beyond what truncation keeps; budget.ts)
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
  if (!isMethod(m)) throw new Error(`method must be one of ${METHODS.join(", ")}, got ${JSON.stringify(m)}`);
  return m;
}

function wrapRowError(e: unknown, ref: RowRef, field: string | null, skip: boolean): DataError {
  const fix = "Fix or remove the row" + (skip ? "" : " (or set skip_bad_rows to skip such rows)");
  if (e instanceof TemplateSplitError || e instanceof TokenizeError) return new DataError(e.message, { file: ref.file, row: ref.row, rowUnit: ref.unit, field, fix });
  if (e instanceof TokenizerBudgetError) return new DataError(e.message, { file: ref.file, row: ref.row, rowUnit: ref.unit, field, fix: e.fix + (skip ? "" : " (or set skip_bad_rows to skip such rows)") });
  if (e instanceof DataError) return e;
  return new DataError(`the chat template failed: ${(e as Error).message}`, { file: ref.file, row: ref.row, rowUnit: ref.unit, field, fix });
}

/**
 * What the schema of a cached row cannot know: every id is in the tokenizer's vocabulary and every sequence
 * fits max_length. A row that breaks either was changed after it was written (cacheError names the file).
 */
function checkCachedRows(file: string, kind: "paired" | "unpaired", rows: (TokenizedPair | TokenizedUnpaired)[], vocabSize: number, maxLength: number | null): void {
  const bad = (i: number, what: string) => cacheError(file, i + 2, `row ${i + 1} ${what}`);
  rows.forEach((r, i) => {
    const lists: [string, number[]][] = kind === "paired"
      ? [["prompt_ids", r.prompt_ids], ["chosen_ids", (r as TokenizedPair).chosen_ids], ["rejected_ids", (r as TokenizedPair).rejected_ids]]
      : [["prompt_ids", r.prompt_ids], ["completion_ids", (r as TokenizedUnpaired).completion_ids], ["kl_completion_ids", (r as TokenizedUnpaired).kl_completion_ids ?? []]];
    for (const [name, ids] of lists) {
      for (const id of ids) if (id >= vocabSize) throw bad(i, `has ${name} id ${id}, outside the tokenizer's ${vocabSize} ids`);
    }
    if (maxLength != null) {
      const longest = kind === "paired" ? Math.max((r as TokenizedPair).chosen_ids.length, (r as TokenizedPair).rejected_ids.length) : (r as TokenizedUnpaired).completion_ids.length;
      if (r.prompt_ids.length + longest > maxLength) throw bad(i, `is ${r.prompt_ids.length + longest} tokens long, more than max_length ${maxLength}`);
    }
  });
}

/**
 * Reads, validates, renders, tokenizes and truncates a dataset for `opts.method`. `source` is a path, a
 * Hugging Face dataset id in the local cache (with opts.dataset_config / opts.split; hub.ts), or a resolved
 * DataSource (a dataset mixture: mixture.ts).
 * - orpo/cpo/simpo/dpo/ipo need paired data; kto takes unpaired data, or unpairs a paired set as TRL does;
 * - sft (TRL SFTTrainer) takes, by the first row's columns: prompt/completion (only label=true rows when there
 *   is a label; loss on the completion unless completion_only_loss is false), "messages" (the whole
 *   conversation; assistant_only_loss: assistant tokens only), dataset_text_field (the whole text + EOS), or
 *   a paired set (prompt + chosen). Rows come back as unpaired rows with label true; a row whose loss is not
 *   "the completion" carries completion_mask (see sft.ts rowFromMask).
 */
export async function prepareDataset(source: string | DataSource, tok: Tokenizer, opts: DataOptions): Promise<PreparedDataset> {
  const t0 = performance.now();
  const method = checkMethod(opts.method);
  const trunc = truncationOptions(opts);
  const sft = methodSpec(method).data === "sft";
  const sftOpts = {
    dataset_text_field: opts.dataset_text_field ?? "text",
    assistant_only_loss: sft && !!opts.assistant_only_loss,
    completion_only_loss: sft ? opts.completion_only_loss ?? null : null,
  };
  const src = await toDataSource(source, { split: opts.split ?? "train", dataset_config: opts.dataset_config });
  const settings = {
    method, ...trunc, split: opts.split ?? null, skip_bad_rows: !!opts.skip_bad_rows,
    prompt_column: opts.prompt_column ?? null, chosen_column: opts.chosen_column ?? null, rejected_column: opts.rejected_column ?? null,
    completion_column: opts.completion_column ?? null, label_column: opts.label_column ?? null,
    dataset_config: opts.dataset_config ?? null, source_key: src.key ?? null, ...(sft ? sftOpts : {}),
    max_row_bytes: maxRowBytes(opts.max_row_bytes),
  };
  let cacheFile: string | null = null;
  if (opts.cacheDir !== null) {
    const files = src.files;
    cacheFile = cachePath(opts.cacheDir, await cacheKey(files, tok.fingerprint, settings));
    const hit = await readCache<TokenizedPair | TokenizedUnpaired, { kind: "paired" | "unpaired"; stats: PrepStats }>(cacheFile);
    if (hit) {
      checkCachedRows(cacheFile, hit.header.kind, hit.rows, tok.vocabSize, trunc.max_length);
      // the cache is keyed by content: the same bytes may have come from another path
      const stats: PrepStats = { ...hit.header.stats, files, fromCache: true, cacheFile, seconds: (performance.now() - t0) / 1000 };
      return { kind: hit.header.kind, rows: hit.rows, stats } as PreparedDataset;
    }
  }

  const data = await loadExamples(src, { ...opts, sft, dataset_text_field: sftOpts.dataset_text_field, max_row_bytes: settings.max_row_bytes });
  const stats: PrepStats = {
    source: src.name, files: data.files, method, kind: "paired", sourceKind: data.kind, conversational: data.conversational,
    implicitPrompt: data.implicitPrompt, unpairedFromPairs: false, rowsRead: data.rowsRead, rows: 0,
    badRowsSkipped: data.badRows, badRowMessages: [...data.badRowMessages], droppedPromptTooLong: 0,
    droppedCompletionTooLong: 0, droppedEmptyCompletion: 0, droppedUndesirable: 0, droppedNoTargets: 0, assistantMask: null, truncatedRows: 0,
    boundaryMerges: 0, templatePromptResets: 0, textCutRows: 0, promptTokens: 0, completionTokens: 0, fromCache: false, cacheFile, seconds: 0,
  };
  if (data.conversational && !tok.chatTemplate) {
    throw new DataError("the data is conversational but the tokenizer has no chat template", {
      file: data.files[0], fix: `Pass chat_template, use a model whose tokenizer_config.json has one (${tok.dir}), or give the data as plain strings`,
    });
  }

  if (sftOpts.assistant_only_loss && !data.conversational) {
    throw new DataError("assistant_only_loss needs conversational data (messages, or conversational prompt/completion), and this dataset is plain text", {
      file: data.files[0] ?? src.name, fix: "Set assistant_only_loss to false, or give the data as messages",
    });
  }

  let paired: PairExample[] = [];
  let unpaired: UnpairedExample[] = [];
  if (data.kind === "text" || data.kind === "messages") {
    // only sft detects these (formats.ts LoadOptions.sft)
  } else if (methodSpec(method).data === "unpaired") {
    if (data.kind === "prompt_completion") throw new DataError(`kto needs a boolean "${opts.label_column ?? "label"}" column or a paired set`, { file: data.files[0], fix: "Add labels (true = desirable), or give chosen/rejected pairs" });
    if (data.kind === "paired") { unpaired = unpairExamples(data.paired); stats.unpairedFromPairs = true; } else unpaired = data.unpaired;
  } else if (methodSpec(method).data === "sft") {
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
  stats.kind = trainsOnUnpairedRows(method) ? "unpaired" : "paired";

  const total = paired.length + unpaired.length + data.lm.length;
  // SFT rows whose loss is not "the completion": whole sequences with a token mask (sft.ts)
  const masked = sft && (sftOpts.completion_only_loss === false || sftOpts.assistant_only_loss);
  const bar = opts.progress ? new cliProgress.SingleBar({
    format: "tokenizing {bar} {value}/{total} rows | {eta_formatted} left",
    noTTYOutput: true, notTTYSchedule: 5000, stream: process.stderr, hideCursor: true,
  }, cliProgress.Presets.shades_classic) : null;
  bar?.start(total, 0);
  const orpo = usesOrpoRules(method);
  // Bounded work (budget.ts): text beyond what truncation can keep is cut before rendering and tokenizing.
  // Prompts keep their end (max_prompt_length keeps the last tokens; a prompt too long for keep_start drops the
  // row either way), completions their start; whole sequences (SFT masks, language modelling) the side
  // truncation_mode keeps.
  const budget = new TextBudget(tok);
  const least = (...xs: (number | null)[]) => { const v = xs.filter((x): x is number => x != null); return v.length ? Math.min(...v) : null; };
  const promptBound = least(trunc.max_length, trunc.max_prompt_length);
  const completionBound = least(trunc.max_length, trunc.max_completion_length);
  const wholeSide: Side = trunc.truncation_mode === "keep_end" ? "end" : "start";
  const cutFields = <E extends { prompt: Text }>(ex: E, fields: [keyof E & string, Side, number | null][]): E => {
    let out = ex;
    for (const [k, side, bound] of fields) {
      const v = ex[k] as unknown as Text;
      const c = budget.cut(v, side, bound);
      if (c !== v) out = { ...out, [k]: c };
    }
    if (out !== ex) stats.textCutRows++;
    return out;
  };
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
    for (const ex0 of paired) {
      if (++done % 64 === 0) bar?.update(done);
      let tokd: TokenizedPair & { merged: boolean };
      try {
        const ex = cutFields(ex0, [["prompt", "end", promptBound], ["chosen", "start", completionBound], ["rejected", "start", completionBound]]);
        const s = toStrings(ex.prompt, [ex.chosen, ex.rejected], ex);
        if (orpo) tokd = tokenizePairOrpo(tok, s.prompt, s.completions[0], s.completions[1]);
        else {
          const std = !data.conversational;
          const cs = std ? s.completions.map((c) => withEosText(tok, c)) : s.completions;
          const j = tokenizeJoint(tok, s.prompt, cs, std);
          tokd = { prompt_ids: j.prompt_ids, chosen_ids: j.completions[0], rejected_ids: j.completions[1], merged: j.merged };
        }
      } catch (e) { badRow(e, ex0.ref, null); continue; }
      if (tokd.merged) stats.boundaryMerges++;
      const t = truncatePair({ prompt_ids: tokd.prompt_ids, chosen_ids: tokd.chosen_ids, rejected_ids: tokd.rejected_ids }, trunc);
      if (t.drop) { drop(t.drop); continue; }
      if (t.truncated) stats.truncatedRows++;
      stats.promptTokens += t.row.prompt_ids.length;
      stats.completionTokens += t.row.chosen_ids.length + t.row.rejected_ids.length;
      pairRows.push(t.row);
    }
    const pushMasked = (m: MaskedIds) => {
      const t = truncateMasked(m, trunc.max_length, trunc.truncation_mode);
      if ("drop" in t) { stats.droppedNoTargets++; return; }
      if (t.truncated) stats.truncatedRows++;
      const row = rowFromMask(t.row);
      stats.promptTokens += row.prompt_ids.length;
      stats.completionTokens += row.completion_ids.length;
      unpairedRows.push(row);
    };
    const noAssistant = () => new TokenizeError("assistant_only_loss: the conversation has no assistant tokens to train on");
    for (const ex of data.lm) {
      if (++done % 64 === 0) bar?.update(done);
      let m: MaskedIds;
      try {
        const text = budget.cut(ex.text, wholeSide, trunc.max_length);
        if (text !== ex.text) stats.textCutRows++;
        if (typeof text === "string") {
          const ids = sftTextIds(tok, text);
          m = { ids, mask: new Array<number>(ids.length).fill(1) };
        } else {
          const r = sftMessages(tok, text, { tools: ex.tools, kwargs: ex.templateKwargs, assistantOnly: sftOpts.assistant_only_loss });
          if (r.method) stats.assistantMask ??= r.method;
          if (sftOpts.assistant_only_loss && !hasTargets(r.mask)) throw noAssistant();
          m = r;
        }
      } catch (e) { badRow(e, ex.ref, data.kind === "messages" ? "messages" : sftOpts.dataset_text_field); continue; }
      pushMasked(m);
    }
    for (const ex0 of unpaired) {
      if (++done % 64 === 0) bar?.update(done);
      if (masked) {
        let m: MaskedIds;
        try {
          const ex = cutFields(ex0, [["prompt", wholeSide, trunc.max_length], ["completion", wholeSide, trunc.max_length]]);
          const s = toStrings(ex.prompt, [ex.completion], ex);
          const std = !data.conversational;
          const j = tokenizeJoint(tok, s.prompt, [std ? withEosText(tok, s.completions[0]) : s.completions[0]], std);
          if (j.merged) stats.boundaryMerges++;
          const ids = [...j.prompt_ids, ...j.completions[0]];
          const mask = ids.map((_, k) => (sftOpts.completion_only_loss === false || k >= j.prompt_ids.length ? 1 : 0));
          if (sftOpts.assistant_only_loss) {
            const a = assistantCharSpans(tok, [...(ex.prompt as Message[]), ...(ex.completion as Message[])], { tools: ex.tools, kwargs: ex.templateKwargs });
            stats.assistantMask ??= a.method;
            if (a.text !== s.prompt + s.completions[0]) throw new TemplateSplitError("assistant_only_loss: the chat template renders the conversation differently when marking assistant text");
            const am = charSpansToTokenMask(tok, a.text, ids, a.spans);
            for (let k = 0; k < ids.length; k++) mask[k] &= am[k];
            if (!hasTargets(mask)) throw noAssistant();
          }
          m = { ids, mask };
        } catch (e) { badRow(e, ex0.ref, null); continue; }
        pushMasked(m);
        continue;
      }
      const ex = ex0;
      let tokd: { prompt_ids: number[]; completion_ids: number[]; merged: boolean };
      try {
        const exc = cutFields(ex, [["prompt", "end", promptBound], ["completion", "start", completionBound]]);
        const s = toStrings(exc.prompt, [exc.completion], exc);
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
      file: data.files.join(", ") || src.name,
      fix: `Dropped: ${stats.badRowsSkipped} bad, ${stats.droppedPromptTooLong} prompt ≥ max_length, ${stats.droppedCompletionTooLong} completion ≥ max_length, ${stats.droppedEmptyCompletion} empty completion, ${stats.droppedNoTargets} with no token to train on. Raise max_length or check the data`,
    });
  }
  stats.seconds = (performance.now() - t0) / 1000;
  if (cacheFile) await writeCache<TokenizedPair | TokenizedUnpaired>(cacheFile, { kind: stats.kind, stats }, rows);
  return stats.kind === "paired" ? { kind: "paired", rows: pairRows, stats } : { kind: "unpaired", rows: unpairedRows, stats };
}
