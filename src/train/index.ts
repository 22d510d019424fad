/** Long-context fine-tuning (and training from scratch): the public API of src/train. */
export {
  finetune,
  trainPlanned,
  SYNTHETIC_PASSKEY,
  SYNTHETIC_DOCUMENTS,
  type FinetuneOptions,
  type FinetuneResult,
  type StepInfo,
  type TrainCallbacks,
  type TrainPlannedOptions,
} from './finetune.js';
export { prepareRun, planRun, planSettings, evaluatesAt, checkpointsAt, stopsAt, type RunOptions, type RunInputs, type RunPlan } from './run-plan.js';
export { Trainer, type BatchSource, type TrainerData, type TrainerOptions, type TrainStepResult, type EvalResult, type TrainerWeights } from './trainer.js';
export {
  loadRecipe,
  listRecipes,
  listRecipeNames,
  recipesDir,
  resolveTrainSettings,
  DEFAULT_TRAIN,
  type Recipe,
  type RecipeConvert,
  type TrainSettings,
  type LoraSettings,
  type Trainable,
  type Schedule,
  type TrainOverrides,
} from './recipe.js';
export { learningRate } from './schedule.js';
export { readDocuments, packChunks, splitHeldOut, PackedDataset, type DataPosition, type Tokenize } from './data.js';
export { AdamW, type AdamWConfig } from './optimizer.js';
export { TrainingModel, type TrainingModelOptions, type Batch } from './model.js';
export { prepareModel, originalLength, yarnConfig, type PreparedModel, type ConversionInfo } from './prepare.js';
export { flashAttention, type FlashAttentionOptions } from './flash-attention.js';
export { recomputed, isolatedGrads, namedGrads } from './grad.js';
export {
  RECOMPUTE_POLICIES,
  defaultActivationBudget,
  keptLayerBytes,
  planActivations,
  describeActivations,
  type RecomputePolicy,
  type ActivationPlan,
} from './activations.js';
export {
  isDirectlyTrainable,
  loraTargetsOf,
  loraNames,
  initLora,
  mergeLora,
  peftAdapterConfig,
  peftTensorName,
  LORA_TARGETS,
} from './lora.js';
export { passkeyChunks, passkeyAccuracy } from './passkey.js';
export {
  saveCheckpoint,
  restoreCheckpoint,
  readCheckpointState,
  latestCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  CHECKPOINTS_DIR,
  type CheckpointState,
} from './checkpoint.js';
export {
  writeModelFolder,
  readMetrics,
  lossCurveSeries,
  LOSS_CURVE_SVG,
  LOSS_CURVE_PNG,
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type OutputDtype,
} from './output.js';
export { METRICS_FILE, SUMMARY_FILE, type MetricsRecord, type FinetuneJson, type FinetuneJsonBase } from '../io/formats.js';
export { finetuneModelCard, type FinetuneCardInput } from './model-card.js';
export { enableTiming, takeTimings } from './timing.js';
