// What a training config's bitsandbytes keys ask of the base model (load_in_4bit, bnb_4bit_quant_type,
// use_bnb_nested_quant / bnb_4bit_use_double_quant), and loading a 4-bit
// frozen base whose unquantized tensors are held in bf16 when the run's dtype is bfloat16 (bitsandbytes keeps them
// in the load dtype; prepare_model_for_kbit_training's upcast to fp32 changes no value) and fp32 otherwise.
// Not the format (native/src/quant4.h), not the streaming loader (src/models/quantize.ts), not the config schema.
import { NativeModel, type Quant4Config } from "../core/native.ts";
import type { DecoderConfig, ParamInfo } from "../core/types.ts";
import { loadQuantizedModel, quantizedWeightBytes } from "../models/quantize.ts";
import type { TrainConfig } from "./config.ts";

/** The base model a run loads: 4-bit (with the dtype of its other tensors) or plain fp32 (null). */
export interface QuantPlan {
  q: Quant4Config;
  rest: "fp32" | "bf16";
}

/** The run's 4-bit plan; `savedDtype` is the run's resolved dtype (auto: the checkpoint's). */
export function quantPlan(c: Pick<TrainConfig, "load_in_4bit" | "bnb_4bit_quant_type" | "use_bnb_nested_quant" | "bnb_4bit_use_double_quant">, savedDtype: string): QuantPlan | null {
  if (!c.load_in_4bit) return null;
  return { q: { quantType: c.bnb_4bit_quant_type, doubleQuant: c.use_bnb_nested_quant || c.bnb_4bit_use_double_quant }, rest: savedDtype === "BF16" ? "bf16" : "fp32" };
}

/** Bytes of the weights in memory under the plan (for the memory check before loading); fp32 without one. */
export function planWeightBytes(plan: QuantPlan | null): ((table: readonly ParamInfo[]) => number) | undefined {
  return plan ? (table) => quantizedWeightBytes(table, plan.q, plan.rest) : undefined;
}

/** A 4-bit policy loaded from `dir` as the plan says, and the line describing it. */
export function loadQuantizedPolicy(dir: string, config: DecoderConfig, plan: QuantPlan): { model: NativeModel; note: string } {
  const model = loadQuantizedModel(dir, config, plan.q, plan.rest);
  const gib = (model.weightBytes / 1024 ** 3).toFixed(2);
  return {
    model,
    note: `load_in_4bit: base projections held in ${plan.q.quantType}${plan.q.doubleQuant ? " with double quantization" : ""} (blocks of 64), embeddings, norms and lm_head in ${plan.rest}: ${gib} GiB of weights; the 4-bit GEMMs run in fp32`,
  };
}
