// Run by collectives.test.ts as every rank of `mpirun -np 2`: exercises the process group directly and prints
// one JSON line of results from rank 0 (the test checks them).
import { NativeModel } from "../../src/core/native.ts";
import { parseConfig } from "../../src/models/config.ts";
import { randomInit } from "../../src/models/params.ts";
import { processGroup } from "../../src/parallel/group.ts";
import { allGatherJson, DataParallel, layerLayout } from "../../src/parallel/shard.ts";

const g = processGroup();
const out: Record<string, unknown> = { rank: g.rank, world: g.worldSize, localRank: g.localRank, localSize: g.localSize };

const f = Float32Array.from({ length: 5 }, (_, i) => (g.rank + 1) * (i + 0.5));
g.allReduceMean(f);
out.mean32 = Array.from(f);
const d = Float64Array.of(g.rank === 0 ? 1e-17 : 1, 2 ** -40 * (g.rank + 1));
g.allReduceSum(d);
out.sum64 = Array.from(d);
out.gathered = allGatherJson(g, { rank: g.rank, loss: g.rank ? Number.NaN : 0.25, text: "ünï" + g.rank }).map((x) => ({ ...x, loss: String(x.loss) }));   // stdout JSON has no NaN

// the gradient sum overlapped with a backward equals the sum after it, and the backward started every layer
const cfg = parseConfig({ architectures: ["LlamaForCausalLM"], model_type: "llama", vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: true }, "test");
const model = new NativeModel(cfg);
randomInit(model.table, model.params, 1);
const T = 9, B = 2;
const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3 * g.rank + 1) % 64);
const batch = { ids, lengths: Int32Array.of(T, T - 2 - g.rank), B, T };
const dlogps = new Float32Array(B * T).fill(-0.1);
const backward = () => { model.zeroGrad(); model.forward(batch, { train: true }); model.backward(dlogps); };
backward();
const expected = Float32Array.from(model.grads);
g.allReduceSum(expected);
const dp = new DataParallel(g);
backward();
const local = Float32Array.from(model.grads);
model.zeroGrad();
model.forward(batch, { train: true });
dp.startGradientSum(model, [0, 1]);
model.backward(dlogps);
dp.reduceGradients(model);
let same = true;
for (let i = 0; i < expected.length; i++) if (model.grads[i] !== expected[i]) same = false;
let differsFromLocal = false;
for (let i = 0; i < local.length; i++) if (model.grads[i] !== local[i]) differsFromLocal = true;
out.overlap = { same, differsFromLocal, layersOverlapped: dp.layersOverlapped, layers: layerLayout(model, model.grads.length)!.ranges.length / 2 };
model.free();
g.barrier();
if (g.isMainProcess) console.log(JSON.stringify(out));
