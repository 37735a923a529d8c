// The library's config classes: ORPOConfig, DPOConfig, KTOConfig, CPOConfig, SFTConfig over one shared base
// (TrainingArguments), and PEFT's LoraConfig. Their keys, types and defaults are the one key table of
// src/train/config.ts (SCHEMA): the types are derived from it and every value is checked and defaulted by its
// resolveConfig, so a misspelled key or a wrong type fails to compile, and a bad value throws a ConfigError
// naming the key. Not the CLI's file reading (src/train/config.ts) and not training (trainer.ts).
import { resolveConfig, type TrainConfig, type TrainMethod } from "../train/config.ts";
import type { COMPAT_KEYS, CompatKind } from "../train/config-compat.ts";

type KindType = { bool: boolean | null; int: number | null; float: number | null; string: string | null; list: string | string[] | null; dict: Record<string, unknown> | string | null; any: unknown };
type CompatArgs = { [K in keyof typeof COMPAT_KEYS]?: (typeof COMPAT_KEYS)[K] extends { kind: infer T extends CompatKind } ? KindType[T] : unknown };
/** Keys the trainers take as objects (the model, the data) or as the class itself (the method). */
type NotArgs = "method";
type HonouredArgs = { [K in Exclude<keyof TrainConfig, NotArgs | keyof CompatArgs>]?: TrainConfig[K] };

/** What every config class's constructor takes: TRL/transformers snake_case keys, each optional (default: TRL's). */
export type TrainingArgumentsInit = HonouredArgs & CompatArgs;
/** A resolved config: every key with its value. */
export type ResolvedArgs = Readonly<TrainConfig>;

/**
 * transformers' TrainingArguments as a base for the method configs: checks `init` for `method` and fills every
 * default. `notes` are what resolveConfig says about keys with no effect here (printed when training starts).
 */
// Declaration merging gives instances every resolved key with its type.
export interface TrainingArguments extends ResolvedArgs {}
export class TrainingArguments {
  /** Notes on the given keys (ignored ones, deprecated names, ...), printed when training starts. */
  declare readonly notes: readonly string[];
  /** The keys as given (a trainer resolves them again with its model, data and adapter). */
  declare readonly given: Readonly<Record<string, unknown>>;
  constructor(method: TrainMethod, init: TrainingArgumentsInit = {}, name = "TrainingArguments") {
    const { config, notes } = resolveConfig({ ...init, method }, name, [], { modelAndData: true });
    Object.assign(this, config);
    Object.defineProperty(this, "notes", { value: notes, enumerable: false });
    Object.defineProperty(this, "given", { value: { ...init, method }, enumerable: false });
  }
  /** Every key and value (TRL's to_dict). */
  to_dict(): TrainConfig { return { ...(this as unknown as TrainConfig) }; }
}

/** TRL's ORPOConfig: beta is ORPO's λ (default 0.1). */
export class ORPOConfig extends TrainingArguments {
  constructor(init: TrainingArgumentsInit = {}) { super("orpo", init, "ORPOConfig"); }
}
/** TRL's DPOConfig: loss_type one or a list of DPO losses (ipo among them), beta, reference settings. */
export class DPOConfig extends TrainingArguments {
  constructor(init: TrainingArgumentsInit = {}) { super("dpo", init, "DPOConfig"); }
}
/** TRL's KTOConfig: unpaired rows (prompt, completion, label), desirable_weight / undesirable_weight. */
export class KTOConfig extends TrainingArguments {
  constructor(init: TrainingArgumentsInit = {}) { super("kto", init, "KTOConfig"); }
}
/** TRL's CPOConfig: loss_type sigmoid | hinge | ipo | simpo | alphapo (SimPO: loss_type "simpo", cpo_alpha 0). */
export class CPOConfig extends TrainingArguments {
  constructor(init: TrainingArgumentsInit = {}) { super("cpo", init, "CPOConfig"); }
}
/** TRL's SFTConfig: text, prompt/completion or conversational rows; packing, completion_only_loss, assistant_only_loss. */
export class SFTConfig extends TrainingArguments {
  constructor(init: TrainingArgumentsInit = {}) { super("sft", init, "SFTConfig"); }
}

/** PEFT's LoraConfig keys, typed by the lora_* keys of the same table. */
export interface LoraConfigInit {
  r?: TrainConfig["lora_r"];
  lora_alpha?: TrainConfig["lora_alpha"];
  lora_dropout?: TrainConfig["lora_dropout"];
  target_modules?: TrainConfig["lora_target_modules"];
  use_rslora?: TrainConfig["use_rslora"];
  use_dora?: TrainConfig["use_dora"];
  task_type?: TrainConfig["lora_task_type"];
}

/** LoraConfig key → the config key it sets (TRL's ModelConfig names). */
const LORA_KEYS = { r: "lora_r", lora_alpha: "lora_alpha", lora_dropout: "lora_dropout", target_modules: "lora_target_modules", use_rslora: "use_rslora", use_dora: "use_dora", task_type: "lora_task_type" } as const satisfies Record<keyof LoraConfigInit, keyof TrainConfig>;

/** PEFT's LoraConfig; given to a trainer as peft_config, it trains a LoRA adapter (use_peft: true). */
export class LoraConfig {
  readonly r: number;
  readonly lora_alpha: number;
  readonly lora_dropout: number;
  readonly target_modules: TrainConfig["lora_target_modules"];
  readonly use_rslora: boolean;
  readonly use_dora: boolean;
  readonly task_type: TrainConfig["lora_task_type"];
  constructor(init: LoraConfigInit = {}) {
    const args: Record<string, unknown> = { use_peft: true };
    for (const [k, v] of Object.entries(init)) {
      if (!Object.hasOwn(LORA_KEYS, k)) throw new TypeError(`LoraConfig: unknown key "${k}" (keys: ${Object.keys(LORA_KEYS).join(", ")})`);
      if (v !== undefined) args[LORA_KEYS[k as keyof LoraConfigInit]] = v;
    }
    // checked and defaulted by the same table as the trainers' lora_* keys (with use_peft, TRL's CLI defaults)
    const { config } = resolveConfig({ ...args, method: "sft" }, "LoraConfig", [], { modelAndData: true });
    this.r = config.lora_r;
    this.lora_alpha = config.lora_alpha;
    this.lora_dropout = config.lora_dropout;
    this.target_modules = config.lora_target_modules;
    this.use_rslora = config.use_rslora;
    this.use_dora = config.use_dora;
    this.task_type = config.lora_task_type;
  }
  /** The trainer config keys this LoraConfig sets. */
  toTrainingKeys(): Record<string, unknown> {
    return Object.fromEntries(Object.entries(LORA_KEYS).map(([k, to]) => [to, this[k as keyof LoraConfigInit]]));
  }
}
