// A model folder loaded as a 4-bit frozen base (QLoRA's load_in_4bit): each projection weight streamed from the
// safetensors chunk by chunk (BF16 / F16 / F32, 1M values at a time) straight into bitsandbytes' 4-bit blocks, so no
// weight is ever resident in fp32 whole; the other tensors (embeddings, norms, biases, head) kept unquantized in fp32
// or bf16. Also the memory such a model needs, and a full-precision copy of it (for a merged save).
// Not the 4-bit format itself (native/src/quant4.h) and not the config keys that ask for it (src/train/config.ts).
import { NativeModel, type Quant4Config } from "../core/native.ts";
import type { DecoderConfig, ParamInfo } from "../core/types.ts";
import { checkWeightFiles, qkvHeadsOfFolder, readWeightFiles } from "./checkpoint.ts";
import { isNeoxQkv, neoxQkvToStacked } from "./neox.ts";
import { forEachTensorChunk, readTensor } from "./safetensors.ts";

// Values per chunk when a whole tensor is at hand (a multiple of the 64-value blocks).
const CHUNK = 1 << 20;

/** Bytes the weights of a 4-bit base take: 4 bits a value plus the block scales, the other tensors at 2 or 4 bytes. */
export function quantizedWeightBytes(table: readonly ParamInfo[], q: Quant4Config, rest: "fp32" | "bf16"): number {
  let bytes = 0;
  for (const p of table) {
    if (!p.quant4) { bytes += p.size * (rest === "bf16" ? 2 : 4); continue; }
    const blocks = Math.ceil(p.size / 64);
    bytes += Math.ceil(p.size / 2) + (q.doubleQuant ? blocks + 4 * Math.ceil(blocks / 256) + 4 : 4 * blocks);
  }
  return bytes;
}

/**
 * A 4-bit base read from `dir` (after checkWeightFiles): projection weights quantized as they stream in, the rest
 * written into the fp32 or bf16 store. A tied checkpoint's copy of the embeddings as lm_head.weight is not read (the
 * fp32 loader checks it equals the embeddings; here it is simply the embeddings). GPT-NeoX's query_key_value is read
 * whole, its rows put into the core's q | k | v order, then quantized. Free the model when done.
 */
export function loadQuantizedModel(dir: string, config: DecoderConfig, q: Quant4Config, rest: "fp32" | "bf16"): NativeModel {
  const model = new NativeModel(config, { quantization: q, baseDtype: rest });
  try {
    const files = readWeightFiles(dir);
    const { sources } = checkWeightFiles(files, model.table);
    const heads = qkvHeadsOfFolder(files, model.table);
    for (const p of model.table) {
      const { header: h, name } = sources.get(p.name)!;
      const write = (v: Float32Array, start: number) => (p.quant4 ? model.quantize4bit(p.name, v, start) : model.writeTensor(p.name, v, start));
      if (heads && isNeoxQkv(p.name)) {
        const v = neoxQkvToStacked(readTensor(h, name), heads.numHeads, heads.headSize);
        for (let start = 0; start < v.length; start += CHUNK) write(v.subarray(start, start + CHUNK), start);
      } else forEachTensorChunk(h, name, write);
    }
  } catch (e) {
    model.free();
    throw e;
  }
  return model;
}

/**
 * A full-precision (fp32) model with the 4-bit base's weights dequantized (and its bf16 tensors widened): what
 * merging an adapter into a 4-bit base needs, since the merged weight cannot be held in 4 bits without a second,
 * lossy quantization. Holds the whole model in fp32. Free it when done.
 */
export function dequantizedCopy(model: NativeModel): NativeModel {
  const full = new NativeModel(model.config);
  try {
    for (const p of model.table) full.params.set(model.dequantize(p.name), p.offset);
  } catch (e) {
    full.free();
    throw e;
  }
  return full;
}
