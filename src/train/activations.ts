/**
 * Which decoder layers keep their activations for the backward pass, and which are recomputed
 * (gradient checkpointing, grad.ts `recomputed`). Keeping a layer saves its forward pass in the
 * backward pass (about a fifth of a step on a CPU) and costs memory linear in B·T; recomputing it keeps
 * one tensor per layer boundary. The policy:
 *  - 'always': every layer is recomputed (least memory);
 *  - 'never': every layer keeps its activations (fastest, most memory);
 *  - 'auto': as many layers keep theirs as fit the activation budget, the rest are recomputed.
 * Pure: shapes and numbers in, a plan out (no tfjs).
 */
import os from 'node:os';
import type { ModelSpec } from '../config/model-spec.js';
import { badOption } from '../errors.js';

export const RECOMPUTE_POLICIES = ['auto', 'always', 'never'] as const;
export type RecomputePolicy = (typeof RECOMPUTE_POLICIES)[number];

const GIB = 2 ** 30;

/**
 * The default activation budget: a quarter of the machine's memory, at most 8 GiB. The rest of a step
 * (weights, their gradients, AdamW's two moments: four copies of the trained parameters, plus the
 * boundaries and one layer's recomputation) must fit next to it, and the machine is rarely ours alone;
 * 8 GiB caps what a large machine gives to a speed-up of at most one forward pass per layer (about
 * 20 %) — past that, memory is better spent on a longer sequence or a larger batch.
 */
export function defaultActivationBudget(totalMemoryBytes = os.totalmem()): number {
  return Math.min(Math.floor(totalMemoryBytes / 4), 8 * GIB);
}

/** What a layer's estimate depends on besides the model's dimensions. */
export interface LayerMemoryShape {
  /** q/k/v projections with biases (Qwen2). */
  biases: boolean;
  /** Elements of the layer's LoRA-targeted weights (their merged copies live through the step when kept). */
  loraElements: number;
}

/**
 * Bytes one decoder layer holds until the end of the step's backward pass when its activations are kept,
 * for `tokens` = B·T tokens (float32), beyond what a recomputed layer holds (its input, the boundary).
 * Two parts, both counted from the layer's tensors (decoder.ts with the trainer's ops):
 *  - what the tape saves for the backward pass: the normed input, attention output, mid residual, normed
 *    MLP input and MLP output (5·H); the q/k/v projections (held by the head split's reshape), q's heads
 *    before and after the rotation, the attention output o and its merged heads (5·Q + 2·K); k's heads
 *    before and after the rotation and v's (3·K); gate, up, σ(gate) and the activation (4·I); the flash
 *    attention's row log-sum-exp (nH) and two inverse RMS (2);
 *  - the gradients of those intermediates: tfjs's `gradients` frees neither the tape's saved tensors nor
 *    the intermediate gradients before the whole backward pass ends (a recomputed layer's nested
 *    backward frees its own when it returns): 9·H + 5·Q + 5·K + 3·I.
 * A census of the tape and of the backward pass's live tensors (SmolLM2-135M, 512 tokens) finds 25.2 MiB
 * saved and 26.7 MiB of gradients per layer, against 25.1 and 26.6 here; the peak RSS of a step grows by
 * 80–98 % of this estimate per kept layer (512–2048 tokens; the allocator reuses some freed buffers), so a
 * budget errs on the safe side.
 * Those counts are of the head-major layer; with the native kernels' token-major attention (no head
 * copies of q, k, v, o or their gradients) a kept layer holds less, and the estimate errs higher still.
 * Biases add the pre-bias projections (Q + 2K); q/k norm adds the normed heads, their gradients and inverse
 * RMS (2·(Q + K) + nH + nKv); a LoRA-merged weight W + s·BA is held as two copies and three gradients.
 */
export function keptLayerBytes(spec: Pick<ModelSpec, 'hiddenSize' | 'intermediateSize' | 'numHeads' | 'numKvHeads' | 'headDim' | 'qkNorm'>, tokens: number, shape: LayerMemoryShape): number {
  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const Q = spec.numHeads * spec.headDim;
  const K = spec.numKvHeads * spec.headDim;
  const saved = 5 * H + 5 * Q + 5 * K + 4 * I + spec.numHeads + 2;
  const grads = 9 * H + 5 * Q + 5 * K + 3 * I;
  const bias = shape.biases ? Q + 2 * K : 0;
  const qkNorm = spec.qkNorm ? 2 * (Q + K) + spec.numHeads + spec.numKvHeads : 0;
  return 4 * (tokens * (saved + grads + bias + qkNorm) + 5 * shape.loraElements);
}

/** A step's decision: which layers keep their activations. */
export interface ActivationPlan {
  policy: RecomputePolicy;
  /** Tokens of one micro-batch (B·T) the decision is for. */
  tokens: number;
  /** The budget 'auto' filled (bytes). */
  budgetBytes: number;
  /** keptLayerBytes of one layer at these tokens. */
  layerBytes: number;
  /** Layers that keep their activations, and layers recomputed in the backward pass. */
  kept: number;
  recomputed: number;
  /** keptLayerBytes × kept: the estimated extra memory of the kept layers. */
  keptBytes: number;
}

/**
 * The plan for `layers` layers of `layerBytes` each. Which layers keep theirs changes neither memory nor
 * time (the kept activations all live until the backward pass ends); the last `kept` layers do, so that
 * the plan reads as "the first `recomputed` layers are recomputed".
 */
export function planActivations(policy: RecomputePolicy, layers: number, tokens: number, layerBytes: number, budgetBytes: number): ActivationPlan {
  const kept = policy === 'never' ? layers : policy === 'always' ? 0 : Math.min(layers, Math.floor(budgetBytes / Math.max(1, layerBytes)));
  return { policy, tokens, budgetBytes, layerBytes, kept, recomputed: layers - kept, keptBytes: kept * layerBytes };
}

/** Does layer i (0-based) of a plan over `layers` layers keep its activations? */
export function keepsLayer(plan: ActivationPlan, i: number): boolean {
  return i >= plan.recomputed;
}

/** The policy option, checked (default 'auto'). */
export function checkRecompute(value: unknown, option = 'recompute'): RecomputePolicy {
  const v = value ?? 'auto';
  if (!(RECOMPUTE_POLICIES as readonly unknown[]).includes(v)) {
    throw badOption(option, `\`${option}\` must be ${RECOMPUTE_POLICIES.join(', ')} (got ${JSON.stringify(value)})`);
  }
  return v as RecomputePolicy;
}

/** The budget option in bytes, checked (undefined: the default, which depends on the backend — see Trainer.create). */
export function checkActivationBudget(value: unknown, option = 'activationBudgetBytes'): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw badOption(option, `\`${option}\` must be a number of bytes ≥ 0 (got ${JSON.stringify(value)})`);
  }
  return Math.floor(value);
}

/** One line for logs: "activations: 12 of 30 layers kept (1.2 GiB est.), 18 recomputed (auto, budget 8 GiB)". */
export function describeActivations(p: ActivationPlan): string {
  const gib = (b: number) => `${(b / GIB).toFixed(b < GIB ? 2 : 1)} GiB`;
  const budget = p.policy === 'auto' ? `, budget ${gib(p.budgetBytes)}` : '';
  return `activations: ${p.kept} of ${p.kept + p.recomputed} layers kept (${gib(p.keptBytes)} est. at ${p.tokens} tokens), ${p.recomputed} recomputed (--recompute ${p.policy}${budget})`;
}
