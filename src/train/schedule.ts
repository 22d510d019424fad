import type { TrainSettings } from './recipe.js';

/** Learning rate at a 0-based optimizer step: linear warmup, then constant, cosine or linear decay. */
export function learningRate(s: Pick<TrainSettings, 'lr' | 'warmupSteps' | 'schedule' | 'steps' | 'minLrRatio'>, step: number): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (s.schedule === 'constant') return s.lr;
  const span = Math.max(1, s.steps - s.warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - s.warmupSteps) / span));
  const min = s.lr * s.minLrRatio;
  if (s.schedule === 'linear') return s.lr - (s.lr - min) * progress;
  return min + 0.5 * (s.lr - min) * (1 + Math.cos(Math.PI * progress));
}
