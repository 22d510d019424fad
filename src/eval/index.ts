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
  type NeedlePrompt,
  type NiahNeedle,
  type BuildOptions,
  type CountTokens,
} from './prompts.js';
export { scoreCell, scoreGenerate, scoreTeacherForced, teacherForcedIds, firstInteger, type CellOutcome } from './scoring.js';
export { loadEvalModel, runtimeLoader, type EvalModel, type EvalModelLoader, type EvalTokenizer, type RuntimeLoaderOptions } from './runner.js';
export { readRecords, appendRecord, recordKey } from './records.js';
export {
  summarize,
  summaryCsv,
  summaryModels,
  heatmapPanels,
  colorTable,
} from './summary.js';
export {
  writeNeedleReport,
  writePerplexityReport,
  writeReport,
  heatmapFiles,
  modelSlugs,
  SUMMARY_CSV,
  REPORT_HTML,
  type PerplexityReportInput,
} from './report.js';
export {
  RESULTS_FILE,
  SUMMARY_JSON,
  PPL_JSON,
  type NeedleTask,
  type ScoringMode,
  type NeedleRecord,
  type NeedleSummary,
  type NeedleSettings,
  type NeedleLengthResult,
  type NeedleCellResult,
  type PerplexitySummary,
} from '../io/formats.js';
