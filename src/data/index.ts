// Public face of the data pipeline: readers, TRL formats, tokenizer + chat template, tokenization rules,
// truncation, collation, sampling and prepareDataset. Re-exports only; no logic lives here.
export { DataError } from "./errors.ts";
export { resolveDataFiles, readRecords, fileFormat, type RawRecord, type FileFormat } from "./readers.ts";
export {
  loadExamples, extractPrompt, unpairExamples, isConversational, columnNames,
  type Message, type Text, type PairExample, type UnpairedExample, type LoadedExamples, type LoadOptions, type ColumnOptions, type RowRef,
} from "./formats.ts";
export { loadTokenizer, cutAfterFinalMessage, type Tokenizer, type ChatTemplateOptions, type LoadTokenizerOptions } from "./tokenizer.ts";
export { splitConversation, TemplateSplitError, type SplitText } from "./template.ts";
export {
  METHODS, usesOrpoRules, buildTokenizedAnswer, tokenizePairOrpo, tokenizeJoint, withEosText, TokenizeError,
  type Method, type TokenizedPair, type TokenizedUnpaired,
} from "./tokenize.ts";
export { truncatePair, truncateUnpaired, truncationOptions, type TruncationOptions, type TruncationMode, type DropReason } from "./truncate.ts";
export { collatePairs, collateUnpaired, type PairBatch, type UnpairedBatch, type CollateOptions } from "./collate.ts";
export { batchIndices, seededRandom, permutation, pairLengths, unpairedLengths, type BatchIndexOptions } from "./sampler.ts";
export { cacheKey, cachePath, DEFAULT_CACHE_DIR, PIPELINE_VERSION } from "./cache.ts";
export { prepareDataset, type DataOptions, type PrepStats, type PreparedDataset } from "./prepare.ts";
