import type { CommandModule } from 'yargs';
import { inspectModel, type InspectReport } from '../inspect/inspect.js';
import { sourceOptions, withModelArgument, withReporter, withSourceOptions, type SourceArgs } from './common.js';
import { formatTable, printJson } from './output.js';

interface InspectArgs extends SourceArgs {
  model: string;
  length?: number;
}

function fmtCount(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`model         ${r.model}  (${r.source}: ${r.dir})`);
  if (!r.supported) lines.push(`supported     no — ${r.unsupportedReason}`);
  if (r.architecture) lines.push(`architecture  ${r.architecture} (family ${r.family})`);
  const dt = Object.entries(r.dtypes).map(([d, n]) => `${d} ${fmtCount(n)}`).join(', ');
  lines.push(`parameters    ${fmtCount(r.parameters)} (${r.parameters}) in ${r.tensors} tensors, ${r.shards} shard(s); dtype ${dt}`);
  if (r.layers !== undefined) {
    lines.push(`shape         ${r.layers} layers, hidden ${r.hiddenSize}, intermediate ${r.intermediateSize}, vocab ${r.vocabSize}`);
    lines.push(`attention     ${r.heads} heads, ${r.kvHeads} KV heads, head_dim ${r.headDim}${r.qkvBias ? ', q/k/v bias' : ''}${r.qkNorm ? ', q/k norm' : ''}; embeddings ${r.tiedEmbeddings ? 'tied' : 'untied'}`);
  }
  if (r.rope) {
    const params = Object.entries(r.rope.params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
    lines.push(`rope          ${r.rope.type}, theta ${r.rope.theta}, rotary dim ${r.rope.dim}, max_position_embeddings ${r.maxPositionEmbeddings}${params ? `; ${params}` : ''}${r.rope.attentionFactor !== 1 ? `; attention factor ${r.rope.attentionFactor.toFixed(6)}` : ''}`);
  }
  if (r.fope) {
    lines.push(
      `fope          family ${r.fope.family}, K=${r.fope.k}, coefficients [${r.fope.coefficientShape.join(', ')}]${r.fope.perLayer ? ` × ${r.fope.coefficientTensors.length / 2} layers` : ' shared by all layers'}, init_factor ${r.fope.initFactor ?? '?'}, sep_head ${r.fope.sepHead ?? '?'}, sin pad ${r.fope.sinPad}`,
    );
  } else lines.push('fope          no (plain RoPE)');
  if (r.loading) {
    lines.push(
      `loading       ${r.loading.archName === 'fope' ? `remote code, model_type ${r.loading.modelType} (base ${r.loading.baseFamily})` : `stock model_type ${r.loading.modelType}`}:`,
    );
    for (const e of r.loading.engines) lines.push(`  ${e.engine.padEnd(24)} ${e.verdict.padEnd(20)} ${e.how}`);
  }
  for (const w of r.warnings) lines.push(`warning       ${w}`);
  if (r.frequencies) {
    const clipped = r.frequencies.filter((f) => !f.kept).length;
    lines.push('');
    lines.push(`frequencies at L=${r.length}: ${r.keptWithinLength} complete a period within L (kept by FoPE), ${clipped} do not (${r.fope ? 'clipped' : 'FoPE removes them'})`);
    lines.push(
      formatTable(
        ['index', 'inv_freq', 'wavelength (tokens)', 'within L'],
        r.frequencies.map((f) => [f.index, f.invFreq.toExponential(6), f.wavelength < 1e6 ? f.wavelength.toFixed(1) : f.wavelength.toExponential(3), f.kept ? 'kept' : 'clipped']),
      ),
    );
  }
  return lines.join('\n');
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <model>',
  describe: 'what a checkpoint is: family, shapes, RoPE and its frequencies, FoPE settings',
  builder: (y) =>
    withModelArgument(withSourceOptions(y))
      .option('length', { type: 'number', describe: 'length L to judge frequencies against (default max_position_embeddings)' })
      .example('fopeify inspect HuggingFaceTB/SmolLM2-135M --length 2048', '') as never,
  handler: async (argv) => {
    await withReporter(argv, async (reporter) => {
      const report = await inspectModel({ model: argv.model, length: argv.length, ...sourceOptions(argv, reporter) });
      reporter.stop();
      if (argv.json) printJson(report);
      else process.stdout.write(formatInspect(report) + '\n');
    });
  },
};
