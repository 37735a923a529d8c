// The part of a tokenizer that runs untrusted work: encoding text with tokenizer.json's normalizer,
// pre-tokenizer regexes and model, decoding ids, and rendering chat templates with @huggingface/jinja. One
// engine is built from plain data (EngineSpec), so the same code runs in this thread or in the sandbox
// worker (sandbox.ts), which can be stopped when a call runs past its time budget. Renders also check
// their own time and output size as they go (a template loop ends as a BudgetError, not a hang or a heap
// exhausted by a 4 GB string). Not the Tokenizer interface (tokenizer.ts) and not TRL's BOS/EOS rules.
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Environment, Interpreter, Template } from "@huggingface/jinja";

/** Everything needed to build an engine; structured-cloneable (it is posted to the worker). */
export interface EngineSpec {
  tokenizerJson: string;                 // tokenizer.json's text
  config: Record<string, unknown>;       // tokenizer_config.json (parsed)
  templates: [name: string, text: string][];
  /** transformers' Llama/Gemma classes: BOS/EOS from add_bos_token/add_eos_token instead of the post-processor. */
  flagged: { addBos: boolean; addEos: boolean; bosId: number | null; eosId: number | null } | null;
}

/** Limits of one render: a deadline (performance.now() ms) and the most characters it may produce. */
export interface RenderLimits {
  deadline: number;
  maxChars: number;
}

/** A call ran past its time or size budget. `what` says which. */
export class BudgetError extends Error {
  constructor(readonly what: "time" | "size" | "range", message: string) { super(message); }
}

/** The chat template text does not parse (reported against the template's source). */
export class TemplateParseError extends Error {}

/** `range()` in templates builds a list: more items than this is a template gone wrong. */
export const MAX_RANGE_ITEMS = 1_000_000;

// ---- render budget: checks inside @huggingface/jinja's interpreter ----

let active: (RenderLimits & { chars: number; evals: number }) | null = null;
let patched = false;

/**
 * Wraps the interpreter's evaluate and evaluateBlock (a deadline check every 256 calls of either) and makes
 * evaluateBlock count each block's output toward the size limit (nested blocks count again, so the limit is on
 * work, not only on the final text); outside a budgeted render the wrappers do nothing.
 */
function patchInterpreter(): void {
  if (patched) return;
  patched = true;
  const proto = Interpreter.prototype as unknown as {
    global: { setVariable(name: string, value: unknown): void };
    run(program: unknown): unknown;
    evaluate(node: unknown, env: unknown): unknown;
    evaluateBlock(nodes: unknown, env: unknown): { value: string };
  };
  // range() as a template value: converted once through a scratch environment
  const scratch = new Environment() as unknown as { set(n: string, v: unknown): void; variables: Map<string, unknown> };
  scratch.set("range", limitedRange);
  const rangeValue = scratch.variables.get("range");
  const run = proto.run;
  proto.run = function (program) {
    if (active) this.global.setVariable("range", rangeValue);
    return run.call(this, program);
  };
  const tick = (a: NonNullable<typeof active>) => {
    if ((++a.evals & 255) === 0 && performance.now() > a.deadline) throw new BudgetError("time", "the chat template ran past its time budget");
  };
  const evaluate = proto.evaluate;
  proto.evaluate = function (node, env) {
    if (active) tick(active);
    return evaluate.call(this, node, env);
  };
  const evaluateBlock = proto.evaluateBlock;
  proto.evaluateBlock = function (nodes, env) {
    if (active) tick(active);   // loops over empty bodies evaluate no node, but each iteration is a block
    const r = evaluateBlock.call(this, nodes, env);
    const a = active;
    if (a && typeof r?.value === "string") {
      a.chars += r.value.length;
      if (a.chars > a.maxChars) throw new BudgetError("size", `the chat template produced more than ${a.maxChars} characters`);
    }
    return r;
  };
}

/** jinja's range() with a cap on the list it builds (the built-in would allocate range(1e9) happily). */
function limitedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) { stop = start; start = 0; }
  if (typeof start !== "number" || typeof stop !== "number" || typeof step !== "number") throw new Error("range() takes numbers");
  if (step === 0) throw new Error("range() step must not be zero");
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (!(n <= MAX_RANGE_ITEMS)) throw new BudgetError("range", `range(${start}, ${stop}, ${step}) would build ${n} items (the limit is ${MAX_RANGE_ITEMS})`);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return out;
}

/** A string error message for anything thrown, with stack overflows and string-length errors named. */
export function describeThrown(e: unknown): string {
  if (e instanceof RangeError) {
    if (/call stack/i.test(e.message)) return "ran out of stack (the data or the template nests too deeply)";
    if (/string length|string longer/i.test(e.message)) return "built a string longer than JavaScript allows (over 512 MiB)";
  }
  return e instanceof Error ? e.message : String(e);
}

export interface Engine {
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: number[], skipSpecialTokens: boolean): string;
  /** Renders template `name` (marked: with {% generation %} tags turned into marker blocks, see tokenizer.ts). */
  render(name: string, marked: boolean, vars: Record<string, unknown>, limits: RenderLimits): string;
}

/** Builds an engine in this thread. `hf` reuses an already built tokenizer (in-thread engines). */
export function buildEngine(spec: EngineSpec, hf?: HfTokenizer): Engine {
  patchInterpreter();
  const tok = hf ?? new HfTokenizer(JSON.parse(spec.tokenizerJson), spec.config);
  const templates = new Map(spec.templates);
  const compiled = new Map<string, Template>();
  const f = spec.flagged;
  return {
    encode(text, addSpecialTokens) {
      if (!f || !addSpecialTokens) return tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      return [...(f.addBos ? [f.bosId!] : []), ...ids, ...(f.addEos ? [f.eosId!] : [])];
    },
    decode(ids, skipSpecialTokens) {
      return tok.decode(ids, { skip_special_tokens: skipSpecialTokens });
    },
    render(name, marked, vars, limits) {
      const key = marked ? `${name}\u0000marked` : name;
      let t = compiled.get(key);
      if (!t) {
        const text = templates.get(name);
        if (text === undefined) throw new Error(`no chat template named "${name}"`);
        try { t = new Template(marked ? markGenerationBlocks(text) : text); } catch (e) { throw new TemplateParseError(describeThrown(e)); }
        compiled.set(key, t);
      }
      if (active) throw new Error("nested template render");
      active = { ...limits, chars: 0, evals: 0 };
      try {
        const out = t.render(vars);
        if (out.length > limits.maxChars) throw new BudgetError("size", `the chat template produced ${out.length} characters, more than the ${limits.maxChars} allowed`);
        return out;
      } finally {
        active = null;
      }
    },
  };
}

// ---- {% generation %} blocks (transformers' assistant masks) ----

const GEN_TAG = /{%(-?)\s*(end)?generation\s*(-?)%}/g;
export const GEN_OPEN = "\uE000", GEN_CLOSE = "\uE001";   // private-use characters: never produced by a template

/** Whether a chat template marks assistant text with {% generation %} blocks (transformers' assistant masks). */
export function hasGenerationBlocks(template: string): boolean {
  return new RegExp(GEN_TAG.source).test(template);
}

/**
 * The template with each {% generation %} / {% endgeneration %} tag replaced by a block that prints a marker
 * character and strips whitespace as the tag's "-" asked (the jinja library drops these tags otherwise).
 */
export function markGenerationBlocks(template: string): string {
  return template.replace(GEN_TAG, (_, l: string, end: string | undefined, r: string) => `{%${l} if true %}${end ? GEN_CLOSE : GEN_OPEN}{% endif ${r}%}`);
}
