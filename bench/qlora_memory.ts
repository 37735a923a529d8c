// Peak memory of QLoRA training on a 7B model: a random model with Mistral-7B-v0.1's config.json (hidden 4096,
// 32 layers, 32 heads / 8 KV heads, intermediate 14336, vocab 32000, untied) written as bf16 safetensors shards
// (~14.5 GB) into a scratch folder, then, in a child process (so the peak RSS is the run's alone), loaded with
// load_in_4bit (nf4, double quantization; embeddings, norms and lm_head in bf16 as torch_dtype bfloat16 keeps them)
// and trained one ORPO step with LoRA r = 16 on all seven projections at batch 1 pair x 512 tokens per sequence
// (prompt 256 + completion 256). Prints the load time, seconds per step and peak RSS, and what the same step needs
// without 4-bit (fp32 and bf16-held bases; computed, not run: they do not fit a 24 GiB machine or barely do).
// Usage: node --import tsx bench/qlora_memory.ts [--dir DIR] [--keep] [--layers N] [--threads N]
//   --dir: where the shards go (default a new folder under the OS temp dir, deleted afterwards unless --keep; an
//   existing folder with the same config is reused); --layers: fewer layers, for a quick check of the harness.
// Not a test and not a speed comparison: the machine is shared, so the seconds are indicative only.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, LORA_TARGETS, setNumThreads } from "../src/core/native.ts";
import { collatePairs } from "../src/data/collate.ts";
import { buildParamTable, readModelDir } from "../src/models/checkpoint.ts";
import { parseConfig } from "../src/models/config.ts";
import { initLora } from "../src/models/peft.ts";
import { loadQuantizedModel, quantizedWeightBytes } from "../src/models/quantize.ts";
import { encodeHeader, type TensorToWrite } from "../src/models/safetensors.ts";
import { pairedStep } from "../src/train/objectives.ts";
import { writeNewFile } from "../src/util/durable.ts";

const MISTRAL_7B = {
  architectures: ["MistralForCausalLM"], model_type: "mistral", bos_token_id: 1, eos_token_id: 2, hidden_act: "silu",
  hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768,
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0,
  sliding_window: 4096, tie_word_embeddings: false, torch_dtype: "bfloat16", use_cache: true, vocab_size: 32000,
};
const SHARD_BYTES = 5_000_000_000;
const GiB = 1024 ** 3;
const SEQ_PROMPT = 256, SEQ_COMPLETION = 256;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * Random bf16 bits for a weight: sign, an exponent for magnitudes 2^-9 .. 2^-6 and a random mantissa (about the
 * spread of a trained 7B's weights; the values only need to be finite and varied). Norm weights are 1.
 */
function fillRandomBf16(out: Uint16Array, state: { s: number }, ones: boolean): void {
  if (ones) { out.fill(0x3f80); return; }
  let s = state.s;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;   // xorshift32
    const r = s >>> 0;
    out[i] = ((r >>> 31) << 15) | ((127 - 9 + ((r >>> 8) & 3)) << 7) | (r & 0x7f);
  }
  state.s = s;
}

/** config.json, model-0000i-of-0000n.safetensors (bf16, at most SHARD_BYTES each) and the index, streamed. */
function writeModel(dir: string, configJson: Record<string, unknown>): void {
  for (const f of ["config.json", "model.safetensors.index.json"]) rmSync(join(dir, f), { force: true });
  const table = buildParamTable(parseConfig(configJson, "config.json"));
  const shards: (typeof table)[] = [[]];
  let bytes = 0;
  for (const p of table) {
    if (bytes > 0 && bytes + 2 * p.size > SHARD_BYTES) { shards.push([]); bytes = 0; }
    shards[shards.length - 1].push(p);
    bytes += 2 * p.size;
  }
  const n = String(shards.length).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  const chunk = new Uint16Array(1 << 22);
  const state = { s: 0x9e3779b9 };
  shards.forEach((group, k) => {
    const file = `model-${String(k + 1).padStart(5, "0")}-of-${n}.safetensors`;
    const tensors: TensorToWrite[] = group.map((p) => ({ name: p.name, dtype: "BF16", shape: p.shape, data: { length: p.size } as unknown as Float32Array }));
    const { header } = encodeHeader(tensors, { format: "pt" });
    const fd = openSync(join(dir, file), "w");
    try {
      writeSync(fd, header);
      for (const p of group) {
        for (let s = 0; s < p.size; s += chunk.length) {
          const part = chunk.subarray(0, Math.min(chunk.length, p.size - s));
          fillRandomBf16(part, state, p.shape.length === 1);
          writeSync(fd, new Uint8Array(part.buffer, 0, part.byteLength));
        }
        weightMap[p.name] = file;
      }
    } finally {
      closeSync(fd);
    }
    process.stderr.write(`wrote ${file}\n`);
  });
  const total = table.reduce((s, p) => s + 2 * p.size, 0);
  writeNewFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n");
  writeNewFile(join(dir, "config.json"), JSON.stringify(configJson, null, 2) + "\n");
}

const rss = () => process.resourceUsage().maxRSS * 1024;   // bytes, peak so far

/** The measured run (child process): load 4-bit, one ORPO step with LoRA r=16 on all seven projections. */
function child(dir: string): void {
  const threads = Number(arg("threads") ?? 0);
  if (threads > 0) setNumThreads(threads);
  const report = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + "\n");
  const t0 = performance.now();
  const { config } = readModelDir(dir);
  const model = loadQuantizedModel(dir, config, { quantType: "nf4", doubleQuant: true }, "bf16");
  const loadS = (performance.now() - t0) / 1000;
  report({ phase: "loaded", load_seconds: loadS, weight_bytes: model.weightBytes, peak_rss: rss() });
  const lora = model.attachLora({ r: 16, loraAlpha: 16, useRslora: false, targetModules: [...LORA_TARGETS], loraDropout: 0 });
  initLora(lora, 42);
  const opt = new AdamW(lora, { lr: 8e-6, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  let s = 12345;
  const ids = (n: number) => Array.from({ length: n }, () => 3 + ((s = (s * 1103515245 + 12345) >>> 0) % (config.vocabSize - 3)));
  const pb = collatePairs([{ prompt_ids: ids(SEQ_PROMPT), chosen_ids: ids(SEQ_COMPLETION), rejected_ids: ids(SEQ_COMPLETION) }], { padTokenId: 0 });
  const t1 = performance.now();
  lora.zeroGrad();
  const out = pairedStep(model, { kind: "none" }, pb, { method: "orpo", beta: 0.1 }, { backward: true, lossScale: 1 });
  const gradNorm = lora.clipGradNorm(1.0);
  opt.update();
  const stepS = (performance.now() - t1) / 1000;
  report({ phase: "stepped", step_seconds: stepS, loss: out.loss, grad_norm: gradNorm, tokens: pb.batch.lengths.reduce((a, b) => a + b, 0), adapter_params: lora.numParameters, peak_rss: rss() });
  model.free();
}

function main(): void {
  const layers = Number(arg("layers") ?? MISTRAL_7B.num_hidden_layers);
  const configJson = { ...MISTRAL_7B, num_hidden_layers: layers };
  const given = arg("dir");
  const dir = given ?? mkdtempSync(join(tmpdir(), "preftune-qlora-7b-"));
  const keep = process.argv.includes("--keep") || given !== undefined;
  mkdirSync(dir, { recursive: true });
  try {
    const cfgFile = join(dir, "config.json");
    if (!existsSync(cfgFile) || readFileSync(cfgFile, "utf8") !== JSON.stringify(configJson, null, 2) + "\n") {
      const t = performance.now();
      writeModel(dir, configJson);
      process.stderr.write(`random ${layers}-layer Mistral-7B-shaped model written to ${dir} in ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
    }
    const self = fileURLToPath(import.meta.url);
    const r = spawnSync(process.execPath, ["--import", "tsx", self, "--child", dir, ...(arg("threads") ? ["--threads", arg("threads")!] : [])], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    const lines = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, number>);
    const loaded = lines.find((l) => l.phase as unknown === "loaded"), stepped = lines.find((l) => l.phase as unknown === "stepped");
    const table = buildParamTable(parseConfig(configJson, "config.json"));
    const params = table.reduce((s, p) => s + p.size, 0);
    const q = quantizedWeightBytes(table, { quantType: "nf4", doubleQuant: true }, "bf16");
    const quantized = table.filter((p) => p.quant4).reduce((s, p) => s + p.size, 0);
    // what the same step keeps without 4-bit: the weights, plus the activations of 1,024 tokens (measured step's
    // activations are the peak minus the 4-bit weights; a full-precision base also keeps every layer's gate|up)
    const tokens = 2 * (SEQ_PROMPT + SEQ_COMPLETION);
    const gu = 4 * (layers - 1) * tokens * 2 * MISTRAL_7B.intermediate_size;
    const act = stepped ? stepped.peak_rss - q : NaN;
    const fmt = (b: number) => `${(b / GiB).toFixed(2)} GiB`;
    console.log(`QLoRA memory benchmark: Mistral-7B shape (${layers} layers, ${(params / 1e9).toFixed(2)}B parameters, ${(quantized / 1e9).toFixed(2)}B of them quantized), nf4 + double quantization, LoRA r=16 on all seven projections, ORPO, 1 pair x ${SEQ_PROMPT + SEQ_COMPLETION} tokens per sequence (${tokens} tokens)`);
    if (loaded) console.log(`  load + quantize: ${loaded.load_seconds.toFixed(1)} s; weights in memory ${fmt(loaded.weight_bytes)} (peak RSS after load ${fmt(loaded.peak_rss)})`);
    if (stepped) console.log(`  one ORPO step: ${stepped.step_seconds.toFixed(1)} s (loss ${stepped.loss.toFixed(4)}, grad_norm ${stepped.grad_norm.toExponential(3)}, ${stepped.adapter_params.toLocaleString("en-US")} adapter parameters); peak RSS ${fmt(stepped.peak_rss)} (${stepped.peak_rss < 8 * GiB ? "under" : "OVER"} 8 GiB)`);
    else console.log(`  the step did not complete (exit ${r.status}${r.signal ? `, ${r.signal}` : ""})`);
    const machine = totalmem();
    for (const [what, w] of [["fp32 base", 4 * params], ["bf16-held base", 2 * params]] as const) {
      const need = w + (Number.isFinite(act) ? act + gu : gu);
      console.log(`  without 4-bit (${what}, computed, not run): ${fmt(w)} of weights + ${Number.isFinite(act) ? `${fmt(act + gu)} of activations and scratch` : `${fmt(gu)} of gate|up activations alone`} = ${fmt(need)}; this machine has ${fmt(machine)}: ${need > machine ? "does not fit" : "fits"}`);
    }
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes("--child")) child(arg("child")!);
else main();
