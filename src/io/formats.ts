/**
 * The files fopeify writes for people and other tools to read, named and typed once: the writers and the
 * readers (report pages, model cards, the study, resumed runs) import these. Field names are a contract:
 * add fields, never rename or drop one.
 */
import type { SummaryBase } from '../train/run-common.js';

// ------------------------------------------------------------------ needle / passkey evaluation

export type NeedleTask = 'passkey' | 'niah';
export type ScoringMode = 'generate' | 'teacher-forced';

/** results.jsonl: one record per model × length × depth × trial, appended as each finishes. */
export const RESULTS_FILE = 'results.jsonl';

export interface NeedleRecord {
  model: string;
  context_length: number;
  depth: number;
  trial: number;
  key: number;
  response: string;
  correct: boolean;
  /** Wall time of scoring this cell. */
  seconds: number;
  task: NeedleTask;
  mode: ScoringMode;
  seed: number;
  /** Prompt tokens for this model's tokenizer (the target is context_length). */
  prompt_tokens: number;
  /** Where the key ended up: fraction of the filler before it. */
  depth_actual: number;
  /** niah: which haystack ('builtin' or a sha256 prefix of the text). */
  haystack?: string;
}

/** summary.json: the aggregated needle results (read by report.html, the Hub model card and the study). */
export const SUMMARY_JSON = 'summary.json';

export interface NeedleSettings {
  task: NeedleTask;
  lengths: number[];
  depths: number[];
  trials: number;
  seed: number;
  mode: ScoringMode;
}

export interface NeedleLengthResult {
  model: string;
  context_length: number;
  /** Share of correct records over every depth and trial of this length (0 when none). */
  accuracy: number;
  /** How many records that is (depths × trials when complete). */
  trials: number;
}

export interface NeedleCellResult {
  model: string;
  context_length: number;
  depth: number;
  accuracy: number;
  trials: number;
}

export interface NeedleSummary extends NeedleSettings {
  results: NeedleLengthResult[];
  cells: NeedleCellResult[];
  /** Details of the run beyond the fixed fields (models, haystack, new tokens, reference tokenizer). */
  settings?: Record<string, unknown>;
}

// ------------------------------------------------------------------ perplexity

/** ppl.json: perplexity per model and window (read by report.html and the Hub model card). */
export const PPL_JSON = 'ppl.json';

export interface PerplexitySummary {
  windows: number[];
  results: { model: string; window: number; ppl: number }[];
  /** Optional details (text file, tokens, max windows). */
  settings?: Record<string, unknown>;
  /** Name of the evaluated text (fopeify does not write it; a card shows it when a report gives one). */
  dataset?: string;
}

// ------------------------------------------------------------------ fine-tuning

/** metrics.jsonl: one record per optimizer step (the tfjs trainer and python/fopeify_train both write it). */
export const METRICS_FILE = 'metrics.jsonl';

export interface MetricsRecord {
  step: number;
  loss: number;
  lr: number;
  tokens_per_s: number;
  grad_norm: number;
  tokens: number;
  elapsed_s: number;
  eval_loss?: number;
  eval_ppl?: number;
  passkey_accuracy?: number;
  /** GPU memory held at the peak so far, in bytes (webgpu backend). */
  peak_gpu_bytes?: number;
}

/** finetune.json: the resolved settings, rewritten as the run goes ('training', 'stopped', 'completed'). */
export const SUMMARY_FILE = 'finetune.json';

/**
 * What finetune.json says from the start of a run (both engines): fopeify_finetune (1), model, recipe,
 * settings, conversion, data, backend. Declared with the run plan (train/run-common.ts) for now.
 */
export type FinetuneJsonBase = SummaryBase;

/** finetune.json as a finished (or stopped) run leaves it; the fields after the base come with the results. */
export interface FinetuneJson extends FinetuneJsonBase {
  status: 'training' | 'stopped' | 'completed';
  /** `torch` when python/fopeify_train trained it. */
  engine?: 'torch';
  /** stopped: the last step and its checkpoint folder (relative to the output folder). */
  step?: number;
  checkpoint?: string | null;
  steps_done?: number;
  tokens?: number;
  final_loss?: number | null;
  last_eval?: MetricsRecord | null;
  trainable_parameters?: number;
  parameters?: number;
  seconds?: number;
}

// ------------------------------------------------------------------ conversion provenance

/** fopeify.json: where a converted folder came from and every option it was made with. */
export const FOPEIFY_JSON = 'fopeify.json';

export interface ProvenanceFile {
  path: string;
  size: number;
  sha256?: string;
  sha256_source?: 'hub-cache-blob' | 'lfs-etag' | 'computed';
}

/** A frequency of the conversion: its index in the rotary half, inverse frequency and wavelength (tokens). */
export interface ProvenanceFrequency {
  index: number;
  inv_freq: number;
  wavelength: number;
}

export interface FopeifyJson {
  tool: 'fopeify';
  version: string;
  command: 'convert';
  created_at: string;
  source: { id: string; kind: string; revision: string | null; commit: string | null };
  source_files: ProvenanceFile[];
  hashed_all_files: boolean;
  /** The convert options, by their fopeify.json names (snake_case); null where not given. */
  options: Record<string, unknown>;
  base_model_type: string;
  fope: {
    family: 'B';
    num_inv_freq: number;
    clip_length: number;
    coefficient_shape: number[];
    coefficient_tensors: string[];
    coefficient_init: string;
    yarn_semantics: string | null;
    attention_factor: number;
    kept: ProvenanceFrequency[];
    clipped: ProvenanceFrequency[];
  };
  /** rope_type, rope_theta, dim, max_position_embeddings and the rope parameters of the source. */
  rope: Record<string, unknown>;
  /** Each output shard and how it was made: 'linked' | 'copied' | 'reencoded' | 'written'. */
  output_shards: { file: string; action: string }[];
}
