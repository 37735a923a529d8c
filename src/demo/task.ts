// The demo's synthetic task: "max(47,38)=" answered with the larger number (chosen) or the smaller one (rejected:
// the plausible mistake of picking the wrong one of the two), plus random two-digit answers for the warm-up that
// starts a fresh model on the answer format without any comparing. Seeded, so every run of the demo sees the same data.
// Not the training (orpo-demo.ts): this only makes and writes rows and checks answers.
import { join } from "node:path";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import { mulberry32 } from "../util/random.ts";

export interface Problem {
  prompt: string;     // "max(47,38)="
  answer: string;     // "47": the chosen completion
  wrong: string;      // "38": the rejected completion
  noise: string;      // a random two-digit number: the warm-up's completion (format, no comparing)
}

export interface Task { train: Problem[]; heldOut: Problem[] }

export interface LargerOptions { min: number; max: number; heldOut: number; seed: number }

/** Every ordered pair a ≠ b in [min, max] with different tens digits, shuffled; the first `heldOut` held out. */
export function largerTask(o: LargerOptions): Task {
  if (o.min < 10 || o.max > 99 || o.min >= o.max) throw new Error(`max task operands ${o.min}..${o.max}: use two-digit numbers (10..99)`);
  const rand = mulberry32(o.seed);
  const all: Problem[] = [];
  for (let a = o.min; a <= o.max; a++) {
    for (let b = o.min; b <= o.max; b++) {
      if (Math.floor(a / 10) === Math.floor(b / 10)) continue;
      all.push({ prompt: `max(${a},${b})=`, answer: String(Math.max(a, b)), wrong: String(Math.min(a, b)), noise: String(o.min + Math.floor(rand() * (o.max - o.min + 1))) });
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
export function isCorrect(p: Problem, completion: string): boolean {
  return completion.trim() === p.answer;
}

export interface TaskFiles {
  warmup: string;   // prompt/completion: random answers (SFT)
  sft: string;      // prompt/completion: the correct answers (SFT)
  pairs: string;    // a folder: train.jsonl and test.jsonl of prompt/chosen/rejected (ORPO; test = the held-out problems)
}

/** Writes the task as TRL standard-format JSONL files under `dir`. */
export function writeTaskFiles(dir: string, task: Task): TaskFiles {
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
