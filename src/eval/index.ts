/** Long-context evaluation: passkey / needle retrieval and perplexity, and their reports (figures: src/plot). */
export { runNeedle, needleSettings, NEEDLE_DEFAULTS, type NeedleOptions, type NeedleProgress } from './needle.js';
export {
  buildPasskeyPrompt,
  buildNiahPrompt,
  passkeyText,
  niahText,
  passkeyFor,
  niahNeedleFor,
  cellRandom,
  fitFiller,
  sentenceStarts,
  previousSentenceBoundary,
  PASSKEY_TASK,
  PASSKEY_GARBAGE,
  PASSKEY_QUESTION,
  NIAH_TASK,
  NIAH_CITIES,
  BUILTIN_HAYSTACK,
  type NeedleTask,
  type NeedlePrompt,
  type NiahNeedle,
  type BuildOptions,
  type CountTokens,
} from './prompts.js';
export { scoreCell, scoreGenerate, scoreTeacherForced, teacherForcedIds, firstInteger, type ScoringMode, type CellOutcome } from './scoring.js';
export { loadEvalModel, runtimeLoader, type EvalModel, type EvalModelLoader, type EvalTokenizer, type RuntimeLoaderOptions } from './runner.js';
export { readRecords, appendRecord, recordKey, type NeedleRecord } from './records.js';
export {
  summarize,
  summaryCsv,
  summaryModels,
  heatmapPanels,
  colorTable,
  type NeedleSummary,
  type NeedleSettings,
  type NeedleLengthResult,
  type NeedleCellResult,
} from './summary.js';
export {
  writeNeedleReport,
  writePerplexityReport,
  writeReport,
  heatmapFiles,
  modelSlugs,
  RESULTS_FILE,
  SUMMARY_JSON,
  SUMMARY_CSV,
  PPL_JSON,
  REPORT_HTML,
  type PerplexitySummary,
  type PerplexityReportInput,
} from './report.js';
