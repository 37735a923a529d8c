// preftune as a library: `import { ORPOConfig, ORPOTrainer, AutoModelForCausalLM, load_dataset } from "preftune"`.
// The public API (src/api) and the error classes callers branch on; docs/api.md documents every export here
// (a test keeps it so). Re-exports only: no logic lives here.
export { TrainingArguments, ORPOConfig, DPOConfig, KTOConfig, CPOConfig, SFTConfig, LoraConfig, type TrainingArgumentsInit, type LoraConfigInit } from "./api/config.ts";
export { Trainer, ORPOTrainer, DPOTrainer, KTOTrainer, CPOTrainer, SFTTrainer, type TrainerInit, type TrainerCallback, type TrainerState, type TrainOutput } from "./api/trainer.ts";
export { AutoModelForCausalLM, AutoTokenizer, PeftModel, PreTrainedModel, type PreTrainedTokenizer, type FromPretrainedOptions, type ModelDtype } from "./api/models.ts";
export { load_dataset, Dataset, type DatasetDict, type LoadDatasetOptions, type Row } from "./api/datasets.ts";
export { Trainer as TrainingRun, train, type TrainOptions, type TrainResult } from "./train/trainer.ts";
export { score, type ScoreOptions, type ScoreSummary } from "./eval/pairwise.ts";
export { ConfigError } from "./train/config.ts";
export { DataError } from "./data/errors.ts";
export { ModelLoadError } from "./models/errors.ts";
export { TrainingDivergedError } from "./train/guards.ts";
export { GenerationConfigError } from "./generate/config.ts";
export type { LogEntry } from "./train/metrics.ts";
export type { GenerateResult } from "./generate/types.ts";
