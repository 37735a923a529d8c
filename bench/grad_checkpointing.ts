// Peak RSS and step time of one training step (forward + backward + AdamW) with and without gradient
// checkpointing, each in a fresh child process, on a random Llama-shaped model (default 30 layers, hidden 256,
// intermediate 688, 4 heads, vocab 2048) at one row of 2048 tokens; also checks that both give the same loss
// and gradient norm. Prints a table and one JSON line.
//   node --import tsx bench/grad_checkpointing.ts [--layers 30] [--tokens 2048] [--hidden 256] [--intermediate 688]
//        [--heads 4] [--vocab 2048] [--steps 2] [--threads 0] [--lora]
// Not a test: it asserts nothing and is not run by scripts/test.js.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { AdamW, LORA_TARGETS, NativeModel, setNumThreads, type Trainable } from "../src/core/native.ts";

const { values } = parseArgs({
  options: {
    layers: { type: "string", default: "30" }, tokens: { type: "string", default: "2048" }, hidden: { type: "string", default: "256" },
    intermediate: { type: "string", default: "688" }, heads: { type: "string", default: "4" }, vocab: { type: "string", default: "2048" },
    steps: { type: "string", default: "2" }, threads: { type: "string", default: "0" }, lora: { type: "boolean", default: false },
    child: { type: "string" },
  },
});
const n = (k: keyof typeof values) => Number(values[k]);
const mb = (kb: number) => Math.round(kb / 1024);

function child(checkpointing: boolean): void {
  if (n("threads") > 0) setNumThreads(n("threads"));
  const C = n("hidden"), NH = n("heads"), T = n("tokens"), V = n("vocab");
  const m = new NativeModel({
    architecture: "LlamaForCausalLM", vocabSize: V, hiddenSize: C, intermediateSize: n("intermediate"), numLayers: n("layers"), numHeads: NH, numKvHeads: NH,
    headDim: C / NH, maxPositionEmbeddings: T, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false,
    qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, ropeScaling: null,
  });
  let seed = 1;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  for (let i = 0; i < m.params.length; i++) m.params[i] = 0.05 * rnd();
  for (const p of m.table) if (p.name.endsWith("norm.weight")) m.param(p.name).fill(1);
  let t: Trainable = m;
  if (values.lora) {
    const a = m.attachLora({ r: 16, loraAlpha: 16, useRslora: false, targetModules: [...LORA_TARGETS], loraDropout: 0 });
    for (let i = 0; i < a.params.length; i++) a.params[i] = 0.01 * rnd();
    t = a;
  }
  m.gradientCheckpointing = checkpointing;
  const opt = new AdamW(t, { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  // the gradient buffer and the AdamW moments are resident before the step, as in training after step 1, so
  // that peak - before is the step's activations and scratch
  void t.grads;
  opt.expAvg.fill(1); opt.expAvg.fill(0);
  opt.expAvgSq.fill(1); opt.expAvgSq.fill(0);
  const ids = Int32Array.from({ length: T }, () => Math.floor((rnd() + 0.5) * V));
  const batch = { ids, lengths: Int32Array.of(T), B: 1, T };
  const rssBefore = process.resourceUsage().maxRSS;
  const times: number[] = [];
  let loss = 0, gradNorm = 0;
  for (let s = 0; s < n("steps"); s++) {
    const t0 = performance.now();
    const out = m.forward(batch, { train: true });
    loss = -out.logps.reduce((a, b) => a + b, 0) / (T - 1);
    t.zeroGrad();
    m.backward(new Float32Array(T).fill(-1 / (T - 1)));
    gradNorm = t.gradNorm();
    opt.update();
    times.push((performance.now() - t0) / 1000);
  }
  const r = { checkpointing, rss_before_step_mb: mb(rssBefore), peak_rss_mb: mb(process.resourceUsage().maxRSS), s_per_step: Math.min(...times), loss, grad_norm: gradNorm, trainable: t.table.reduce((a, p) => a + p.size, 0) };
  process.stdout.write(JSON.stringify(r) + "\n");
  m.free();
}

if (values.child !== undefined) {
  child(values.child === "on");
} else {
  const self = fileURLToPath(import.meta.url);
  const pass = process.argv.slice(2);
  const runs = ["off", "on"].map((mode) => {
    const r = spawnSync(process.execPath, ["--import", "tsx", self, ...pass, "--child", mode], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    if (r.status !== 0) throw new Error(`child (${mode}) failed with status ${r.status}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as { checkpointing: boolean; rss_before_step_mb: number; peak_rss_mb: number; s_per_step: number; loss: number; grad_norm: number; trainable: number };
  });
  console.log(`${n("layers")} layers, hidden ${n("hidden")}, intermediate ${n("intermediate")}, 1 × ${n("tokens")} tokens, ${values.lora ? "LoRA r 16 on all seven projections" : "full fine-tuning"} (${runs[0].trainable} trainable parameters)`);
  console.log("gradient_checkpointing | RSS before the step | peak RSS | activations (peak - before) | s/step");
  for (const r of runs) console.log(`${String(r.checkpointing).padEnd(22)} | ${String(r.rss_before_step_mb).padStart(16)} MB | ${String(r.peak_rss_mb).padStart(5)} MB | ${String(r.peak_rss_mb - r.rss_before_step_mb).padStart(24)} MB | ${r.s_per_step.toFixed(2)}`);
  const same = runs[0].loss === runs[1].loss && runs[0].grad_norm === runs[1].grad_norm;
  console.log(`same loss and gradient norm: ${same} (${runs[0].loss}, ${runs[0].grad_norm})`);
  console.log(JSON.stringify({ layers: n("layers"), tokens: n("tokens"), lora: values.lora, runs, same }));
}
