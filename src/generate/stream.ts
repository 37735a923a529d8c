// Incremental detokenization for streaming, with stop strings: each pushed token id yields the text that is now
// final. Decoding follows TGI's prefix/read offsets (a short window with left context, so SentencePiece and
// byte-level BPE decode exactly as the whole sequence would, without re-decoding everything each step). Text is
// held back while it ends in U+FFFD (an incomplete UTF-8 character) or could be the start of a stop string.
// Not the decoding loop (engine.ts) and not EOS handling: the caller stops before pushing an EOS id.
//
// Stop strings: HF fires a stop string only when it ends inside the newly appended token. Checked at every step,
// that is the same as "the first occurrence anywhere in the generated text", which is what is matched here (in
// the generated text only: a stop string begun in the prompt is not seen, as in OpenAI's API). The text is cut
// where that occurrence starts; the stop string and everything after it are never emitted.

const REPLACEMENT = "\ufffd";

/** The longest suffix of `text` that is a proper prefix of one of `stops` (it may still become a stop string). */
export function partialStopLength(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
      if (text.endsWith(s.slice(0, k))) { best = k; break; }
    }
  }
  return best;
}

/** Where the earliest stop string starts in `text`, looking only at occurrences ending at or after `from`; -1 if none. */
function findStop(text: string, stops: readonly string[], from: number): number {
  let at = -1;
  for (const s of stops) {
    const i = text.indexOf(s, Math.max(0, from - s.length));
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

export interface StreamStep {
  delta: string;     // text that became final with this token ("" when nothing did)
  stopped: boolean;  // a stop string appeared: push no more tokens
}

export class TextStream {
  private readonly ids: number[] = [];
  private prefix = 0;            // TGI prefix_offset: the window starts here (left context)
  private read = 0;              // TGI read_offset: ids before this are in `committed`
  private prefixText = "";       // decode(ids[prefix:read])
  private committed = "";        // decoded text that no later token can change
  private checked = 0;           // committed[0:checked] holds no stop string
  private sent = 0;              // committed[0:sent] was emitted
  private stopped = false;
  private finished = false;      // flush() was called
  private readonly stops: readonly string[];

  /**
   * @param decode ids -> text for generated tokens (e.g. tokenizer.decode(ids, true)); never called with [].
   * @param stopStrings strings that end generation; empty strings are ignored.
   */
  constructor(private readonly decode: (ids: number[]) => string, stopStrings: readonly string[]) {
    this.stops = stopStrings.filter((s) => s.length > 0);
  }

  private decodeRange(from: number, to = this.ids.length): string {
    return from >= to ? "" : this.decode(this.ids.slice(from, to));
  }

  /** Adds one generated token; returns the newly final text and whether a stop string was reached. */
  push(id: number): StreamStep {
    if (this.finished) throw new Error("TextStream.push after flush(): start a new TextStream for a new sequence");
    if (this.stopped) return { delta: "", stopped: true };
    this.ids.push(id);
    const windowText = this.decodeRange(this.prefix);
    if (windowText.length <= this.prefixText.length) return { delta: "", stopped: false };
    const piece = windowText.slice(this.prefixText.length);
    const pending = piece.endsWith(REPLACEMENT);
    if (pending) {
      // TGI waits for the character to complete; the text before the trailing U+FFFD run is already final,
      // so a stop string that ends there is caught at this token, as HF would.
      const stable = this.committed + piece.replace(/\ufffd+$/, "");
      const at = findStop(stable, this.stops, this.checked);
      if (at >= 0) return this.stopAt(stable, at);
      return { delta: "", stopped: false };
    }
    this.committed += piece;
    this.prefix = this.read;
    this.read = this.ids.length;
    this.prefixText = this.decodeRange(this.prefix, this.read);
    const at = findStop(this.committed, this.stops, this.checked);
    if (at >= 0) return this.stopAt(this.committed, at);
    this.checked = this.committed.length;
    const safe = Math.max(this.sent, this.committed.length - partialStopLength(this.committed, this.stops));
    const delta = this.committed.slice(this.sent, safe);
    this.sent = safe;
    return { delta, stopped: false };
  }

  private stopAt(text: string, at: number): StreamStep {
    this.committed = text.slice(0, at);
    this.stopped = true;
    const delta = this.committed.slice(this.sent);   // empty if (never expected) the stop begins in sent text
    this.sent = Math.max(this.sent, this.committed.length);
    return { delta, stopped: true };
  }

  /** Ends the sequence: returns what was held back (an unfinished character, a stop-string prefix). */
  flush(): string {
    if (this.finished) return "";
    this.finished = true;
    if (this.stopped) return "";
    const piece = this.decodeRange(this.prefix).slice(this.prefixText.length);
    const text = this.committed + piece;
    const at = findStop(text, this.stops, this.checked);
    if (at >= 0) return this.stopAt(text, at).delta;
    this.committed = text;
    const delta = text.slice(this.sent);
    this.sent = text.length;
    return delta;
  }

  /**
   * The generated text: after a stop, the text before the stop string; after flush(), everything; while
   * streaming, what is final so far plus the undecided tail. After flush() it equals the concatenation of all
   * deltas and the flush, and for decoders that never rewrite earlier text also decode(all ids) cut at the stop.
   */
  get text(): string {
    if (this.stopped || this.finished) return this.committed;
    return this.committed + this.decodeRange(this.prefix).slice(this.prefixText.length);
  }

  /** Whether a stop string was reached. */
  get isStopped(): boolean {
    return this.stopped;
  }
}
