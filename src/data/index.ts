// Public face of the data pipeline: readers, dataset resolution (local / Hugging Face cache) and mixtures, TRL
// formats, tokenizer + chat template, tokenization rules, SFT sequences, truncation, collation, packing,
// sampling and prepareDataset. Re-exports only; no logic lives here.
export { DataError } from "./errors.ts";
export { resolveDataFiles, readRecords, fileFormat, maxRowBytes, DEFAULT_MAX_ROW_BYTES, MAX_JSON_ARRAY_BYTES, type RawRecord, type FileFormat, type DataSource } from "./readers.ts";
export {
  resolveDataset, datasetSplits, hubCacheDir, hubSnapshot, hubRepoFolder, isRepoId, globToRegExp,
  type ResolvedDataset, type DatasetLocation,
} from "./hub.ts";
export { resolveDatasetKeys, type DatasetKeys, type DatasetSources } from "./datasets.ts";
export {
  parseMixture, loadMixture,
  type MixtureSpec, type DatasetMixture, type DatasetMixer, type MixtureDataset, type MixtureData, type MixtureSourceStats,
} from "./mixture.ts";
export {
  loadExamples, toDataSource, extractPrompt, unpairExamples, isConversational, columnNames,
  type Message, type Text, type PairExample, type UnpairedExample, type LmExample, type LoadedExamples, type LoadOptions, type ColumnOptions, type RowRef,
} from "./formats.ts";
export { loadTokenizer, cutAfterFinalMessage, hasGenerationBlocks, TokenizerBudgetError, DEFAULT_TIMEOUT_MS, type Tokenizer, type ChatTemplateOptions, type LoadTokenizerOptions } from "./tokenizer.ts";
export { splitConversation, TemplateSplitError, type SplitText } from "./template.ts";
export {
  METHODS, usesOrpoRules, buildTokenizedAnswer, tokenizePairOrpo, tokenizeJoint, encodeText, withEosText, TokenizeError,
  type Method, type TokenizedPair, type TokenizedUnpaired,
} from "./tokenize.ts";
export { truncatePair, truncateUnpaired, truncationOptions, type TruncationOptions, type TruncationMode, type DropReason } from "./truncate.ts";
export { collatePairs, collateUnpaired, withKlCompletions, padRows, checkPadToMultipleOf, MAX_PAD_TO_MULTIPLE_OF, type PairBatch, type UnpairedBatch, type CollateOptions } from "./collate.ts";
export {
  sftTextIds, sftMessages, assistantCharSpans, charSpansToTokenMask, truncateMasked, rowFromMask, maskedFromRow, hasTargets,
  type MaskedIds, type AssistantMaskMethod,
} from "./sft.ts";
export {
  packRows, collatePacked, packedLengths, checkPackingStrategy, PACKING_STRATEGIES,
  type PackedRow, type PackOptions, type PackStats, type PackingStrategy,
} from "./packing.ts";
export { batchIndices, seededRandom, permutation, pairLengths, unpairedLengths, type BatchIndexOptions } from "./sampler.ts";
export { cacheKey, cachePath, DEFAULT_CACHE_DIR, PIPELINE_VERSION } from "./cache.ts";
export { TextBudget, MARGIN_TOKENS, KEEP_OTHER_END, type Side } from "./budget.ts";
export { prepareDataset, type DataOptions, type PrepStats, type PreparedDataset } from "./prepare.ts";
