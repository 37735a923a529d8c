// The one table of training methods: for each method, the TRL trainer and config it follows, its data kind, whether
// it needs a reference model, its tokenization rules, its loss family, the loss types it takes with the rules that
// make their parameters valid, and the TRL defaults that differ by method. Config validation (config.ts), data
// preparation (src/data), the objectives (objectives.ts) and the CLI read it; nothing else lists methods.
// Not the loss math (src/losses, which holds each loss's own defaults and parameter rules) and not the generic
// config keys (config.ts).
import { CPO_LOSS_TYPES } from "../losses/cpo.ts";
import { DPO_LOSS_TYPES, DPO_PARAM_RULES, type DpoLossType } from "../losses/dpo.ts";
import { CPO_DEFAULTS, DPO_DEFAULTS, KTO_DEFAULTS, ORPO_DEFAULTS } from "../losses/index.ts";
import { KTO_LOSS_TYPES } from "../losses/kto.ts";

export const METHODS = ["orpo", "dpo", "ipo", "kto", "simpo", "cpo", "sft"] as const;
export type Method = (typeof METHODS)[number];

/** paired: prompt/chosen/rejected; unpaired: prompt/completion/label (KTO); sft: prompt/completion or text. */
export type DataKind = "paired" | "unpaired" | "sft";
/** Which loss of src/losses a method trains with. */
export type LossFamily = "orpo" | "dpo" | "cpo" | "kto" | "sft";
/** The method-specific loss keys (TRL names) a method reads; a config setting one for another method is refused. */
export type LossKey =
  | "beta" | "loss_type" | "loss_weights" | "rpo_alpha" | "label_smoothing" | "f_divergence_type" | "f_alpha_divergence_coef"
  | "desirable_weight" | "undesirable_weight" | "cpo_alpha" | "simpo_gamma" | "alpha";

export interface MethodSpec {
  readonly name: Method;
  readonly trainer: string;                       // the TRL trainer class it follows
  readonly configClass: string;                   // the TRL config class whose keys and defaults it takes
  readonly about: string;                         // one line for --help
  readonly data: DataKind;
  readonly reference: boolean;                    // compares against a reference model (or precomputed reference logps)
  /** orpo: ORPO/CPO's build_tokenized_answer + BOS/EOS added if needed; joint: current DPO/KTO/SFT joint tokenization. */
  readonly tokenization: "orpo" | "joint";
  readonly loss: LossFamily;
  readonly lossTypes: readonly string[];          // accepted values of loss_type
  readonly lossTypeList: boolean;                 // several loss types at once (DPO's list, with loss_weights)
  readonly otherLossTypes?: string;               // what to say about a loss_type it does not take
  readonly keys: readonly LossKey[];              // method-specific keys it reads
  /** TRL defaults that differ by method (keys not named here take their one generic default). */
  readonly defaults: { readonly learning_rate: number; readonly beta: number | null; readonly loss_type: string | readonly string[] | null;
    readonly train_sampling_strategy: "random" | "sequential"; readonly cpo_alpha?: number };
}

const DPO_KEYS: readonly LossKey[] = ["beta", "loss_type", "loss_weights", "rpo_alpha", "label_smoothing", "f_divergence_type", "f_alpha_divergence_coef"];
const CPO_KEYS: readonly LossKey[] = ["beta", "loss_type", "label_smoothing", "cpo_alpha", "simpo_gamma", "alpha"];
const PREF_LR = 1e-6;   // TRL's preference configs (DPOConfig, KTOConfig, ORPOConfig, CPOConfig)

const SPECS: Record<Method, MethodSpec> = {
  orpo: {
    name: "orpo", trainer: "ORPOTrainer", configClass: "ORPOConfig", about: "ORPO: NLL + β·odds-ratio term, reference-free",
    data: "paired", reference: false, tokenization: "orpo", loss: "orpo", lossTypes: [], lossTypeList: false, keys: ["beta"],
    defaults: { learning_rate: PREF_LR, beta: ORPO_DEFAULTS.beta, loss_type: null, train_sampling_strategy: "random" },
  },
  dpo: {
    name: "dpo", trainer: "DPOTrainer", configClass: "DPOConfig", about: "DPO and its loss_type family, against a reference",
    data: "paired", reference: true, tokenization: "joint", loss: "dpo", lossTypes: DPO_LOSS_TYPES, lossTypeList: true, keys: DPO_KEYS,
    defaults: { learning_rate: PREF_LR, beta: DPO_DEFAULTS.beta, loss_type: DPO_DEFAULTS.loss_type, train_sampling_strategy: "random" },
  },
  ipo: {
    name: "ipo", trainer: "DPOTrainer", configClass: "DPOConfig", about: "IPO: DPO with loss_type ipo",
    data: "paired", reference: true, tokenization: "joint", loss: "dpo", lossTypes: ["ipo"], lossTypeList: false,
    otherLossTypes: 'ipo is DPO with loss_type "ipo"; use method dpo for other loss types (or a list)', keys: ["beta", "loss_type", "label_smoothing"],
    defaults: { learning_rate: PREF_LR, beta: DPO_DEFAULTS.beta, loss_type: "ipo", train_sampling_strategy: "random" },
  },
  kto: {
    name: "kto", trainer: "KTOTrainer", configClass: "KTOConfig", about: "KTO on unpaired rows (a desirable flag each), against a reference",
    data: "unpaired", reference: true, tokenization: "joint", loss: "kto", lossTypes: KTO_LOSS_TYPES, lossTypeList: false,
    keys: ["beta", "loss_type", "desirable_weight", "undesirable_weight"],
    // TRL's KTOTrainer reads its data in order (its sampler is sequential)
    defaults: { learning_rate: PREF_LR, beta: KTO_DEFAULTS.beta, loss_type: KTO_DEFAULTS.loss_type, train_sampling_strategy: "sequential" },
  },
  simpo: {
    // TRL's CPOConfig defaults beta 0.1 and cpo_alpha 1; its docs recommend beta ≈ 2 and cpo_alpha 0 for SimPO
    name: "simpo", trainer: "CPOTrainer", configClass: "CPOConfig", about: "SimPO: CPO with loss_type simpo, cpo_alpha 0, beta 2",
    data: "paired", reference: false, tokenization: "orpo", loss: "cpo", lossTypes: ["simpo", "alphapo"], lossTypeList: false,
    otherLossTypes: "simpo is CPO with loss_type simpo (or alphapo); use method cpo for the other CPO loss types", keys: CPO_KEYS,
    defaults: { learning_rate: PREF_LR, beta: 2.0, loss_type: "simpo", train_sampling_strategy: "random", cpo_alpha: 0 },
  },
  cpo: {
    name: "cpo", trainer: "CPOTrainer", configClass: "CPOConfig", about: "CPO (and SimPO/AlphaPO by loss_type), reference-free",
    data: "paired", reference: false, tokenization: "orpo", loss: "cpo", lossTypes: CPO_LOSS_TYPES, lossTypeList: false, keys: CPO_KEYS,
    defaults: { learning_rate: PREF_LR, beta: CPO_DEFAULTS.beta, loss_type: CPO_DEFAULTS.loss_type, train_sampling_strategy: "random", cpo_alpha: CPO_DEFAULTS.cpo_alpha },
  },
  sft: {
    // TRL's nll (chunked_nll is the same loss computed in chunks); dft is not built
    name: "sft", trainer: "SFTTrainer", configClass: "SFTConfig", about: "supervised fine-tuning (token-mean NLL)",
    data: "sft", reference: false, tokenization: "joint", loss: "sft", lossTypes: ["nll", "chunked_nll"], lossTypeList: false,
    otherLossTypes: "only TRL's nll is built (chunked_nll is the same loss); dft is not", keys: ["loss_type"],
    defaults: { learning_rate: 2e-5, beta: null, loss_type: null, train_sampling_strategy: "random" },
  },
};

export const isMethod = (m: unknown): m is Method => typeof m === "string" && (METHODS as readonly string[]).includes(m);

/** The registry entry of `method`; throws naming the known methods for anything else. */
export function methodSpec(method: string): MethodSpec {
  if (!isMethod(method)) throw new Error(`method ${JSON.stringify(method)} is unknown; use one of ${METHODS.join(", ")}`);
  return SPECS[method];
}

/** The methods that match, in METHODS order: methodsWhere((s) => s.reference). */
export function methodsWhere(pred: (s: MethodSpec) => boolean): Method[] {
  return METHODS.filter((m) => pred(SPECS[m]));
}

/** The methods that read `key`. */
export const methodsReading = (key: LossKey): Method[] => methodsWhere((s) => s.keys.includes(key));

/** Methods whose loss compares against a reference model (DPO, IPO, KTO). */
export const needsReference = (method: Method): boolean => methodSpec(method).reference;

/** Rows of unpaired kind (prompt/completion[/label]) for training: KTO and SFT. */
export const trainsOnUnpairedRows = (method: Method): boolean => methodSpec(method).data !== "paired";

/**
 * The generic defaults of the method-specific loss keys (TRL's, from src/losses): the same for every method that
 * reads the key unless MethodSpec.defaults names its own (beta, loss_type, and SimPO's cpo_alpha 0).
 */
export const LOSS_KEY_DEFAULTS = Object.freeze({
  loss_weights: DPO_DEFAULTS.loss_weights ?? null,
  rpo_alpha: null as number | null,
  label_smoothing: DPO_DEFAULTS.label_smoothing,
  f_divergence_type: DPO_DEFAULTS.f_divergence_type!,
  f_alpha_divergence_coef: DPO_DEFAULTS.f_alpha_divergence_coef!,
  desirable_weight: KTO_DEFAULTS.desirable_weight,
  undesirable_weight: KTO_DEFAULTS.undesirable_weight,
  cpo_alpha: CPO_DEFAULTS.cpo_alpha,
  simpo_gamma: CPO_DEFAULTS.simpo_gamma,
  alpha: CPO_DEFAULTS.alpha,
});

/** The default of a method-specific loss key for `method`: its own (MethodSpec.defaults) where it has one, else the generic one. */
export function lossKeyDefault<K extends keyof typeof LOSS_KEY_DEFAULTS>(method: Method, key: K): (typeof LOSS_KEY_DEFAULTS)[K] {
  const own = (methodSpec(method).defaults as Record<string, unknown>)[key];
  return (own ?? LOSS_KEY_DEFAULTS[key]) as (typeof LOSS_KEY_DEFAULTS)[K];
}

/** The loss-related values a method is trained with (TRL keys); absent or null ones take the method's default. */
export interface LossParams {
  loss_type?: string | readonly string[] | null;
  loss_weights?: readonly number[] | null;
  label_smoothing?: number;
  per_device_train_batch_size?: number;   // KTO's KL estimate needs two rows per batch
}

/** The loss types `loss_type` names for `method`, as a list; null/absent: the method's default. */
export function lossTypeList(method: Method, loss_type: string | readonly string[] | null | undefined): string[] {
  const v = loss_type ?? methodSpec(method).defaults.loss_type;
  return v === null ? [] : typeof v === "string" ? [v] : [...v];
}

/**
 * loss_type in the form TRL's config holds it: a list for DPO (DPOConfig turns a string into a one-element list),
 * one string for the methods that take one loss type (a one-element list is its element), null for ORPO/SFT when
 * unset. Call after lossProblems found nothing.
 */
export function normalLossType(method: Method, loss_type: string | readonly string[] | null | undefined): string | string[] | null {
  const s = methodSpec(method);
  const list = lossTypeList(method, loss_type);
  if (list.length === 0) return null;
  return s.lossTypeList ? list : list[0];
}

const show = (v: unknown) => JSON.stringify(v);

/**
 * Every reason `method` cannot train with these loss settings, each naming the key, the value and the fix; empty
 * when the losses of src/losses will accept them at step 1. Config validation and the objectives both call this,
 * so a combination the loss would refuse is refused before anything is loaded.
 */
export function lossProblems(method: Method, p: LossParams): string[] {
  const s = methodSpec(method);
  const out: string[] = [];
  const lt = p.loss_type ?? null;
  if (lt !== null && typeof lt !== "string" && !Array.isArray(lt)) return [`loss_type ${show(lt)}: must be a string or a list of strings`];
  if (s.lossTypes.length === 0) {
    if (lt !== null) out.push(`method ${method} with loss_type ${show(lt)}: ${s.trainer} has no loss_type; remove loss_type`);
    return out;
  }
  if (Array.isArray(lt) && lt.length === 0) return [`loss_type is an empty list: give at least one of ${s.lossTypes.join(", ")}, or null for ${method}'s default`];
  const list = lossTypeList(method, lt);
  if (list.length === 0) return out;   // no loss_type and none by default (sft): the method's one loss
  if (!s.lossTypeList && list.length > 1) {
    return [`method ${method} with loss_type ${show(lt)}: ${method} takes one loss_type (${s.lossTypes.join(", ")})${s.otherLossTypes ? `; ${s.otherLossTypes}` : ""}`];
  }
  for (const t of list) {
    if (s.lossTypes.includes(t)) continue;
    const other = methodsWhere((o) => o.lossTypes.includes(t) && !o.otherLossTypes);
    const hint = s.otherLossTypes ?? `use one of ${s.lossTypes.join(", ")}${other.length ? ` (${t} is a loss_type of method ${other.join(", ")})` : ""}`;
    out.push(`method ${method} with loss_type ${show(t)}: ${hint}`);
  }
  if (out.length) return out;
  if (s.lossTypeList && p.loss_weights != null && p.loss_weights.length !== list.length) {
    out.push(`loss_weights has ${p.loss_weights.length} entries but loss_type has ${list.length} (${list.join(", ")}); give one weight per loss type`);
  }
  if (s.loss === "dpo") {
    const eps = p.label_smoothing ?? LOSS_KEY_DEFAULTS.label_smoothing;
    for (const t of list) {
      const rule = DPO_PARAM_RULES[t as DpoLossType];
      if (rule && !rule.label_smoothing.ok(eps)) out.push(`loss_type ${t} with label_smoothing ${eps}: ${t} needs label_smoothing ${rule.label_smoothing.need}; ${rule.label_smoothing.fix}`);
    }
  }
  if (s.loss === "kto" && list[0] === "kto" && p.per_device_train_batch_size !== undefined && p.per_device_train_batch_size < 2) {
    out.push(`method kto with per_device_train_batch_size ${p.per_device_train_batch_size}: the KL estimate of loss_type kto needs at least 2 rows per batch; set per_device_train_batch_size ≥ 2 (or loss_type apo_zero_unpaired)`);
  }
  return out;
}
