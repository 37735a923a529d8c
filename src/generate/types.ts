// The shared vocabulary of generation: Hugging Face GenerationConfig fields (HF's snake_case names), what a
// request asks for and what comes back. Types only: the decoding loop is engine.ts, the logits processors and
// warpers sampling.ts, defaults and validation config.ts, streaming detokenization stream.ts.

/** HF GenerationConfig, resolved: every field has its effective value (see config.ts for the precedence). */
export interface GenerationConfig {
  do_sample: boolean;               // false: greedy (argmax); warpers run only when true
  temperature: number;              // > 0 when sampling; 1.0 adds no warper
  top_k: number;                    // 0 disables (HF default 50, active whenever sampling)
  top_p: number;                    // 1.0 disables
  min_p: number | null;             // null disables
  typical_p: number;                // 1.0 disables
  repetition_penalty: number;       // 1.0 disables; applies in greedy mode too
  no_repeat_ngram_size: number;     // 0 disables
  max_new_tokens: number | null;    // wins over max_length when set
  max_length: number | null;        // total cap including the prompt (HF default 20 + prompt when nothing is set)
  min_new_tokens: number | null;
  eos_token_id: number[];           // any member ends the row (one or a list in the file)
  pad_token_id: number | null;
  stop_strings: string[];           // end the row when one ends inside the newly appended token
  seed: number | null;              // null: a fresh seed per call
}

export type FinishReason = "eos" | "stop" | "length";

/** One sequence to continue: prompt token ids (already templated and tokenized). */
export interface GenerateRequest {
  promptIds: number[];
  config: GenerationConfig;
  /** Called with each piece of newly decodable text (stop strings and incomplete UTF-8 held back). */
  onText?: (delta: string) => void;
  /** Checked before every step: true stops this row (finish reason "length" is not claimed: "abort"). */
  aborted?: () => boolean;
}

export interface GenerateResult {
  completion: string;               // decoded new tokens; a matched stop string and what follows are cut
  completionIds: number[];          // new token ids, the EOS / stop-string tokens included (as HF keeps them)
  finishReason: FinishReason | "abort";
  promptTokens: number;
  completionTokens: number;
  timeToFirstTokenMs: number;       // from the call to the first sampled token (the prefill)
  seconds: number;
  tokensPerSecond: number;          // completion tokens / seconds after the first token
}
