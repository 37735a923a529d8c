// The reference model of DPO/IPO/KTO: a frozen second copy of the policy's starting checkpoint, or its
// summed completion log-probs precomputed once per dataset row (TRL's precompute_ref_log_probs) and kept in
// the run folder as ref_logps.safetensors so a resumed run reuses them instead of recomputing.
// Not the loss (objectives.ts) and not the loop: nothing here decides when to precompute or which rows.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { LogpModel, NativeModel } from "../core/native.ts";
import { loadModelFolder } from "../models/checkpoint.ts";
import { writeFileWith } from "../util/durable.ts";
import { readHeader, readTensor, writeSafetensors, type TensorToWrite } from "../models/safetensors.ts";
import { referenceLogps, referenceUnpaired, type PairBatch, type RefLogps, type RefUnpaired, type UnpairedBatch } from "./objectives.ts";

export const REF_LOGPS_FILE = "ref_logps.safetensors";

/**
 * The reference model for full fine-tuning: the policy's starting checkpoint loaded a second time. It is only
 * ever run with train = false and never handed to an optimizer, which is what keeps it frozen. Free it when
 * done. (Under LoRA there is no second model: the reference is policy.withoutAdapters().)
 */
export function loadReference(modelDir: string): NativeModel {
  return loadModelFolder(modelDir).model;
}

/** A collated batch with the dataset row index of each of its examples (pair i or unpaired row i). */
export type IndexedBatch =
  | { kind: "paired"; rows: ArrayLike<number>; pb: PairBatch }
  | { kind: "unpaired"; rows: ArrayLike<number>; ub: UnpairedBatch };

/**
 * Per-dataset-row reference logps; NaN marks a row that was not computed. Values are rounded to fp32 when
 * computed so that the table saved to disk and read back is exactly the table a fresh run uses.
 * KTO's klLogps are per row of its KL completion: this is only meaningful when that pairing is fixed per
 * row (kl_completion_ids set when the data is prepared, as TRL builds KL pairs at dataset-prep time), not
 * when the collator rotates completions within whatever batch a row lands in.
 */
export type RefTable =
  | { kind: "paired"; chosen: Float64Array; rejected: Float64Array }            // (numRows,), (numRows,)
  | { kind: "unpaired"; logps: Float64Array; klLogps: Float64Array | null };   // (numRows,), (numRows,)

function nanArray(n: number): Float64Array {
  return new Float64Array(n).fill(Number.NaN);
}

function place(fn: string, dst: Float64Array, rows: ArrayLike<number>, i: number, v: number): void {
  const r = rows[i];
  if (!Number.isInteger(r) || r < 0 || r >= dst.length) {
    throw new Error(`${fn}: row index ${r} (example ${i} of the batch) is outside the dataset's [0, ${dst.length})`);
  }
  dst[r] = Math.fround(v);
}

/**
 * Runs the reference once over every batch (train = false) and fills a table of numRows entries. Under LoRA
 * `ref` is the policy with its adapters disabled (policy.withoutAdapters()).
 */
export function precomputeReference(ref: LogpModel, numRows: number, batches: Iterable<IndexedBatch>): RefTable {
  const fn = "precomputeReference";
  if (!Number.isInteger(numRows) || numRows <= 0) throw new Error(`${fn}: numRows = ${numRows} must be a positive integer (the dataset's size)`);
  let table: RefTable | null = null;
  for (const ib of batches) {
    if (table && table.kind !== ib.kind) throw new Error(`${fn}: mixed ${table.kind} and ${ib.kind} batches; a run precomputes one kind`);
    if (ib.kind === "paired") {
      if (!table) table = { kind: "paired", chosen: nanArray(numRows), rejected: nanArray(numRows) };
      const t = table as Extract<RefTable, { kind: "paired" }>;
      const v: RefLogps = referenceLogps(ref, ib.pb);
      if (ib.rows.length !== v.chosen.length) throw new Error(`${fn}: ${ib.rows.length} row indices for a batch of ${v.chosen.length} pairs`);
      for (let i = 0; i < v.chosen.length; i++) {
        place(fn, t.chosen, ib.rows, i, v.chosen[i]);
        place(fn, t.rejected, ib.rows, i, v.rejected[i]);
      }
    } else {
      const hasKl: boolean = ib.ub.kl !== undefined;
      if (!table) table = { kind: "unpaired", logps: nanArray(numRows), klLogps: hasKl ? nanArray(numRows) : null };
      const t = table as Extract<RefTable, { kind: "unpaired" }>;
      if ((t.klLogps !== null) !== hasKl) throw new Error(`${fn}: some batches have KL rows and some do not; collate every batch with the same kl setting`);
      const v: RefUnpaired = referenceUnpaired(ref, ib.ub);
      if (ib.rows.length !== v.logps.length) throw new Error(`${fn}: ${ib.rows.length} row indices for a batch of ${v.logps.length} rows`);
      for (let i = 0; i < v.logps.length; i++) {
        place(fn, t.logps, ib.rows, i, v.logps[i]);
        if (t.klLogps && v.klLogps) place(fn, t.klLogps, ib.rows, i, v.klLogps[i]);
      }
    }
  }
  if (!table) throw new Error(`${fn}: no batches given`);
  return table;
}

function pick(fn: string, what: string, src: Float64Array, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    const v = Number.isInteger(r) && r >= 0 && r < src.length ? src[r] : Number.NaN;
    if (Number.isNaN(v)) {
      throw new Error(`${fn}: dataset row ${r} has no precomputed reference ${what}; precompute over every row of the dataset (or delete ${REF_LOGPS_FILE} from the run folder to recompute it)`);
    }
    out[i] = v;
  }
  return out;
}

/** The reference values of one pair batch, in the batch's order. */
export function gatherPaired(table: RefTable, rows: ArrayLike<number>): RefLogps {
  if (table.kind !== "paired") throw new Error("gatherPaired: the precomputed table is for unpaired (KTO) rows");
  return { chosen: pick("gatherPaired", "chosen logps", table.chosen, rows), rejected: pick("gatherPaired", "rejected logps", table.rejected, rows) };
}

/** The reference values of one unpaired batch (and its KL rows, when precomputed), in the batch's order. */
export function gatherUnpaired(table: RefTable, rows: ArrayLike<number>): RefUnpaired {
  if (table.kind !== "unpaired") throw new Error("gatherUnpaired: the precomputed table is for pairs (DPO/IPO)");
  return {
    logps: pick("gatherUnpaired", "logps", table.logps, rows),
    klLogps: table.klLogps ? pick("gatherUnpaired", "KL logps", table.klLogps, rows) : null,
  };
}

/** ref_logps.safetensors' metadata (safetensors metadata values are strings). */
const RefMetaSchema = z.looseObject({
  format: z.literal("preftune.ref_logps", { error: "must be \"preftune.ref_logps\"" }),
  kind: z.enum(["paired", "unpaired"], { error: "must be \"paired\" or \"unpaired\"" }),
  rows: z.string({ error: "must be a row count" }).regex(/^[1-9]\d{0,9}$/, { error: "must be a row count" }),
  fingerprint: z.string({ error: "must be a fingerprint (a string)" }).min(1, { error: "must be a fingerprint (a string)" }),
}, { error: "is missing" });

const TENSORS = { paired: ["chosen_logps", "rejected_logps"], unpaired: ["logps", "KL_logps"] } as const;

/**
 * Writes runDir/ref_logps.safetensors (F32, one (numRows,) tensor per column) atomically. `fingerprint`
 * identifies what the values depend on (reference checkpoint, prepared data, max_length, ...): a resumed
 * run with a different fingerprint refuses the file instead of silently using stale values.
 */
export function saveReferenceLogps(runDir: string, table: RefTable, fingerprint: string): string {
  const file = join(runDir, REF_LOGPS_FILE);
  const cols: [string, Float64Array][] = table.kind === "paired"
    ? [[TENSORS.paired[0], table.chosen], [TENSORS.paired[1], table.rejected]]
    : [[TENSORS.unpaired[0], table.logps], ...(table.klLogps ? [[TENSORS.unpaired[1], table.klLogps] as [string, Float64Array]] : [])];
  const tensors: TensorToWrite[] = cols.map(([name, v]) => ({ name, dtype: "F32", shape: [v.length], data: Float32Array.from(v) }));
  writeFileWith(file, (tmp) => writeSafetensors(tmp, tensors, { format: "preftune.ref_logps", kind: table.kind, rows: String(cols[0][1].length), fingerprint }, { fsync: false }));
  return file;
}

/**
 * Reads runDir/ref_logps.safetensors; null when the run has none yet. Throws, naming the file and the fix,
 * when it was written for another kind of data, dataset size or fingerprint.
 */
export function loadReferenceLogps(runDir: string, expect: { kind: RefTable["kind"]; numRows: number; fingerprint: string }): RefTable | null {
  const file = join(runDir, REF_LOGPS_FILE);
  if (!existsSync(file)) return null;
  const h = readHeader(file);
  const stale = (why: string) => new Error(`${file}: ${why}; it was written for another run setup — delete it to recompute the reference log-probs`);
  const parsed = RefMetaSchema.safeParse(h.metadata);
  if (!parsed.success) {
    const iss = parsed.error.issues[0];
    throw new Error(`${file}: metadata ${iss.path.join(".") || "(none)"} ${iss.message}; the file is damaged or not preftune's — delete it to recompute the reference log-probs`);
  }
  const md = parsed.data;
  if (md.kind !== expect.kind) throw stale(`holds ${md.kind} rows, this run needs ${expect.kind}`);
  if (md.rows !== String(expect.numRows)) throw stale(`holds ${md.rows} rows, the dataset has ${expect.numRows}`);
  if (md.fingerprint !== expect.fingerprint) throw stale(`fingerprint ${JSON.stringify(md.fingerprint)} differs from this run's ${JSON.stringify(expect.fingerprint)}`);
  const col = (name: string): Float64Array => {
    const t = h.tensors.get(name);
    if (!t || t.shape.length !== 1 || t.shape[0] !== expect.numRows || t.dtype !== "F32") throw stale(`tensor "${name}" is missing or not F32 of shape [${expect.numRows}]`);
    const v = Float64Array.from(readTensor(h, name));
    // NaN marks a row not computed (pick names it when used); an infinity is no log-prob a model computes
    for (let i = 0; i < v.length; i++) if (v[i] === Infinity || v[i] === -Infinity) throw new Error(`${file}: ${name}[${i}] is ${v[i]}; the file is damaged — delete it to recompute the reference log-probs`);
    return v;
  };
  if (expect.kind === "paired") return { kind: "paired", chosen: col(TENSORS.paired[0]), rejected: col(TENSORS.paired[1]) };
  return { kind: "unpaired", logps: col(TENSORS.unpaired[0]), klLogps: h.tensors.has(TENSORS.unpaired[1]) ? col(TENSORS.unpaired[1]) : null };
}
