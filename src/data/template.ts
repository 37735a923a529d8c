// The prompt/completion split of conversational examples, as TRL's apply_chat_template does it: the prompt is
// rendered with the generation prompt, each prompt+completion is rendered whole, and the completions are what
// follows the prompt. Not tokenization: this works on strings only.
import type { Message } from "./formats.ts";
import type { Tokenizer } from "./tokenizer.ts";

export interface SplitText {
  prompt: string;
  completions: string[];
  /** The generation prompt was not a prefix of the whole rendering and the prompt was cut back to the common prefix. */
  reset: boolean;
}

export class TemplateSplitError extends Error {}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

function clip(s: string, from: number, to: number): string {
  const a = Math.max(0, from), b = Math.min(s.length, to);
  return `${a > 0 ? "…" : ""}${JSON.stringify(s.slice(a, b))}${b < s.length ? "…" : ""}`;
}

/**
 * Renders `prompt` (with add_generation_prompt after a user/tool turn, continue_final_message after an
 * assistant turn) and `prompt + completion` for each completion, and splits them.
 *
 * TRL resets the prompt to the longest common prefix of the renderings, for templates that put extra text
 * in the generation prompt (DeepSeek-R1's "<think>\n"). That is accepted here only when the prompt messages
 * themselves render the same way in both (the rendering without generation prompt is a prefix of the whole);
 * otherwise the template rewrites earlier turns depending on what follows, no prompt/completion boundary
 * exists, and this throws showing both renderings.
 */
export function splitConversation(
  tok: Tokenizer,
  prompt: Message[],
  completions: Message[][],
  extra: { tools?: unknown[]; kwargs?: Record<string, unknown> } = {},
): SplitText {
  const last = prompt[prompt.length - 1].role;
  const base = { tools: extra.tools, kwargs: extra.kwargs };
  const cont = last === "assistant";
  const p = tok.applyChatTemplate(prompt, { ...base, addGenerationPrompt: !cont, continueFinalMessage: cont });
  const full = completions.map((c) => tok.applyChatTemplate([...prompt, ...c], base));
  let n = p.length;
  for (const f of full) n = Math.min(n, commonPrefixLength(p, f));
  let reset = false;
  if (n < p.length) {
    const plain = cont ? p : tok.applyChatTemplate(prompt, { ...base, addGenerationPrompt: false });
    const worst = full.findIndex((f) => commonPrefixLength(p, f) === n);
    if (n < plain.length) {
      const f = full[worst];
      throw new TemplateSplitError(
        `the chat template (${tok.chatTemplateSource}) renders the prompt differently on its own than inside the whole conversation, ` +
        `so there is no prompt/completion boundary. They differ at character ${n}:\n` +
        `  prompt + generation prompt: ${clip(p, n - 120, n + 80)}\n` +
        `  prompt + completion:        ${clip(f, n - 120, n + 80)}`,
      );
    }
    reset = true;
  }
  const out = full.map((f) => f.slice(n));
  if (out.some((c) => c.length === 0)) {
    throw new TemplateSplitError(`the chat template (${tok.chatTemplateSource}) renders nothing for the completion`);
  }
  return { prompt: p.slice(0, n), completions: out, reset };
}
