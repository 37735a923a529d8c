// MT-Bench with FastChat's files and bookkeeping: two-turn answers in its model-answer JSONL, single-mode GPT-4
// style judging with its judge prompts and reference answers, and show_result's averages. Records are appended
// (and fsynced) one by one, so a killed run resumes where it stopped with every answer and judgment once.
// Not FastChat's prompts: answers use the model's own chat template (what a user would chat with), not
// FastChat's per-model conversation templates, so scores are comparable to FastChat's only up to that choice.
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomInt } from "node:crypto";
import { DataError } from "../data/errors.ts";
import type { Generator, LoadedModel } from "../generate/engine.ts";
import type { GenerateRequest, GenerationConfig } from "../generate/types.ts";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import { appendRecords, readRecordLog } from "../util/records.ts";
import { fillTemplate, judgeRating, type ChatMessage, type JudgeOptions } from "./judge.ts";
import { readJsonLines } from "./jsonl.ts";

export const MT_BENCH_DATA = fileURLToPath(new URL("../../data/mt-bench/", import.meta.url));

/** FastChat's temperature per category (common.py temperature_config); any other category gets 0.7. */
export const CATEGORY_TEMPERATURE: Readonly<Record<string, number>> = {
  writing: 0.7, roleplay: 0.7, reasoning: 0.0, math: 0.0, coding: 0.0, extraction: 0.0, stem: 0.1, humanities: 0.1, "arena-hard-200": 0.0,
};
/** Categories judged against a reference answer (the *-math-* prompts). */
export const NEED_REF_CATS: ReadonlySet<string> = new Set(["math", "reasoning", "coding", "arena-hard-200"]);

export function categoryTemperature(category: string): number {
  return CATEGORY_TEMPERATURE[category] ?? 0.7;
}

export interface Question { question_id: number; category: string; turns: string[] }
export interface AnswerRecord { question_id: number; answer_id: string; model_id: string; choices: { index: number; turns: string[] }[]; tstamp: number }
export interface JudgmentRecord {
  question_id: number; model: string; judge: [string, string]; user_prompt: string; judgment: string; score: number; turn: number; tstamp: number;
  error?: string;   // ours: why score is −1 (FastChat has no such field)
}
export interface JudgePrompt { name: string; type: string; system_prompt: string; prompt_template: string; output_format: string }

// ---------------------------------------------------------------------------------------------- questions

export function readQuestions(file: string): Question[] {
  const seen = new Set<number>();
  return readJsonLines(file).map(({ line, value: v }) => {
    const where = (field: string) => ({ file, row: line, rowUnit: "line" as const, field });
    if (!Number.isInteger(v.question_id)) throw new DataError(`question_id is ${JSON.stringify(v.question_id)}, not an integer`, where("question_id"));
    if (typeof v.category !== "string") throw new DataError(`category is ${JSON.stringify(v.category)}, not a string`, where("category"));
    const turns = v.turns;
    if (!Array.isArray(turns) || turns.length !== 2 || !turns.every((t) => typeof t === "string")) {
      throw new DataError("turns must be a list of two strings (MT-Bench questions have two turns)", { ...where("turns"), fix: "Fix the row" });
    }
    const id = v.question_id as number;
    if (seen.has(id)) throw new DataError(`question_id ${id} appears twice`, where("question_id"));
    seen.add(id);
    return { question_id: id, category: v.category, turns: turns as string[] };
  });
}

/** The first `count` questions in file order, or the ones named by `ids` (in file order). */
export function selectQuestions(all: Question[], o: { count?: number | null; ids?: number[] | null }): Question[] {
  if (o.ids && o.ids.length > 0) {
    const known = new Set(all.map((q) => q.question_id));
    const missing = o.ids.filter((id) => !known.has(id));
    if (missing.length > 0) {
      const ids = all.map((q) => q.question_id);
      throw new Error(`--question-ids: no question ${missing.join(", ")} in the question file (ids run ${Math.min(...ids)}–${Math.max(...ids)})`);
    }
    const want = new Set(o.ids);
    return all.filter((q) => want.has(q.question_id));
  }
  return o.count != null ? all.slice(0, o.count) : all;
}

// ------------------------------------------------------------------------------------------------ answers

const SHORTUUID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** A 22-character id over shortuuid's alphabet, like FastChat's answer_id. */
export function shortUuid(): string {
  let s = "";
  for (let i = 0; i < 22; i++) s += SHORTUUID_ALPHABET[randomInt(SHORTUUID_ALPHABET.length)];
  return s;
}

/** The answers already on disk, by question_id; the last record wins, as FastChat's reorg_answer_file keeps it. */
export function readAnswers(file: string, opts: { repair: boolean }): { answers: Map<number, AnswerRecord>; repairedBytes: number } {
  const log = readRecordLog<AnswerRecord>(file, opts);
  const answers = new Map<number, AnswerRecord>();
  for (const { line, value } of log.records) {
    const turns = value.choices?.[0]?.turns;
    if (!Number.isInteger(value.question_id) || !Array.isArray(turns) || !turns.every((t) => typeof t === "string")) {
      throw new DataError("is not a FastChat answer record ({question_id, choices: [{turns: [...]}]})", { file, row: line, rowUnit: "line", fix: "Delete the line; that answer is then generated again" });
    }
    answers.set(value.question_id, value);
  }
  return { answers, repairedBytes: log.repairedBytes };
}

/** FastChat's clean-up of a decoded answer: special-token strings removed, then surrounding whitespace. */
export function cleanAnswer(text: string, specialTokens: (string | null)[]): string {
  let out = text;
  for (const t of specialTokens) if (t) out = out.split(t).join("");
  return out.trim();
}

export interface AnswerOptions {
  file: string;
  modelId: string;
  maxNewTokens: number;        // FastChat's --max-new-token (1024)
  batchSize: number;           // questions decoded together
  seed: number | null;         // null: fresh randomness; else request seeds derived from it per question and turn
  adapters?: boolean;
  log?: (line: string) => void;
}

/** Per-question settings: greedy below temperature 1e-4 (FastChat), else sampling at the category temperature. */
export function answerConfig(defaults: GenerationConfig, q: Question, turn: number, o: Pick<AnswerOptions, "maxNewTokens" | "seed">): GenerationConfig {
  const t = categoryTemperature(q.category);
  const sample = t >= 1e-4;
  return {
    ...defaults,
    do_sample: sample,
    temperature: sample ? t : defaults.temperature,   // unused when greedy; kept valid
    max_new_tokens: o.maxNewTokens,
    seed: o.seed == null ? null : o.seed + 10 * q.question_id + turn,
  };
}

type AnswerGenerator = Pick<Generator, "generate" | "chatPromptIds"> & { loaded: Pick<LoadedModel, "generationDefaults" | "tokenizer" | "maxPositions"> };

/**
 * Continues each conversation by one assistant turn. A prompt that leaves no room under max_position_embeddings
 * gets the answer "ERROR" (FastChat's answer when generation fails) and a warning; the others are one batch.
 */
async function answerTurn(gen: AnswerGenerator, convs: ChatMessage[][], configs: GenerationConfig[], o: AnswerOptions, qids: number[]): Promise<string[]> {
  const { tokenizer, maxPositions } = gen.loaded;
  const out: string[] = convs.map(() => "ERROR");
  const reqs: GenerateRequest[] = [];
  const slots: number[] = [];
  convs.forEach((conv, i) => {
    const promptIds = gen.chatPromptIds(conv);
    const room = maxPositions - promptIds.length;
    if (room < 1) {
      o.log?.(`question ${qids[i]}: the prompt is ${promptIds.length} tokens, which leaves no room under max_position_embeddings ${maxPositions}; answer recorded as "ERROR"`);
      return;
    }
    const cap = configs[i].max_new_tokens ?? room;
    reqs.push({ promptIds, config: { ...configs[i], max_new_tokens: Math.min(cap, room) } });
    slots.push(i);
  });
  const results = await gen.generate(reqs, { adapters: o.adapters ?? true });
  const special = [tokenizer.bosToken, tokenizer.eosToken, tokenizer.padToken];
  results.forEach((r, k) => { out[slots[k]] = cleanAnswer(r.completion, special); });
  return out;
}

/**
 * Answers `questions` two turns each, `batchSize` questions at a time (all first turns together, then all second
 * turns), and appends one FastChat answer record per question as soon as both its turns are done.
 */
export async function generateAnswers(gen: AnswerGenerator, questions: Question[], o: AnswerOptions): Promise<number> {
  let written = 0;
  for (let s = 0; s < questions.length; s += o.batchSize) {
    const batch = questions.slice(s, s + o.batchSize);
    const t0 = performance.now();
    const qids = batch.map((q) => q.question_id);
    const defaults = gen.loaded.generationDefaults;
    const first: ChatMessage[][] = batch.map((q) => [{ role: "user", content: q.turns[0] }]);
    const a1 = await answerTurn(gen, first, batch.map((q) => answerConfig(defaults, q, 1, o)), o, qids);
    const second: ChatMessage[][] = batch.map((q, i) => [...first[i], { role: "assistant", content: a1[i] }, { role: "user", content: q.turns[1] }]);
    const a2 = await answerTurn(gen, second, batch.map((q) => answerConfig(defaults, q, 2, o)), o, qids);
    batch.forEach((q, i) => {
      const rec: AnswerRecord = {
        question_id: q.question_id, answer_id: shortUuid(), model_id: o.modelId,
        choices: [{ index: 0, turns: [a1[i], a2[i]] }], tstamp: Date.now() / 1000,
      };
      appendRecords(o.file, [rec]);
      written++;
    });
    o.log?.(`answered ${qids.join(", ")} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return written;
}

// ------------------------------------------------------------------------------------------------ judging

const SINGLE_PROMPTS = ["single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"];

/** The judge prompts file, keyed by name; the four single-mode prompts must be there. Loaded verbatim. */
export function readJudgePrompts(file: string): Map<string, JudgePrompt> {
  const prompts = new Map<string, JudgePrompt>();
  for (const { line, value } of readJsonLines(file)) {
    for (const k of ["name", "system_prompt", "prompt_template"]) {
      if (typeof value[k] !== "string") throw new DataError(`${k} is ${JSON.stringify(value[k])}, not a string`, { file, row: line, rowUnit: "line", field: k });
    }
    prompts.set(value.name as string, value as unknown as JudgePrompt);
  }
  const missing = SINGLE_PROMPTS.filter((n) => !prompts.has(n));
  if (missing.length > 0) throw new DataError(`no judge prompt named ${missing.join(", ")}`, { file, fix: "Use FastChat's data/judge_prompts.jsonl (shipped as data/mt-bench/judge_prompts.jsonl)" });
  return prompts;
}

/** Reference answers (choices[0].turns) by question_id. */
export function readReferenceAnswers(file: string): Map<number, string[]> {
  const refs = new Map<number, string[]>();
  for (const { line, value } of readJsonLines(file)) {
    const turns = (value.choices as { turns?: unknown }[] | undefined)?.[0]?.turns;
    if (!Number.isInteger(value.question_id) || !Array.isArray(turns) || turns.length < 2 || !turns.every((t) => typeof t === "string")) {
      throw new DataError("is not an answer record with two turns ({question_id, choices: [{turns: [t1, t2]}]})", { file, row: line, rowUnit: "line" });
    }
    refs.set(value.question_id as number, turns as string[]);
  }
  return refs;
}

export interface Match { question: Question; turn: 1 | 2; promptName: string; messages: ChatMessage[]; userPrompt: string }

/** The judge request for one answer turn, as FastChat's make_match_single / run_judge_single build it. */
export function makeMatch(q: Question, answer: string[], turn: 1 | 2, prompts: Map<string, JudgePrompt>, refs: Map<number, string[]>): Match {
  const needRef = NEED_REF_CATS.has(q.category);
  const promptName = `single-${needRef ? "math-" : ""}v1${turn === 2 ? "-multi-turn" : ""}`;
  const p = prompts.get(promptName)!;
  const values: Record<string, string> = turn === 1
    ? { question: q.turns[0], answer: answer[0] }
    : { question_1: q.turns[0], question_2: q.turns[1], answer_1: answer[0], answer_2: answer[1] };
  if (needRef) {
    const ref = refs.get(q.question_id);
    if (!ref) throw new Error(`question ${q.question_id} (${q.category}) is judged against a reference answer, and the reference file has none for it; pass --ref-answers with one that does`);
    values.ref_answer_1 = ref[0];
    if (turn === 2) values.ref_answer_2 = ref[1];
  }
  const userPrompt = fillTemplate(p.prompt_template, values, `judge prompt ${promptName}`);
  return { question: q, turn, promptName, userPrompt, messages: [{ role: "system", content: p.system_prompt }, { role: "user", content: userPrompt }] };
}

export interface JudgeRunOptions {
  judge: JudgeOptions;
  file: string;                       // the judgment log ({judge}_single.jsonl)
  modelId: string;
  parallel: number;                   // judge requests in flight
  retryFailed?: boolean;              // judge again the turns recorded with an error
  log?: (line: string) => void;
}

const pairKey = (qid: number, turn: number) => `${qid}/${turn}`;

/** This model's judgments by this judge model, from a log that may hold other models and judges. */
export function ownJudgments(records: JudgmentRecord[], modelId: string, judgeModel: string): JudgmentRecord[] {
  return records.filter((r) => r.model === modelId && Array.isArray(r.judge) && r.judge[0] === judgeModel);
}

/** With retryFailed, rewrites the log without this model's error records so those turns are judged again. */
function dropFailed(file: string, records: JudgmentRecord[], o: JudgeRunOptions): JudgmentRecord[] {
  const failed = (r: JudgmentRecord) => r.error !== undefined && r.model === o.modelId && r.judge?.[0] === o.judge.model;
  const kept = records.filter((r) => !failed(r));
  if (kept.length < records.length) {
    writeFileAtomic(file, kept.map((r) => JSON.stringify(r) + "\n").join(""));
    o.log?.(`judging again ${records.length - kept.length} turn(s) that failed before`);
  }
  return kept;
}

/**
 * Judges every (question, turn) of `questions` not yet in the log: all first turns, then all second turns
 * (FastChat's order), `parallel` at a time, each record appended as it finishes. Failed judgments are recorded
 * with score −1 and an error; a fatal judge error (bad key, unknown model) stops the run and is thrown.
 */
export async function judgeAnswers(questions: Question[], answers: Map<number, AnswerRecord>, prompts: Map<string, JudgePrompt>, refs: Map<number, string[]>, o: JudgeRunOptions): Promise<{ judged: number; skipped: number; failed: number }> {
  let records = readRecordLog<JudgmentRecord>(o.file, { repair: true }).records.map((r) => r.value);
  if (o.retryFailed) records = dropFailed(o.file, records, o);
  const done = new Set(ownJudgments(records, o.modelId, o.judge.model).map((r) => pairKey(r.question_id, r.turn)));
  const matches: Match[] = [];
  for (const turn of [1, 2] as const) {
    for (const q of questions) {
      const a = answers.get(q.question_id);
      if (!a || done.has(pairKey(q.question_id, turn))) continue;
      matches.push(makeMatch(q, a.choices[0].turns, turn, prompts, refs));
    }
  }
  const skipped = questions.length * 2 - matches.length;
  let next = 0, judged = 0, failed = 0;
  let stop: Error | null = null;
  const worker = async () => {
    while (!stop && next < matches.length) {
      const m = matches[next++];
      try {
        const j = await judgeRating(o.judge, m.messages);
        const rec: JudgmentRecord = {
          question_id: m.question.question_id, model: o.modelId, judge: [o.judge.model, m.promptName], user_prompt: m.userPrompt,
          judgment: j.judgment, score: j.score, turn: m.turn, tstamp: Date.now() / 1000,
        };
        if (j.error) { rec.error = j.error; failed++; o.log?.(`question ${m.question.question_id} turn ${m.turn}: recorded with score -1 (${j.error})`); }
        appendRecords(o.file, [rec]);
        judged++;
      } catch (e) {
        stop ??= e as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.parallel, matches.length)) }, worker));
  if (stop) throw new Error(`judge ${o.judge.model}: ${(stop as Error).message}; ${judged} judgment(s) were recorded, a re-run continues from there`);
  return { judged, skipped, failed };
}

// ------------------------------------------------------------------------------------------------ results

export interface ScoreCell { score: number | null; n: number }
export interface MtBenchScores {
  model: string;
  judge: string;
  turn1: ScoreCell;
  turn2: ScoreCell;
  average: ScoreCell;                 // mean over both turns' rows pooled (show_result's "Average")
  dropped: number;                    // rows with score −1
  categories: Record<string, { turn1: ScoreCell; turn2: ScoreCell; average: ScoreCell }>;
}

function mean(xs: number[]): ScoreCell {
  return { score: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null, n: xs.length };
}

function cells(rows: JudgmentRecord[]): { turn1: ScoreCell; turn2: ScoreCell; average: ScoreCell } {
  return {
    turn1: mean(rows.filter((r) => r.turn === 1).map((r) => r.score)),
    turn2: mean(rows.filter((r) => r.turn === 2).map((r) => r.score)),
    average: mean(rows.map((r) => r.score)),
  };
}

/**
 * FastChat's show_result --mode single for one model: rows with score −1 dropped, the mean of turn 1, of turn 2,
 * and "Average" over all remaining rows pooled (not the mean of the two turn means); also per category.
 */
export function showResult(records: JudgmentRecord[], modelId: string, judgeModel: string, categoryOf: Map<number, string>): MtBenchScores {
  const own = ownJudgments(records, modelId, judgeModel);
  const kept = own.filter((r) => r.score !== -1);
  const categories: MtBenchScores["categories"] = {};
  const byCat = new Map<string, JudgmentRecord[]>();
  for (const r of kept) {
    const c = categoryOf.get(r.question_id) ?? "unknown";
    byCat.set(c, [...(byCat.get(c) ?? []), r]);
  }
  for (const [c, rows] of byCat) categories[c] = cells(rows);
  return { model: modelId, judge: judgeModel, ...cells(kept), dropped: own.length - kept.length, categories };
}

export function formatScores(s: MtBenchScores): string {
  const f = (c: ScoreCell) => (c.score == null ? "   -   " : c.score.toFixed(4).padStart(7)) + ` (${c.n})`.padEnd(6);
  const lines = [`MT-Bench, ${s.model}, judged by ${s.judge} (mean score 1-10; rows in parentheses; ${s.dropped} unparsed dropped)`,
    `${"".padEnd(14)}  turn 1         turn 2         Average`,
    `${"all".padEnd(14)}  ${f(s.turn1)}  ${f(s.turn2)}  ${f(s.average)}`];
  for (const c of Object.keys(s.categories).sort()) {
    const x = s.categories[c];
    lines.push(`${c.padEnd(14)}  ${f(x.turn1)}  ${f(x.turn2)}  ${f(x.average)}`);
  }
  return lines.join("\n");
}

// ------------------------------------------------------------------------------------------------ the run

export interface MtBenchOptions {
  model: string;
  adapter?: string | null;
  modelId?: string | null;            // default: the adapter's or model's folder name
  output: string;                     // answers in output/model_answer/, judgments in output/model_judgment/
  questionFile?: string;
  questions?: number | null;
  questionIds?: number[] | null;
  maxNewTokens?: number;
  batchSize?: number;
  seed?: number | null;
  threads?: number;
  judge?: JudgeOptions | null;
  judgePrompts?: string;
  refAnswers?: string;
  judgeParallel?: number;
  retryFailedJudgments?: boolean;
  log?: (line: string) => void;
  /** How to load the model when answers are missing (the engine's loader by default; tests may pass their own). */
  loadModel?: () => Promise<{ generator: AnswerGenerator; dispose(): void }>;
}

export interface MtBenchSummary {
  answerFile: string;
  answersWritten: number;
  answersFound: number;
  judgmentFile: string | null;
  judged: number;
  judgeFailures: number;
  scores: MtBenchScores | null;
  scoresFile: string | null;
}

export function defaultModelId(model: string, adapter?: string | null): string {
  return basename(resolve(adapter ?? model));
}

function checkModelId(id: string): string {
  if (!id || /[\\/]/.test(id) || id === "." || id === "..") throw new Error(`--model-id ${JSON.stringify(id)} names the answer file: use a plain name without slashes`);
  return id;
}

async function engineLoader(o: MtBenchOptions): Promise<{ generator: AnswerGenerator; dispose(): void }> {
  const { loadGenerationModel, Generator } = await import("../generate/engine.ts");
  const loaded = await loadGenerationModel(o.model, { adapter: o.adapter ?? null, threads: o.threads });
  return { generator: new Generator(loaded), dispose: () => loaded.dispose() };
}

export async function runMtBench(o: MtBenchOptions): Promise<MtBenchSummary> {
  const log = o.log ?? (() => {});
  const modelId = checkModelId(o.modelId ?? defaultModelId(o.model, o.adapter));
  const questionFile = o.questionFile ?? join(MT_BENCH_DATA, "question.jsonl");
  const allQuestions = readQuestions(questionFile);
  const questions = selectQuestions(allQuestions, { count: o.questions, ids: o.questionIds });
  const answerFile = join(o.output, "model_answer", `${modelId}.jsonl`);
  const found = readAnswers(answerFile, { repair: true });
  if (found.repairedBytes > 0) log(`${answerFile}: removed an unfinished last line (${found.repairedBytes} bytes) left by an interrupted run`);
  const pending = questions.filter((q) => !found.answers.has(q.question_id));
  log(`${questions.length} question(s): ${questions.length - pending.length} already answered in ${answerFile}, ${pending.length} to answer`);
  let written = 0;
  if (pending.length > 0) {
    const m = await (o.loadModel ?? (() => engineLoader(o)))();
    try {
      written = await generateAnswers(m.generator, pending, {
        file: answerFile, modelId, maxNewTokens: o.maxNewTokens ?? 1024, batchSize: Math.max(1, o.batchSize ?? 4), seed: o.seed === undefined ? 0 : o.seed, log,
      });
    } finally {
      m.dispose();
    }
  }
  const summary: MtBenchSummary = { answerFile, answersWritten: written, answersFound: questions.length - pending.length, judgmentFile: null, judged: 0, judgeFailures: 0, scores: null, scoresFile: null };
  if (!o.judge) return summary;

  const prompts = readJudgePrompts(o.judgePrompts ?? join(MT_BENCH_DATA, "judge_prompts.jsonl"));
  const refs = readReferenceAnswers(o.refAnswers ?? join(MT_BENCH_DATA, "reference_answer", "gpt-4.jsonl"));
  const answers = readAnswers(answerFile, { repair: false }).answers;
  const judgmentFile = join(o.output, "model_judgment", `${o.judge.model.replace(/[\\/]/g, "_")}_single.jsonl`);
  const r = await judgeAnswers(questions, answers, prompts, refs, { judge: { ...o.judge, log: o.judge.log ?? log }, file: judgmentFile, modelId, parallel: o.judgeParallel ?? 1, retryFailed: o.retryFailedJudgments, log });
  log(`judged ${r.judged} turn(s) (${r.failed} recorded with score -1), ${r.skipped} already judged, in ${judgmentFile}`);
  const all = readRecordLog<JudgmentRecord>(judgmentFile, { repair: false }).records.map((x) => x.value);
  const scores = showResult(all, modelId, o.judge.model, new Map(allQuestions.map((q) => [q.question_id, q.category])));
  const scoresFile = join(o.output, `mt_bench_scores_${modelId}.json`);
  ensureDir(o.output, "output folder");
  writeFileAtomic(scoresFile, JSON.stringify(scores, null, 2) + "\n");
  return { ...summary, judgmentFile, judged: r.judged, judgeFailures: r.failed, scores, scoresFile };
}
