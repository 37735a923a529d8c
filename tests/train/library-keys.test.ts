// Every key of the libraries whose recipes preftune reads (fixtures/library-keys.json: the dataclass fields and
// defaults of TRL's method configs, ScriptArguments and ModelConfig, transformers' TrainingArguments, current and
// 4.x, and BitsAndBytesConfig) is known here and resolves at its library default; every accepted-and-ignored key
// set to a value that matters prints exactly one note naming it, or is refused with its reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ConfigError, IGNORED_KEYS, resolveConfig, SCHEMA, type TrainMethod } from "../../src/train/config.ts";
import { ALIASES, COMPAT_KEYS, type CompatKey } from "../../src/train/config-compat.ts";

const LIB = JSON.parse(readFileSync(new URL("fixtures/library-keys.json", import.meta.url), "utf8")) as Record<string, Record<string, unknown>>;
const METHOD: Record<string, TrainMethod> = { DPOConfig: "dpo", KTOConfig: "kto", ORPOConfig: "orpo", CPOConfig: "cpo", SFTConfig: "sft" };
const base = { model_name_or_path: "m", dataset: "d", output_dir: "o" };

test("every library key is a key here (honoured, accepted with a note, or a deprecated name) and resolves at its library default", () => {
  const classes = Object.keys(LIB).filter((k) => !k.startsWith("_"));
  assert.ok(classes.length >= 9);
  for (const cls of classes) {
    const method = METHOD[cls] ?? "dpo";
    for (const [k, v] of Object.entries(LIB[cls])) {
      assert.ok(k in SCHEMA || k in ALIASES, `${cls}.${k} is unknown here`);
      try { resolveConfig({ ...base, method, [k]: v }); } catch (e) { assert.fail(`${cls}.${k} = ${JSON.stringify(v)}: ${(e as Error).message}`); }
    }
  }
});

/** A value of the key's kind that differs from every value needing no note. */
function someValue(c: CompatKey): unknown {
  const quiet = (c.quiet ?? [c.def]).map((q) => JSON.stringify(q));
  const candidates: Record<CompatKey["kind"], unknown[]> = {
    bool: [true, false], int: [7, 3], float: [0.25, 0.5], string: [...(c.values ?? []), "x"], list: [["x"]], dict: [{ a: 1 }], any: ["x"],
  };
  return candidates[c.kind].find((v) => !quiet.includes(JSON.stringify(v)));
}

test("each accepted-and-ignored key set to a value that matters: one note naming it, or refused with its reason", () => {
  for (const k of IGNORED_KEYS) {
    const c = COMPAT_KEYS[k as keyof typeof COMPAT_KEYS] as CompatKey;
    const v = someValue(c);
    const raw = { ...base, method: "dpo", [k]: v };
    if (c.refuse) {
      assert.throws(() => resolveConfig(raw), (e: Error) => e instanceof ConfigError && e.message.includes(`${k} ${JSON.stringify(v)}: ${c.why}`), k);
      continue;
    }
    const { notes } = resolveConfig(raw);
    const naming = notes.filter((n) => n.split(": ")[0].split(", ").includes(k));
    assert.equal(naming.length, 1, `${k} = ${JSON.stringify(v)}: ${notes.join(" | ")}`);
    assert.ok(naming[0].endsWith(c.why), naming[0]);
  }
  // at a value that changes nothing, no note at all
  assert.deepEqual(resolveConfig({ ...base, method: "dpo", push_to_hub: false, report_to: "none", bf16: false, hub_strategy: "every_save" }).notes, []);
});
