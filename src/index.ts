/**
 * fopeify's library API. Every CLI command is one of these functions; the CLI only parses flags and prints.
 */
export { FopeifyError, type ErrorCode } from './errors.js';
export { VERSION } from './version.js';

// model sources
export { resolveModel } from './hub/resolve.js';
export type { ModelSourceOptions, ResolvedModel, SourceFile, DownloadProgress } from './hub/source.js';

// safetensors and checkpoints
export { SafetensorsFile, writeSafetensors, writeShardedSafetensors, parseHeader, type TensorInfo, type TensorToWrite } from './io/safetensors.js';
export { Checkpoint } from './io/checkpoint.js';
export { ModelFolder, openRegularFile, MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_TOKENIZER_BYTES, MAX_JSON_DEPTH, type ModelFile, type IgnoredEntry, type OpenModelFile } from './io/model-folder.js';
export { decodeToF32, encodeFromF32, f32ToBf16Bits, bf16BitsToF32, f32ToF16Bits, f16BitsToF32, type Dtype, type FloatDtype } from './io/dtype.js';

// config and RoPE / FoPE math
export { parseModelConfig, type ModelSpec, type RopeSpec, type FopeSpec, type RopeType } from './config/model-spec.js';
export { loadModelSpec } from './config/load.js';
export { CONFIG_LIMITS } from './config/fields.js';
export { ROPE_VARIANTS, ropeFrequencies, defaultInvFreq, yarnFrequencies, type RopeFrequencies } from './rope/inv-freq.js';
export { fopeKeptCount, initFopeCoefficients, fopeCosSin, ropeCosSin, applyRotary, type CosSinTable } from './rope/fope.js';

// commands
export { inspectModel, type InspectOptions, type InspectReport } from './inspect/inspect.js';
export { convertModel, type ConvertOptions, type ConvertResult } from './convert/convert.js';
export { planConversion, type ConvertSettings, type ConversionPlan } from './convert/plan.js';
export { findFopeCoefficients } from './convert/fope-layout.js';

// fixtures (tiny checkpoints for tests and benchmarks)
export { writeTinyCheckpoint, SMOLLM2_135M_SHAPE, TINY_KINDS, type TinyKind } from './testing/tiny-checkpoint.js';

// runtime, evaluation, training, backends, Hub, demo: each stage's full API
export * from './model/index.js';
export * from './eval/index.js';
export * from './plot/index.js';
export * from './train/index.js';
export * from './backend/index.js';
export * from './hub/index.js';
// Both eval and hub name a NeedleSummary; the library's is the evaluation's (hub's is its card-reading view).
export type { NeedleSummary } from './eval/index.js';
export { runDemo, demoPlan, demoVerdict, type DemoOptions, type DemoResult, type DemoPlan } from './demo/demo.js';

// PyTorch bridge: the Python files of FoPE folders, a python with torch, `--engine torch`, the engine table
export { REMOTE_CODE_FILES, writeRemoteCode, refreshRemoteCode, missingRemoteCode, pythonPackageDir } from './bridge/remote-code.js';
export { findTorchPython, type TorchPython, type FindPythonOptions } from './bridge/python.js';
export { torchLogits, torchGenerate, ENGINES, type Engine } from './bridge/torch-engine.js';
export { engineSupport, howToLoadMarkdown, type EngineSupport } from './bridge/engines.js';
export { namedFopeConfig, fopeModelType, fopeArchitecture, type ArchName } from './config/fope-arch.js';

// `fopeify study`: the paper's comparison and ablation across seeds, with 95 % intervals and a verdict
export { runStudy, STUDY_JSON, type StudyOptions, type StudyResult, type StudyCell } from './study/study.js';
export { studyPlan, checkPlan, parseVariants, VARIANTS, VARIANT_IDS, STUDY_INIT_FACTOR, type StudyPlan, type Variant, type VariantId, type VariantConversion } from './study/plan.js';
export { aggregateStudy, type StudyAggregate, type SeededInterval } from './study/aggregate.js';
export { studyVerdict, type StudyVerdict, type VariantScores, type ClaimCheck } from './study/verdict.js';
export { meanInterval, pairedDifference, effectiveLength, tQuantile975, INTERVAL_METHOD, type Interval, type PairedDifference, type Comparison } from './study/stats.js';
export { studyTables, writeStudyReport, type StudyTables } from './study/report.js';
