// A stand-in OpenAI-compatible judge for tests: a node:http server on 127.0.0.1 whose every reply comes from a
// script (status, text, delay, headers, or hold until released). Records each request. Not a test itself.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface JudgeRequest { body: any; headers: IncomingMessage["headers"]; path: string; system: string; user: string }

export type Reply =
  | { text: string; delayMs?: number }                                           // 200 with this message content
  | { status: number; body?: string; headers?: Record<string, string>; delayMs?: number }
  | { hold: true };                                                              // answer only after release()

export interface JudgeServer {
  url: string;
  requests: JudgeRequest[];
  release(): void;
  close(): Promise<void>;
}

function completion(text: string): string {
  return JSON.stringify({ id: "chatcmpl-test", object: "chat.completion", created: 1, model: "judge", choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }] });
}

export async function startJudgeServer(script: (req: JudgeRequest, n: number) => Reply): Promise<JudgeServer> {
  const requests: JudgeRequest[] = [];
  const held: (() => void)[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    req.on("data", (c) => { raw += c; });
    req.on("end", () => {
      const body = JSON.parse(raw);
      const r: JudgeRequest = { body, headers: req.headers, path: req.url ?? "", system: body.messages?.[0]?.content ?? "", user: body.messages?.[1]?.content ?? "" };
      requests.push(r);
      const reply = script(r, requests.length);
      const send = () => {
        if (res.destroyed) return;
        if ("text" in reply) { res.writeHead(200, { "content-type": "application/json" }); res.end(completion(reply.text)); }
        else if ("status" in reply) { res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers }); res.end(reply.body ?? JSON.stringify({ error: { message: `scripted ${reply.status}`, type: "server_error", param: null, code: null } })); }
      };
      if ("hold" in reply) held.push(() => { if (res.destroyed) return; res.writeHead(200, { "content-type": "application/json" }); res.end(completion("Rating: [[5]]")); });
      else if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    release: () => { for (const h of held.splice(0)) h(); },
    close: () => new Promise<void>((r) => { for (const h of held.splice(0)) h(); for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
