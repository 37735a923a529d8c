// `preftune serve`: loads a model folder (plus an optional PEFT adapter) and serves it over an OpenAI-compatible
// HTTP API until Ctrl-C. Argument handling and printing only: HTTP and scheduling are src/serve/server.ts, the
// wire format src/serve/openai.ts, decoding src/generate/engine.ts.
import type { Command } from "commander";
import { Generator, loadGenerationModel } from "../generate/engine.ts";
import { startServer } from "../serve/server.ts";

const SERVE_HELP = `
Endpoints: POST /v1/chat/completions, POST /v1/completions (both with "stream": true), GET /v1/models, GET /health.
Requests that arrive while a batch is decoding wait and then run together, up to --max-batch at a time; when
--max-queue requests are already waiting, new ones get 429 (OpenAI clients retry those by themselves).

Generation follows Hugging Face generate with the model's generation_config.json as the defaults. A request's
temperature 0 means greedy decoding; another temperature turns sampling on; fields it leaves out keep the
model's defaults, and max_tokens left out means "up to the model's context length". Extras beyond the OpenAI
API: top_k, min_p, repetition_penalty. Refused with a 400 that says why: n > 1, presence/frequency penalties,
logprobs, tools, non-text response formats.

Point clients at it:
  OpenAI npm / Python client:  baseURL (base_url) = http://127.0.0.1:8000/v1, any API key, model = the model id
  FastChat gen_api_answer.py:  --model <model id> --openai-api-base http://127.0.0.1:8000/v1
  curl http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model": "<model id>", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'

The model id is what GET /v1/models lists and what requests must send as "model": --model-id, else the
adapter folder's name when --adapter is given, else the model folder's name. Ctrl-C stops the server: running
requests end, waiting ones get 503, and the port is freed.
`;

interface ServeCliOptions {
  model: string;
  adapter?: string;
  host: string;
  port: string;
  modelId?: string;
  maxBatch: string;
  maxQueue: string;
  threads: string;
}

function wholeNumber(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** Resolves when the process gets SIGINT or SIGTERM; a second signal exits at once. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    const stop = (sig: NodeJS.Signals) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      process.once("SIGINT", () => process.exit(130));
      process.once("SIGTERM", () => process.exit(143));
      resolve(sig);
    };
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
}

async function runServe(o: ServeCliOptions): Promise<void> {
  const port = wholeNumber("port", o.port, 0);
  if (port > 65535) throw new Error(`--port must be at most 65535, got ${port}`);
  const maxBatch = wholeNumber("max-batch", o.maxBatch, 1);
  const maxQueue = wholeNumber("max-queue", o.maxQueue, 0);
  const threads = wholeNumber("threads", o.threads, 0);
  console.error(`loading ${o.model}${o.adapter ? ` with the adapter ${o.adapter}` : ""} ...`);
  const loaded = await loadGenerationModel(o.model, { adapter: o.adapter ?? null, threads });
  try {
    const server = await startServer({
      generator: new Generator(loaded), loaded, host: o.host, port, modelId: o.modelId, maxBatch, maxQueue,
      log: (line) => console.error(`${new Date().toISOString()} ${line}`),
    });
    console.log(`preftune serve: model "${server.modelId}" at ${server.url}/v1 (OpenAI-compatible; Ctrl-C to stop)`);
    const sig = await untilSignal();
    console.error(`${sig}: stopping the server ...`);
    await server.close();
  } finally {
    loaded.dispose();
  }
}

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("serve a model over an OpenAI-compatible HTTP API (chat and text completions, streaming)")
    .requiredOption("--model <dir>", "Hugging Face model folder (or a PEFT adapter folder whose base_model_name_or_path is a local folder)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder applied on top of --model (default: none)")
    .option("--host <host>", "address to listen on; 0.0.0.0 makes it reachable from other machines", "127.0.0.1")
    .option("--port <n>", "TCP port (0: any free port, printed at start)", "8000")
    .option("--model-id <name>", "the model id clients send as \"model\" (default: the adapter's, else the model's folder name)")
    .option("--max-batch <n>", "requests decoded together in one batch", "8")
    .option("--max-queue <n>", "requests allowed to wait for a batch before new ones get 429", "256")
    .option("--threads <n>", "native threads (0: all cores)", "0")
    .addHelpText("after", SERVE_HELP)
    .action(async (o: ServeCliOptions) => {
      await runServe(o);
    });
}
