/**
 * The Hub side of fopeify: model sources (folder, cache, download), push, model cards, token masking.
 * Importing this file loads @huggingface/hub; code that only needs local folders imports ./resolve.js,
 * which loads the Hub code lazily.
 */
export { resolveModel, looksLikeHubId } from './resolve.js';
export { resolveHubModel, OPTIONAL_FILES, TOKENIZER_FILES } from './hub-model.js';
export { push, type PushOptions, type PushProgress, type PushResult } from './push.js';
export { buildModelCard, refreshModelCard, hasFopeKeys, type ModelCardInput } from './model-card.js';
export { findEvalReports, parseNeedleSummary, parsePplReport, pickReportModel, type CardEvals, type NeedleSummary, type PplReport } from './card-reports.js';
export { maskToken, redact } from './redact.js';
export { hubCacheDir, hubEndpoint, hfHome, isOffline, resolveToken, tokenFilePath } from './env.js';
export type { DownloadProgress, ModelSourceOptions, ResolvedModel, SourceFile } from './source.js';
