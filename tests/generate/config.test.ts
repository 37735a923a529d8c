// Resolving generation settings (config.ts): HF's global defaults, the precedence overrides >
// generation_config.json > config.json token ids > defaults (null never hides a lower layer), every validation
// error with the key, value, source and fix, unknown keys with a suggestion, features we refuse, and HF's
// length rules (max_new_tokens wins, max_length is a total cap, 20 new tokens by default, positions clamp).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  GENERATION_OPTION_KEYS, GENERATION_OPTIONS, GenerationConfigError, closestGenerationKey, defaultGenerationConfig,
  maxNewTokens, resolveGenerationConfig,
} from "../../src/generate/config.ts";
import type { GenerationConfig } from "../../src/generate/types.ts";

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
function modelDir(generationConfig?: unknown, raw?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "preftune-genconfig-"));
  dirs.push(dir);
  if (raw !== undefined) writeFileSync(join(dir, "generation_config.json"), raw);
  else if (generationConfig !== undefined) writeFileSync(join(dir, "generation_config.json"), JSON.stringify(generationConfig));
  return dir;
}

const fails = (opts: Parameters<typeof resolveGenerationConfig>[0], ...patterns: RegExp[]) => {
  assert.throws(() => resolveGenerationConfig(opts), (e: Error) => {
    assert.ok(e instanceof GenerationConfigError, `not a GenerationConfigError: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
};
const bad = (overrides: Record<string, unknown>, ...patterns: RegExp[]) => fails({ overrides, where: "request" }, ...patterns);

test("with nothing set: HF's global defaults (greedy, top_k 50 when sampling, 20 new tokens)", () => {
  const c = resolveGenerationConfig({});
  const want: GenerationConfig = {
    do_sample: false, temperature: 1, top_k: 50, top_p: 1, min_p: null, typical_p: 1, repetition_penalty: 1,
    no_repeat_ngram_size: 0, max_new_tokens: null, max_length: null, min_new_tokens: null, eos_token_id: [],
    pad_token_id: null, stop_strings: [], seed: null,
  };
  assert.deepEqual(c, want);
  assert.deepEqual(defaultGenerationConfig(), want);
  assert.equal(maxNewTokens(c, 7, null), 20);
  // a folder without generation_config.json gives the same
  assert.deepEqual(resolveGenerationConfig({ modelDir: modelDir() }), want);
});

test("precedence: overrides > generation_config.json > config.json token ids > defaults", () => {
  const dir = modelDir({
    do_sample: true, temperature: 0.6, top_p: 0.9, eos_token_id: [128001, 128009], max_length: 4096,
    transformers_version: "4.45.0", _from_model_config: false, bos_token_id: 128000, use_cache: true,
    cache_implementation: "hybrid", num_beams: 1, length_penalty: 1.2, some_custom_key: "x",
  });
  const configJson = { eos_token_id: 2, pad_token_id: 0, bos_token_id: 1, vocab_size: 32000 };

  const fileOnly = resolveGenerationConfig({ modelDir: dir, configJson });
  assert.equal(fileOnly.top_p, 0.9);
  assert.equal(fileOnly.temperature, 0.6);
  assert.equal(fileOnly.do_sample, true);
  assert.equal(fileOnly.top_k, 50);                           // HF's default fills what the file does not set
  assert.deepEqual(fileOnly.eos_token_id, [128001, 128009]);  // the file's list, not config.json's id
  assert.equal(fileOnly.pad_token_id, 0);                     // the file has none: config.json's
  assert.equal(fileOnly.max_length, 4096);

  const over = resolveGenerationConfig({ modelDir: dir, configJson, overrides: { temperature: 0.3, top_p: null, eos_token_id: 7, top_k: 0 } });
  assert.equal(over.temperature, 0.3);
  assert.equal(over.top_p, 0.9);                              // null = not set: the file's value stays
  assert.deepEqual(over.eos_token_id, [7]);                   // an int becomes a list
  assert.equal(over.top_k, 0);                                // 0 (not null) turns the default off

  // no generation_config.json: config.json's ids; pad falls back to the first EOS id when nothing gives one
  const noFile = resolveGenerationConfig({ modelDir: modelDir(), configJson: { eos_token_id: [5, 6] } });
  assert.deepEqual(noFile.eos_token_id, [5, 6]);
  assert.equal(noFile.pad_token_id, 5);
  assert.equal(noFile.top_p, 1);
  // a multimodal config.json keeps its ids under text_config
  assert.deepEqual(resolveGenerationConfig({ configJson: { text_config: { eos_token_id: 9 } } }).eos_token_id, [9]);
});

test("overrides: strings from a command line are read as numbers, booleans, null and lists; dashes work", () => {
  const c = resolveGenerationConfig({ overrides: { "top-p": "0.9", do_sample: "true", temperature: "0.7", min_p: "null", eos_token_id: "[1, 2]", stop_strings: "###", "max-new-tokens": "64" } });
  assert.equal(c.top_p, 0.9);
  assert.equal(c.do_sample, true);
  assert.equal(c.temperature, 0.7);
  assert.equal(c.min_p, null);
  assert.deepEqual(c.eos_token_id, [1, 2]);
  assert.deepEqual(c.stop_strings, ["###"]);
  assert.equal(c.max_new_tokens, 64);
  assert.deepEqual(resolveGenerationConfig({ overrides: { stop_strings: ["a", "b"], seed: 2 ** 53 } }).stop_strings, ["a", "b"]);
  // the file is JSON: a string there is a type error, not a number
  fails({ modelDir: modelDir({ top_p: "0.9" }) }, /generation_config\.json: top_p = "0\.9" must be a number in \[0, 1\]/);
});

test("every validation error names the key, the value, where it came from and what to do", () => {
  bad({ do_sample: true, temperature: 0 }, /^request: temperature = 0 with do_sample true; for greedy decoding pass do_sample: false instead$/);
  assert.equal(resolveGenerationConfig({ overrides: { temperature: 0 } }).temperature, 0);   // greedy ignores it, as HF
  bad({ temperature: -1 }, /request: temperature = -1 must be a number > 0/);
  bad({ top_p: 1.5 }, /request: top_p = 1\.5 must be a number in \[0, 1\]; 1 disables top-p/);
  bad({ top_p: -0.1 }, /top_p = -0\.1 must be a number in \[0, 1\]/);
  bad({ min_p: 2 }, /min_p = 2 must be a number in \[0, 1\]/);
  bad({ typical_p: 0 }, /typical_p = 0 must be a number in \(0, 1\]/);
  bad({ typical_p: 1.5 }, /typical_p = 1\.5 must be a number in \(0, 1\]/);
  bad({ repetition_penalty: 0 }, /repetition_penalty = 0 must be a number > 0/);
  bad({ repetition_penalty: -1.1 }, /repetition_penalty = -1\.1 must be a number > 0/);
  bad({ top_k: -1 }, /top_k = -1 must be an integer >= 0; 0 disables top-k/);
  bad({ top_k: 2.5 }, /top_k = 2\.5 must be an integer >= 0/);
  bad({ no_repeat_ngram_size: -2 }, /no_repeat_ngram_size = -2 must be an integer >= 0/);
  bad({ max_new_tokens: 0 }, /max_new_tokens = 0 must be an integer >= 1/);
  bad({ max_new_tokens: 1.5 }, /max_new_tokens = 1\.5 must be an integer >= 1/);
  bad({ max_length: 0 }, /max_length = 0 must be an integer >= 1/);
  bad({ min_new_tokens: -1 }, /min_new_tokens = -1 must be an integer >= 0/);
  bad({ seed: -1 }, /seed = -1 must be an integer in \[0, 2\^53\]/);
  bad({ seed: 2 ** 53 + 2 }, /seed = 9007199254740994 must be an integer in \[0, 2\^53\]/);
  bad({ seed: 0.5 }, /seed = 0\.5 must be an integer/);
  bad({ do_sample: "yes" }, /do_sample = "yes" must be true or false/);
  bad({ eos_token_id: [1, "x"] }, /eos_token_id = \[1,"x"\] must be a token id or a list of token ids/);
  bad({ eos_token_id: -3 }, /eos_token_id = -3 must be a token id/);
  bad({ pad_token_id: 1.5 }, /pad_token_id = 1\.5 must be a token id/);
  bad({ stop_strings: "" }, /stop_strings = "" must be a non-empty string or a list of non-empty strings/);
  bad({ stop_strings: ["ok", 3] }, /stop_strings = \["ok",3\] must be a non-empty string/);
  bad({ temperature: Number.NaN }, /temperature = NaN must be a number/);
  // all problems at once
  bad({ top_p: 2, top_k: -1, bogus: 1 }, /top_p = 2/, /top_k = -1/, /unknown key "bogus"/);
  // a bad value in the file names the file; a do_sample from elsewhere is named too
  const dir = modelDir({ do_sample: true, temperature: 0.0 });
  fails({ modelDir: dir }, new RegExp(`${join(dir, "generation_config.json").replace(/[.\\/]/g, "\\$&")}: temperature = 0 with do_sample true`));
  assert.equal(resolveGenerationConfig({ modelDir: dir, overrides: { do_sample: false } }).do_sample, false);
  fails({ modelDir: dir, overrides: { temperature: 0 }, where: "req" }, /req: temperature = 0 with do_sample true \(from .*generation_config\.json\)/);
  fails({ modelDir: modelDir(undefined, "{ not json") }, /generation_config\.json: not valid JSON/);
  fails({ modelDir: modelDir([1, 2]) }, /generation_config\.json: must hold a JSON object/);
});

test("unknown override keys are refused with the closest valid key", () => {
  bad({ temprature: 0.7 }, /request: unknown key "temprature"; did you mean "temperature"\?/);
  bad({ max_new_token: 5 }, /did you mean "max_new_tokens"/);
  bad({ "top-P": 0.5 }, /unknown key "top-P"; did you mean "top_p"/);
  bad({ repetition_penality: 1.1 }, /did you mean "repetition_penalty"/);
  bad({ eos_token_ids: [1] }, /did you mean "eos_token_id"/);
  assert.equal(closestGenerationKey("stop-string"), "stop_strings");
  assert.equal(closestGenerationKey("seeds"), "seed");
  // keys only transformers cares about are ignored in the file but not accepted as options
  bad({ use_cache: true }, /"use_cache" only matters to transformers/);
});

test("HF features preftune does not implement are refused, unless set to the value that does nothing", () => {
  bad({ num_beams: 4 }, /^request: num_beams = 4 asks for beam search, which preftune does not implement; remove it or set num_beams: 1$/);
  bad({ num_return_sequences: 3 }, /num_return_sequences = 3 asks for several sequences per prompt/);
  bad({ penalty_alpha: 0.6 }, /penalty_alpha = 0\.6 asks for contrastive search/);
  bad({ min_length: 10 }, /min_length = 10 .*use min_new_tokens/);
  bad({ epsilon_cutoff: 3e-4 }, /epsilon_cutoff = 0\.0003 asks for epsilon sampling/);
  bad({ guidance_scale: 1.5 }, /guidance_scale = 1\.5 asks for classifier-free guidance/);
  assert.equal(resolveGenerationConfig({ overrides: { num_beams: 1, num_return_sequences: 1, penalty_alpha: null, guidance_scale: 1 } }).do_sample, false);
  // from the file: named, and an override with the no-op value clears it
  const dir = modelDir({ num_beams: 4, suppress_tokens: [1, 2] });
  fails({ modelDir: dir }, /generation_config\.json: num_beams = 4 asks for beam search, which preftune does not implement; override it with num_beams: 1/, /suppress_tokens = \[1,2\]/);
  assert.equal(resolveGenerationConfig({ modelDir: dir, overrides: { num_beams: 1, suppress_tokens: null } }).top_k, 50);
});

test("the option list covers exactly the GenerationConfig fields, each documented", () => {
  assert.deepEqual([...GENERATION_OPTION_KEYS].sort(), Object.keys(defaultGenerationConfig()).sort());
  for (const k of GENERATION_OPTION_KEYS) assert.ok(GENERATION_OPTIONS[k].doc.length > 10 && GENERATION_OPTIONS[k].type.length > 2, k);
  // every option key resolves to itself (the suggestion helper and the parser agree)
  for (const k of GENERATION_OPTION_KEYS) assert.equal(closestGenerationKey(k), k);
});

test("length rules: max_new_tokens wins, max_length is a total cap, 20 new by default, clamped to positions", () => {
  const c = (o: Partial<GenerationConfig>) => ({ ...defaultGenerationConfig(), ...o });
  assert.equal(maxNewTokens(c({}), 10, 4096), 20);
  assert.equal(maxNewTokens(c({}), 4090, 4096), 6);                          // HF clamps the default case
  assert.equal(maxNewTokens(c({ max_length: 15 }), 10, null), 5);           // a total: 15 - 10
  assert.equal(maxNewTokens(c({ max_new_tokens: 100, max_length: 15 }), 10, null), 100);
  assert.equal(maxNewTokens(c({ max_new_tokens: 100 }), 10, 50), 40);      // our core cannot pass the positions
  assert.equal(maxNewTokens(c({ max_new_tokens: 1 }), 49, 50), 1);
  // the file's max_length caps prompt + output
  const dir = modelDir({ max_length: 15 });
  assert.equal(maxNewTokens(resolveGenerationConfig({ modelDir: dir }), 10, 2048), 5);
  assert.equal(maxNewTokens(resolveGenerationConfig({ modelDir: dir, overrides: { max_new_tokens: 64 } }), 10, 2048), 64);
  assert.throws(() => maxNewTokens(c({ max_length: 10 }), 10, null), (e: Error) => e instanceof GenerationConfigError &&
    /the prompt has 10 tokens but max_length = 10 caps prompt \+ output together.*set max_new_tokens instead/.test(e.message));
  assert.throws(() => maxNewTokens(c({ max_new_tokens: 5 }), 50, 50), /the prompt has 50 tokens, which fills the model's max_position_embeddings = 50; shorten the prompt/);
  assert.throws(() => maxNewTokens(c({}), 60, 50), /max_position_embeddings = 50/);
});
