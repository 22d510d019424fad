"""fopeify's PyTorch trainer: what `fopeify finetune --engine torch` runs under torchrun.

fopeify (TypeScript) resolves the recipe, packs the data and writes a job folder (job.json, the token
files, the prepared model); this package trains it with the plain PyTorch core of `fopeify_torch` (one
implementation of the model math) and writes metrics.jsonl, checkpoints and the trained weights back.
The update rules mirror src/train/ (optimizer.ts, schedule.ts, lora.ts) so both engines train alike.
"""
