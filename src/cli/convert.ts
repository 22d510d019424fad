import type { CommandModule } from 'yargs';
import { convertModel } from '../convert/convert.js';
import type { OutputDtype } from '../convert/plan.js';
import type { FopeLayout } from '../convert/fope-layout.js';
import { ARCH_NAMES, type ArchName } from '../config/fope-arch.js';
import { sourceOptions, withModelArgument, withReporter, withSourceOptions, type SourceArgs } from './common.js';
import { printJson } from './output.js';

interface ConvertArgs extends SourceArgs {
  model: string;
  out: string;
  'init-factor': number;
  'clip-length'?: number;
  'num-inv-freq'?: number;
  'sep-head': boolean;
  layout: FopeLayout;
  'sin-pad': number;
  seed: number;
  yarn?: number;
  'original-length'?: number;
  'beta-fast': number;
  'beta-slow': number;
  dtype: OutputDtype;
  hash: boolean;
  force: boolean;
  'arch-name': ArchName;
}

export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: 'convert <model>',
  describe: 'rewrite the rotary embedding into FoPE (optionally with YaRN) and write safetensors',
  builder: (y) =>
    withModelArgument(withSourceOptions(y))
      .option('out', { alias: 'o', type: 'string', demandOption: true, describe: 'output folder' })
      .option('init-factor', { type: 'number', default: 0.1, describe: 'xavier gain of the Fourier coefficients (fope_init_factor)' })
      .option('clip-length', { type: 'number', describe: 'clip frequencies that do not complete a period within L tokens (default max_position_embeddings)' })
      .option('num-inv-freq', { type: 'number', describe: 'keep exactly K frequencies (overrides --clip-length)' })
      .option('sep-head', { type: 'boolean', default: true, describe: 'separate coefficients per KV head (--no-sep-head: one [K,K] pair)' })
      .option('layout', { choices: ['shared', 'per-layer'] as const, default: 'shared' as const, describe: 'one coefficient pair for all layers, or one per layer' })
      .option('sin-pad', { type: 'number', choices: [1, 0], default: 1, describe: 'value of the padded sin slots (1 as every trained FoPE model)' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the coefficient init' })
      .option('yarn', { type: 'number', describe: 'add YaRN scaling with this factor' })
      .option('original-length', { type: 'number', describe: 'YaRN original length (default current max_position_embeddings)' })
      .option('beta-fast', { type: 'number', default: 32, describe: 'YaRN beta_fast' })
      .option('beta-slow', { type: 'number', default: 1, describe: 'YaRN beta_slow' })
      .option('dtype', { choices: ['keep', 'f32', 'bf16', 'f16'] as const, default: 'keep' as const, describe: 'weights dtype of the output' })
      .option('arch-name', {
        choices: ARCH_NAMES as ArchName[],
        default: 'fope' as ArchName,
        describe: 'fope: remote-code model <base>_fope with its .py files (transformers/vLLM run FoPE); keep: stock names (lmdeploy --backend pytorch only)',
      })
      .option('hash', { type: 'boolean', default: false, describe: 'compute the sha256 of every source file for fopeify.json' })
      .option('force', { type: 'boolean', default: false, describe: 'replace a non-empty output folder' })
      .example('fopeify convert HuggingFaceTB/SmolLM2-135M -o smollm2-fope --yarn 4', '') as never,
  handler: async (argv) => {
    await withReporter(argv, async (reporter) => {
      reporter.update(`converting ${argv.model}`);
      const r = await convertModel({
        model: argv.model,
        outDir: argv.out,
        initFactor: argv['init-factor'],
        clipLength: argv['clip-length'],
        numInvFreq: argv['num-inv-freq'],
        sepHead: argv['sep-head'],
        layout: argv.layout,
        sinPad: argv['sin-pad'] === 0 ? 0 : 1,
        seed: argv.seed,
        yarn: argv.yarn,
        originalLength: argv['original-length'],
        betaFast: argv['beta-fast'],
        betaSlow: argv['beta-slow'],
        dtype: argv.dtype,
        hash: argv.hash,
        force: argv.force,
        archName: argv['arch-name'],
        ...sourceOptions(argv, reporter),
        onStep: (t) => reporter.update(`converting ${argv.model}: ${t}`),
      });
      reporter.stop();
      if (argv.json) {
        printJson(r);
        return;
      }
      const linked = r.shards.filter((s) => s.action === 'linked').length;
      const lines = [
        `wrote ${r.outDir} in ${r.seconds.toFixed(2)} s`,
        `  FoPE keeps K=${r.k} of ${r.headDimHalf} frequencies (clip length ${r.clipLength} tokens); coefficients [${r.coefficientShape.join(', ')}] × ${r.coefficientNames.length / 2}`,
        `  clipped wavelengths (tokens): ${r.clipped.length ? r.clipped.map((c) => c.wavelength.toFixed(0)).join(', ') : 'none'}`,
        `  max_position_embeddings ${r.maxPositionEmbeddings}${r.attentionFactor !== 1 ? `, attention factor ${r.attentionFactor.toFixed(6)}` : ''}`,
        `  shards: ${r.shards.map((s) => `${s.file} (${s.action})`).join(', ')}${linked ? '' : ''}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
  },
};
