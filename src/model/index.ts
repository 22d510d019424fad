/** The model runtime's public API. */
export { loadModel, LlamaModel, type LoadModelOptions } from './model.js';
export {
  forwardLogits,
  forwardHidden,
  lmHead,
  fopeCoefficients,
  inferenceOps,
  RotaryProvider,
  type ForwardOptions,
  type TokenIds,
} from './llama.js';
export { decoderLayer, selfAttention, mapWeights, type DecoderContext, type LayerOps, type LayerWeights } from './decoder.js';
export { KvCache, type KvCacheOptions } from './cache.js';
export { TokenDecoder, type TokenDecoderOptions } from './decode-step.js';
export {
  blockwiseAttention,
  fullAttention,
  kvBlocks,
  DEFAULT_KEY_BLOCK,
  DEFAULT_QUERY_BLOCK,
  type AttentionOptions,
  type KvBlock,
} from './attention.js';
export { rmsNorm, linear, silu, swiGlu, type MlpWeights } from './layers.js';
export {
  applyRotaryTf,
  cosSinTable,
  rotaryTables,
  ropeSeqLen,
  type FopeCoefficientData,
  type RotaryTables,
} from './rotary.js';
export {
  loadWeights,
  expectedWeights,
  canonicalWeightName,
  detectFopeLayout,
  fopeCoefNames,
  checkFopeCoefShape,
  weight,
  isLinearWeight,
  transpose2d,
  TRANSPOSED_SUFFIX,
  type WeightMap,
  type FopeLayout,
  type LoadWeightsOptions,
  type LoadedWeights,
} from './weights.js';
export { generate, sampleToken, argmax, type GenerateOptions, type GenerateResult, type SamplingOptions } from './generate.js';
export { MAX_ABS_WEIGHT, firstNonFinite, checkWeightValues, checkFiniteResult, checkFiniteValues } from './finite.js';
export { withTimeLimit, TimeLimitExceeded } from './time-limit.js';
export {
  loadTokenizer,
  textTokenizer,
  DEFAULT_TOKENIZE_LIMIT_MS,
  TOKENIZE_MS_PER_CHAR,
  type TokenizerLimits,
  HfTokenizerClass,
  type TextTokenizer,
  type HfTokenizer,
  type HfTokenizerConstructor,
  type HfEncoding,
} from './tokenizer.js';
