/**
 * Which engines run a FoPE folder correctly, and how to load it (../shared/reference/engines.md, read from
 * the engines' source; [I] = inferred from code, not run). One table for `inspect`, the model cards and the
 * README, so they never disagree.
 */
import type { ArchName } from '../config/fope-arch.js';

export type EngineVerdict = 'runs FoPE' | 'probably runs FoPE' | 'not supported' | 'refuses (loud)' | 'silently runs RoPE' | 'crashes';

export interface EngineSupport {
  engine: string;
  verdict: EngineVerdict;
  /** How to load it there, or what goes wrong. */
  how: string;
}

/** The engine table for a FoPE folder written with remote-code names (`fope`) or the stock names (`keep`). */
export function engineSupport(arch: ArchName): EngineSupport[] {
  if (arch === 'fope') {
    return [
      { engine: 'fopeify', verdict: 'runs FoPE', how: '`fopeify generate|logits|ppl|needle <model>`; `fopeify logits <model> --engine torch` runs the folder\'s own PyTorch code' },
      {
        engine: 'transformers 4.57 / 5.x',
        verdict: 'runs FoPE',
        how: '`AutoModelForCausalLM.from_pretrained(id, trust_remote_code=True)` (run with 5.17; 4.57 written for, untested); without trust_remote_code it refuses the unknown model_type',
      },
      { engine: 'vLLM', verdict: 'probably runs FoPE', how: '`vllm serve <id> --model-impl transformers --trust-remote-code` (its Transformers backend runs the remote code) [I]' },
      { engine: 'SGLang', verdict: 'not supported', how: 'no FoPE outside its Intern-S1-Pro model; the custom architecture name is not one of its models [I]' },
      { engine: 'lmdeploy', verdict: 'not supported', how: 'its PyTorch engine keys on stock architecture names: convert with `--arch-name keep` and use `--backend pytorch` [I]' },
      { engine: 'llama.cpp', verdict: 'refuses (loud)', how: '`convert_hf_to_gguf.py` has no FoPE (cannot map `model.rotary_emb.sin_coef`)' },
    ];
  }
  return [
    { engine: 'fopeify', verdict: 'runs FoPE', how: '`fopeify generate|logits|ppl|needle <model>`' },
    { engine: 'transformers 4.57 / 5.x', verdict: 'silently runs RoPE', how: 'loads with "unrecognized keys" / "weights not used" warnings and ignores the coefficients' },
    { engine: 'vLLM', verdict: 'crashes', how: '`LlamaModel.load_weights` raises KeyError on `rotary_emb.sin_coef`' },
    { engine: 'SGLang', verdict: 'silently runs RoPE', how: 'drops the coefficients with a "not found in params_dict" warning' },
    {
      engine: 'lmdeploy',
      verdict: 'probably runs FoPE',
      how: '`lmdeploy serve api_server <id> --backend pytorch` [I] (its FoPE with `fope_sep_head: false` is broken); the default TurboMind backend silently runs RoPE',
    },
    { engine: 'llama.cpp', verdict: 'refuses (loud)', how: '`convert_hf_to_gguf.py` cannot map `model.rotary_emb.sin_coef`' },
  ];
}

/** The warning for FoPE tensors under a stock model_type (what fopeify wrote before remote code, or `keep`). */
export function stockNameWarning(modelType: string): string {
  return (
    `FoPE coefficients under the stock model_type ${modelType}: transformers, SGLang and lmdeploy's default backend will silently run plain RoPE ` +
    `and vLLM crashes; only fopeify and lmdeploy --backend pytorch run FoPE. Reconvert (default --arch-name fope) for a remote-code folder transformers and vLLM run as FoPE.`
  );
}

function table(rows: EngineSupport[]): string[] {
  return ['| engine | result | how |', '|---|---|---|', ...rows.map((r) => `| ${r.engine} | ${r.verdict} | ${r.how.replace(/\|/g, '\\|')} |`)];
}

/** The "How to load" section of a model card (markdown body, without the heading). `id`: Hub id or folder. */
export function howToLoadMarkdown(arch: ArchName, id: string): string {
  const q = JSON.stringify(id);
  if (arch === 'fope') {
    return [
      'This is remote code under its own architecture name: the FoPE math is in this folder\'s `.py` files',
      '(`modeling_fope.py` wrapping the plain PyTorch core `fope_core.py`), so trust it only as far as you trust this repository.',
      '',
      '```python',
      'from transformers import AutoModelForCausalLM, AutoTokenizer',
      '',
      `model = AutoModelForCausalLM.from_pretrained(${q}, trust_remote_code=True)`,
      `tokenizer = AutoTokenizer.from_pretrained(${q})`,
      '```',
      '',
      'vLLM, through its Transformers backend:',
      '',
      '```bash',
      `vllm serve ${id} --model-impl transformers --trust-remote-code`,
      '```',
      '',
      'fopeify runs it directly (`fopeify generate ' + id + ' --prompt ...`), and `fopeify logits ' + id + ' --ids 1,2,3 --engine torch` runs this folder\'s own PyTorch code for a cross-check.',
      'Without `trust_remote_code=True` transformers refuses the model type instead of silently running RoPE.',
      '',
      ...table(engineSupport('fope')),
      '',
    ].join('\n');
  }
  return [
    'This folder keeps the stock architecture name, so most engines load it **as plain RoPE without an error**. lmdeploy\'s PyTorch engine reads the FoPE keys:',
    '',
    '```bash',
    `lmdeploy serve api_server ${id} --backend pytorch`,
    '```',
    '',
    ...table(engineSupport('keep')),
    '',
  ].join('\n');
}

/** The same table as README-ready markdown rows (both namings). */
export function engineTableMarkdown(): string {
  const fope = engineSupport('fope');
  const keep = engineSupport('keep');
  return [
    '| engine | default output (`<base>_fope`, remote code) | `--arch-name keep` (stock names) |',
    '|---|---|---|',
    ...fope.map((r, i) => `| ${r.engine} | ${r.verdict}: ${r.how.replace(/\|/g, '\\|')} | ${keep[i]!.verdict}: ${keep[i]!.how.replace(/\|/g, '\\|')} |`),
  ].join('\n');
}
