// The sandbox worker (see sandbox.ts): builds engines from the specs it is sent and answers encode, decode
// and render calls, one at a time, in order; each answer is posted, then the shared counter is bumped and
// notified so the blocked caller wakes. Not an API: only sandbox.ts talks to it.
import { workerData, type MessagePort } from "node:worker_threads";
import { BudgetError, buildEngine, describeThrown, TemplateParseError, type Engine } from "./engine.ts";
import type { FailureKind, SandboxReply, SandboxRequest } from "./sandbox.ts";

const { port, flag: shared } = workerData as { port: MessagePort; flag: SharedArrayBuffer };
const flag = new Int32Array(shared);
const engines = new Map<string, Engine>();

function handle(m: SandboxRequest): SandboxReply {
  try {
    if (m.op === "load") {
      try {
        engines.set(m.key, buildEngine(m.spec));
      } catch (e) {
        return { seq: m.seq, ok: false, kind: "load", message: describeThrown(e) };
      }
      return { seq: m.seq, ok: true, value: null };
    }
    const engine = engines.get(m.key);
    if (!engine) return { seq: m.seq, ok: false, kind: "load", message: "the tokenizer was not loaded in the sandbox" };
    if (m.op === "encode") return { seq: m.seq, ok: true, value: engine.encode(m.text, m.special) };
    if (m.op === "decode") return { seq: m.seq, ok: true, value: engine.decode(m.ids, m.skip) };
    const value = engine.render(m.name, m.marked, m.vars, { deadline: performance.now() + m.budgetMs, maxChars: m.maxChars });
    return { seq: m.seq, ok: true, value };
  } catch (e) {
    const kind: FailureKind = e instanceof BudgetError ? e.what : e instanceof TemplateParseError ? "parse" : "error";
    return { seq: m.seq, ok: false, kind, message: describeThrown(e) };
  }
}

port.on("message", (m: SandboxRequest) => {
  let reply = handle(m);
  try {
    port.postMessage(reply);
  } catch (e) {
    reply = { seq: m.seq, ok: false, kind: "error", message: `cannot send the result back (${describeThrown(e)})` };
    port.postMessage(reply);
  }
  Atomics.store(flag, 0, m.seq);
  Atomics.notify(flag, 0);
});
