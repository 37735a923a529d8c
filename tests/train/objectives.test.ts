// Properties of the training objectives and reference handling on the tiny fixture models: DPO's ln 2 at
// reference = policy, precomputed reference logps ≡ a live reference, gradient accumulation at objective
// level, SFT, the precomputed table's save/load, and the errors for misuse.
// Not TRL parity of values (tests/parity/losses.test.ts does that against PyTorch).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import { collatePairs, collateUnpaired, withKlCompletions, type TokenizedPair, type TokenizedUnpaired } from "../../src/data/collate.ts";
import { readModelDir } from "../../src/models/checkpoint.ts";
import { readHeader, readTensor, type SafetensorsHeader } from "../../src/models/safetensors.ts";
import {
  pairedStep, referenceLogps, referenceUnpaired, sftStep, unpairedStep,
  type MethodConfig, type PairBatch, type Reference, type StepOutput, type UnpairedBatch,
} from "../../src/train/objectives.ts";
import {
  REF_LOGPS_FILE, gatherPaired, gatherUnpaired, loadReference, loadReferenceLogps, precomputeReference, saveReferenceLogps,
} from "../../src/train/reference.ts";
import { relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const MODEL = "llama-tiny";
const modelDir = join(fixtures, "core", MODEL);


/** The fixtures' 8 pairs, split back into token lists so the real collator can rebatch them. */
function fixturePairs(): TokenizedPair[] {
  const h = readHeader(join(fixtures, "losses", `${MODEL}-dpo.safetensors`));
  const [N, T] = h.tensors.get("input_ids")!.shape;
  const ids = readTensor(h, "input_ids"), len = readTensor(h, "lengths"), pl = readTensor(h, "prompt_lengths");
  const row = (r: number, from: number, to: number) => Array.from(ids.subarray(r * T + from, r * T + to));
  const B = N / 2;
  return Array.from({ length: B }, (_, i) => ({
    prompt_ids: row(i, 0, pl[i]),
    chosen_ids: row(i, pl[i], len[i]),
    rejected_ids: row(B + i, pl[B + i], len[B + i]),
  }));
}
const PAIRS = fixturePairs();
const pairs = (idx: number[]): PairBatch => collatePairs(idx.map((i) => PAIRS[i]), { padTokenId: 0 });
const ALL = [0, 1, 2, 3, 4, 5, 6, 7];
/** The 16 rows as unpaired examples: chosen completions desirable, rejected ones undesirable. */
function unpairedRows(): TokenizedUnpaired[] {
  return [
    ...PAIRS.map((p) => ({ prompt_ids: p.prompt_ids, completion_ids: p.chosen_ids, label: true })),
    ...PAIRS.map((p) => ({ prompt_ids: p.prompt_ids, completion_ids: p.rejected_ids, label: false })),
  ];
}
const unpaired = (idx: number[], kl: boolean): UnpairedBatch => { const rows = idx.map((i) => unpairedRows()[i]); return collateUnpaired(kl ? withKlCompletions(rows, rows.length) : rows, { padTokenId: 0, kl }); };

/** The reference of the perturbed-ref fixtures: same config, weights of <model>-ref.safetensors. */
function perturbedRef(): NativeModel {
  const m = new NativeModel(readModelDir(modelDir).config);
  const h: SafetensorsHeader = readHeader(join(fixtures, "losses", `${MODEL}-ref.safetensors`));
  for (const p of m.table) readTensor(h, p.name, m.params, p.offset);
  return m;
}

// One thread: the tiny models are faster without OpenMP hand-offs, and the machine is shared.
setNumThreads(1);
const policy = loadReference(modelDir); // a fresh copy of the checkpoint; never updated in this file
const refModel = perturbedRef();
const live: Reference = { kind: "model", model: refModel };
const FWD = { backward: true, lossScale: 1 };

function run(step: () => StepOutput): { out: StepOutput; grads: Float32Array } {
  policy.zeroGrad();
  const out = step();
  return { out, grads: policy.grads.slice() };
}

test("collatePairs rebuilds the fixture batch exactly (so the halves below are TRL batches)", () => {
  const h = readHeader(join(fixtures, "losses", `${MODEL}-dpo.safetensors`));
  const pb = pairs(ALL);
  assert.deepEqual(pb.batch.ids, Int32Array.from(readTensor(h, "input_ids")));
  assert.deepEqual(pb.completionMask, Uint8Array.from(readTensor(h, "completion_mask")));
});

test("DPO with reference = policy starts at ln 2, whether the reference is a copy or the policy object itself", () => {
  const copy = loadReference(modelDir);
  try {
    const cfg: MethodConfig = { method: "dpo", beta: 0.1 };
    const a = run(() => pairedStep(policy, { kind: "model", model: copy }, pairs(ALL), cfg, FWD));
    assert.ok(Math.abs(a.out.loss - Math.LN2) <= 1e-6, `loss ${a.out.loss}`);
    assert.equal(a.out.metrics["rewards/margins"], 0);
    // The policy as its own reference: the reference forward must run before the training forward.
    const b = run(() => pairedStep(policy, { kind: "model", model: policy }, pairs(ALL), cfg, FWD));
    assert.ok(Math.abs(b.out.loss - Math.LN2) <= 1e-6, `loss ${b.out.loss}`);
    assert.ok(relErr(b.grads, a.grads) <= 1e-6, `grad rel err ${relErr(b.grads, a.grads)}`);
    assert.ok(relErr(a.grads, new Float32Array(a.grads.length)) > 0, "gradients are not zero at ln 2");
  } finally {
    copy.free();
  }
});

test("precomputed reference logps give the same loss, metrics and gradients as the live reference", () => {
  for (const method of ["dpo", "ipo"] as const) {
    const cfg: MethodConfig = { method, beta: 0.1 };
    const pb = pairs(ALL);
    const a = run(() => pairedStep(policy, live, pb, cfg, FWD));
    const b = run(() => pairedStep(policy, { kind: "precomputed" }, pb, cfg, { ...FWD, refLogps: referenceLogps(refModel, pb) }));
    assert.equal(b.out.loss, a.out.loss, method);
    assert.deepEqual(b.out.metrics, a.out.metrics, method);
    assert.deepEqual(b.grads, a.grads, method);
  }
  const ub = unpaired([...ALL, ...ALL.map((i) => i + 8)], true);
  const cfg: MethodConfig = { method: "kto", beta: 0.1 };
  const a = run(() => unpairedStep(policy, live, ub, cfg, FWD));
  const b = run(() => unpairedStep(policy, { kind: "precomputed" }, ub, cfg, { ...FWD, ref: referenceUnpaired(refModel, ub) }));
  assert.ok(a.out.metrics.kl > 0, "the perturbed reference gives z > 0, so the KL rows matter");
  assert.equal(b.out.loss, a.out.loss);
  assert.deepEqual(b.out.metrics, a.out.metrics);
  assert.deepEqual(b.grads, a.grads);
});

test("gradient accumulation: two half batches at lossScale 0.5 equal the full batch for per-pair-mean losses", () => {
  const halves = [[0, 2, 4, 6], [1, 3, 5, 7]];
  const accumulate = (step: (idx: number[], scale: number) => StepOutput) => {
    policy.zeroGrad();
    let loss = 0;
    for (const h of halves) loss += 0.5 * step(h, 0.5).loss;
    return { loss, grads: policy.grads.slice() };
  };
  const cases: [string, MethodConfig, Reference][] = [
    ["dpo", { method: "dpo", beta: 0.1 }, live],
    ["ipo", { method: "ipo", beta: 0.1 }, live],
    ["dpo hinge", { method: "dpo", beta: 0.1, loss_type: "hinge" }, live],
    ["simpo (cpo_alpha 0)", { method: "simpo", beta: 2, simpo_gamma: 0.5 }, { kind: "none" }],
  ];
  for (const [name, cfg, ref] of cases) {
    const full = run(() => pairedStep(policy, ref, pairs(ALL), cfg, FWD));
    const acc = accumulate((idx, s) => pairedStep(policy, ref, pairs(idx), cfg, { backward: true, lossScale: s }));
    assert.ok(Math.abs(acc.loss - full.out.loss) <= 1e-6 * Math.abs(full.out.loss), `${name}: loss ${acc.loss} vs ${full.out.loss}`);
    const e = relErr(acc.grads, full.grads);
    assert.ok(e <= 1e-5, `${name}: accumulated gradient rel err ${e}`);
  }
  // KTO apo_zero_unpaired: a mean over rows with no batch statistic; halves keep 4 desirable + 4 undesirable.
  const kto: MethodConfig = { method: "kto", beta: 0.1, loss_type: "apo_zero_unpaired" };
  const rows = (h: number[]) => [...h, ...h.map((i) => i + 8)];
  const full = run(() => unpairedStep(policy, live, unpaired(rows(ALL), false), kto, FWD));
  const acc = accumulate((idx, s) => unpairedStep(policy, live, unpaired(rows(idx), false), kto, { backward: true, lossScale: s }));
  assert.ok(Math.abs(acc.loss - full.out.loss) <= 1e-6 * Math.abs(full.out.loss), `kto apo: loss ${acc.loss} vs ${full.out.loss}`);
  assert.ok(relErr(acc.grads, full.grads) <= 1e-5, `kto apo: rel err ${relErr(acc.grads, full.grads)}`);

  // ORPO's NLL is a token mean pooled over the batch: the identity does not hold (as in TRL), visibly.
  const orpo: MethodConfig = { method: "orpo", beta: 0.1 };
  const of = run(() => pairedStep(policy, { kind: "none" }, pairs(ALL), orpo, FWD));
  const oa = accumulate((idx, s) => pairedStep(policy, { kind: "none" }, pairs(idx), orpo, { backward: true, lossScale: s }));
  assert.ok(relErr(oa.grads, of.grads) > 1e-3, `ORPO halves unexpectedly match (rel err ${relErr(oa.grads, of.grads)})`);
});

test("sftStep: token-mean NLL over the mask, metrics, and lossScale scaling the gradient", () => {
  const h = readHeader(join(fixtures, "losses", `${MODEL}-dpo.safetensors`));
  const torchLogps = readTensor(h, "logps");
  const pb = pairs(ALL);
  let s = 0, n = 0;
  for (let i = 0; i < pb.completionMask.length; i++) if (pb.completionMask[i]) { s -= torchLogps[i]; n++; }
  const a = run(() => sftStep(policy, pb, FWD));
  assert.ok(Math.abs(a.out.loss - s / n) <= 1e-6 * (s / n), `sft loss ${a.out.loss} vs PyTorch ${s / n}`);
  assert.equal(a.out.tokens, 122);
  assert.deepEqual(Object.keys(a.out.metrics).sort(), ["entropy", "mean_token_accuracy"]);
  const b = run(() => sftStep(policy, pb, { backward: true, lossScale: 0.25 }));
  for (let i = 0; i < a.grads.length; i++) assert.equal(b.grads[i], a.grads[i] * 0.25);
  const c = run(() => sftStep(policy, pb, { backward: false, lossScale: 1 }));
  assert.equal(c.out.loss, a.out.loss);
  assert.ok(c.grads.every((x) => x === 0), "backward: false leaves the gradients alone");
});

test("precomputeReference + ref_logps.safetensors round trip, and gather by dataset row", () => {
  const dir = mkdtempSync(join(tmpdir(), "preftune-ref-"));
  try {
    // Pairs in a shuffled order, as a loader would visit them; row index = position in PAIRS.
    const order = [[5, 2, 7], [0, 6], [3, 1, 4]];
    const table = precomputeReference(refModel, 8, order.map((rows) => ({ kind: "paired" as const, rows, pb: pairs(rows) })));
    assert.equal(table.kind, "paired");
    const direct = referenceLogps(refModel, pairs(ALL));
    const got = gatherPaired(table, ALL);
    for (let i = 0; i < 8; i++) {
      assert.ok(Math.abs(got.chosen[i] - direct.chosen[i]) <= 1e-5 * Math.abs(direct.chosen[i]), `chosen ${i}`);
      assert.ok(Math.abs(got.rejected[i] - direct.rejected[i]) <= 1e-5 * Math.abs(direct.rejected[i]), `rejected ${i}`);
    }
    assert.equal(loadReferenceLogps(dir, { kind: "paired", numRows: 8, fingerprint: "x" }), null, "no file yet");
    const file = saveReferenceLogps(dir, table, "ref=llama-tiny;data=abc");
    assert.equal(file, join(dir, REF_LOGPS_FILE));
    const back = loadReferenceLogps(dir, { kind: "paired", numRows: 8, fingerprint: "ref=llama-tiny;data=abc" });
    assert.deepEqual(back, table, "what a resumed run reads is exactly what the first run used");
    assert.throws(() => loadReferenceLogps(dir, { kind: "paired", numRows: 8, fingerprint: "other" }), /fingerprint .* delete it/);
    assert.throws(() => loadReferenceLogps(dir, { kind: "paired", numRows: 9, fingerprint: "ref=llama-tiny;data=abc" }), /holds 8 rows, the dataset has 9/);
    assert.throws(() => loadReferenceLogps(dir, { kind: "unpaired", numRows: 8, fingerprint: "ref=llama-tiny;data=abc" }), /holds paired rows/);

    // A DPO step from the table equals one with the live reference up to the fp32 rounding of the table.
    const cfg: MethodConfig = { method: "dpo", beta: 0.1 };
    const a = pairedStep(policy, live, pairs([3, 1, 4]), cfg, { backward: false, lossScale: 1 });
    const b = pairedStep(policy, { kind: "precomputed" }, pairs([3, 1, 4]), cfg, { backward: false, lossScale: 1, refLogps: gatherPaired(back!, [3, 1, 4]) });
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-6, `${a.loss} vs ${b.loss}`);

    // Unpaired with fixed KL completions (as prepared data carries them): logps and KL logps per row.
    const rows = unpairedRows().map((r, i, all) => ({ ...r, kl_completion_ids: all[(i + 15) % 16].completion_ids }));
    const ub = (idx: number[]) => collateUnpaired(idx.map((i) => rows[i]), { padTokenId: 0, kl: true });
    const ut = precomputeReference(refModel, 16, [[0, 9, 3, 12], [15, 1, 8, 7], [2, 4, 5, 6, 10, 11, 13, 14]].map((r) => ({ kind: "unpaired" as const, rows: r, ub: ub(r) })));
    const d = referenceUnpaired(refModel, ub([...Array(16).keys()]));
    const g = gatherUnpaired(ut, [...Array(16).keys()]);
    assert.ok(relErr(g.logps, d.logps) <= 1e-6 && relErr(g.klLogps!, d.klLogps!) <= 1e-6, "unpaired table matches a direct pass");
    saveReferenceLogps(dir, ut, "kto");
    assert.deepEqual(loadReferenceLogps(dir, { kind: "unpaired", numRows: 16, fingerprint: "kto" }), ut);

    const partial = precomputeReference(refModel, 8, [{ kind: "paired", rows: [0, 1], pb: pairs([0, 1]) }]);
    assert.throws(() => gatherPaired(partial, [1, 2]), /dataset row 2 has no precomputed reference/);
    assert.throws(() => precomputeReference(refModel, 8, [{ kind: "paired", rows: [0, 8], pb: pairs([0, 1]) }]), /row index 8 .* outside/);
    writeFileSync(join(dir, REF_LOGPS_FILE), "not safetensors");
    assert.throws(() => loadReferenceLogps(dir, { kind: "unpaired", numRows: 16, fingerprint: "kto" }), /ref_logps\.safetensors/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("misuse gets a clear error", () => {
  const pb = pairs(ALL);
  assert.throws(() => pairedStep(policy, { kind: "none" }, pb, { method: "dpo", beta: 0.1 }, FWD), /needs a reference/);
  assert.throws(() => pairedStep(policy, { kind: "precomputed" }, pb, { method: "dpo", beta: 0.1 }, FWD), /opts\.refLogps is missing/);
  assert.throws(() => pairedStep(policy, live, pb, { method: "orpo", beta: 0.1 }, FWD), /reference-free/);
  assert.throws(() => pairedStep(policy, { kind: "none" }, pb, { method: "ipo", beta: 0.1, loss_type: "sigmoid" }, FWD), /method ipo with loss_type "sigmoid": ipo is DPO with loss_type "ipo"/);
  assert.throws(() => pairedStep(policy, { kind: "none" }, pb, { method: "kto", beta: 0.1 }, FWD), /use unpairedStep/);
  assert.throws(() => pairedStep(policy, { kind: "none" }, pb, { method: "rlhf" as never, beta: 0.1 }, FWD), /method "rlhf" is unknown/);
  assert.throws(() => pairedStep(policy, live, pb, { method: "dpo", beta: 0.1 }, { backward: true, lossScale: Number.NaN }), /lossScale/);
  assert.throws(() => unpairedStep(policy, live, unpaired(ALL, false), { method: "kto", beta: 0.1 }, FWD), /collate with collateUnpaired\(withKlCompletions\(rows, batchSize\), \{ kl: true/);
});

test("the reference model is never touched by the steps above", () => {
  assert.ok(refModel.grads.every((x) => x === 0));
  const fresh = perturbedRef();
  assert.deepEqual(refModel.params, fresh.params);
  fresh.free();
});

after(() => {
  policy.free();
  refModel.free();
});
