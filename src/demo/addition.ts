// The demo's synthetic task: two-digit addition "a+b=" with a correct answer (chosen) and a plausible wrong one
// (rejected: the tens digit off by one, a carry mistake), plus random two-digit answers for the warm-up that teaches
// a fresh model the answer format without the arithmetic. Seeded, so every run of the demo sees the same data.
// Not the training (orpo-demo.ts): this only makes and writes rows and checks answers.
import { join } from "node:path";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import { mulberry32 } from "../util/random.ts";

export interface AdditionProblem {
  prompt: string;     // "27+35="
  answer: string;     // "62": the chosen completion
  wrong: string;      // "52" or "72": the rejected completion, the tens digit off by one
  noise: string;      // a random two-digit number: the warm-up's completion (format, no arithmetic)
}

export interface AdditionTask { train: AdditionProblem[]; heldOut: AdditionProblem[] }

export interface AdditionOptions { min: number; max: number; heldOut: number; seed: number }

/**
 * Every a+b with a, b in [min, max] (so every sum has two digits when 2·max ≤ 99), shuffled with `seed`;
 * the first `heldOut` problems are held out (never trained on), the rest train.
 */
export function additionTask(o: AdditionOptions): AdditionTask {
  if (2 * o.max > 99 || o.min < 5) throw new Error(`addition operands ${o.min}..${o.max}: keep every sum two-digit (min ≥ 5, max ≤ 49)`);
  const rand = mulberry32(o.seed);
  const all: AdditionProblem[] = [];
  for (let a = o.min; a <= o.max; a++) {
    for (let b = o.min; b <= o.max; b++) {
      const s = a + b;
      // the carry mistake: the tens digit one too high or too low, kept two-digit
      const wrong = s + 10 > 99 ? s - 10 : s - 10 < 10 ? s + 10 : s + (rand() < 0.5 ? 10 : -10);
      all.push({ prompt: `${a}+${b}=`, answer: String(s), wrong: String(wrong), noise: String(2 * o.min + Math.floor(rand() * (2 * o.max - 2 * o.min + 1))) });
    }
  }
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  if (o.heldOut >= all.length) throw new Error(`${o.heldOut} held-out problems of ${all.length}: hold out fewer`);
  return { heldOut: all.slice(0, o.heldOut), train: all.slice(o.heldOut) };
}

/** Whether a decoded completion is the right answer (surrounding spaces ignored). */
export function isCorrect(p: AdditionProblem, completion: string): boolean {
  return completion.trim() === p.answer;
}

export interface TaskFiles {
  warmup: string;   // prompt/completion: random answers (SFT)
  sft: string;      // prompt/completion: the correct answers (SFT)
  pairs: string;    // a folder: train.jsonl and test.jsonl of prompt/chosen/rejected (ORPO; test = the held-out problems)
}

/** Writes the task as TRL standard-format JSONL files under `dir`. */
export function writeTaskFiles(dir: string, task: AdditionTask): TaskFiles {
  const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
  const pairs = join(dir, "pairs");
  ensureDir(pairs, "demo data folder");
  const files: TaskFiles = { warmup: join(dir, "warmup.jsonl"), sft: join(dir, "sft.jsonl"), pairs };
  writeFileAtomic(files.warmup, jsonl(task.train.map((p) => ({ prompt: p.prompt, completion: p.noise }))));
  writeFileAtomic(files.sft, jsonl(task.train.map((p) => ({ prompt: p.prompt, completion: p.answer }))));
  writeFileAtomic(join(pairs, "train.jsonl"), jsonl(task.train.map((p) => ({ prompt: p.prompt, chosen: p.answer, rejected: p.wrong }))));
  writeFileAtomic(join(pairs, "test.jsonl"), jsonl(task.heldOut.map((p) => ({ prompt: p.prompt, chosen: p.answer, rejected: p.wrong }))));
  return files;
}
