import type { CommandModule } from 'yargs';
import { push } from '../hub/push.js';
import { withHubOptions, withJsonOption, withReporter } from './common.js';
import { printJson } from './output.js';

interface PushArgs {
  dir: string;
  repo: string;
  private: boolean;
  revision?: string;
  message?: string;
  'create-pr': boolean;
  endpoint?: string;
  token?: string;
  force: boolean;
  json: boolean;
}

export const pushCommand: CommandModule<object, PushArgs> = {
  command: 'push <dir> <repo>',
  describe: 'upload a model folder to the Hub in one commit, with a model card',
  builder: (y) =>
    withJsonOption(withHubOptions(y, 'write token'))
      .positional('dir', { type: 'string', demandOption: true, describe: 'model folder (config.json + safetensors)' })
      .positional('repo', { type: 'string', demandOption: true, describe: 'target repository org/name (created when missing)' })
      .option('private', { type: 'boolean', default: false, describe: 'create the repository private' })
      .option('revision', { type: 'string', describe: 'branch to commit to (default main)' })
      .option('message', { type: 'string', describe: 'commit title' })
      .option('create-pr', { type: 'boolean', default: false, describe: 'open a pull request instead of committing' })
      .option('force', { type: 'boolean', default: false, describe: 'push a folder that is not a model folder' })
      .example('fopeify push ./smollm2-fope me/smollm2-fope --private', '') as never,
  handler: async (argv) => {
    await withReporter(argv, async (reporter) => {
      const r = await push({
        dir: argv.dir,
        repo: argv.repo,
        private: argv.private,
        revision: argv.revision,
        message: argv.message,
        createPr: argv['create-pr'],
        endpoint: argv.endpoint,
        token: argv.token,
        force: argv.force,
        onProgress: (e) => {
          const file = e.file ? ` ${e.file}${e.progress !== undefined ? ` ${(e.progress * 100).toFixed(0)}%` : ''}` : '';
          reporter.update(`push: ${e.phase}${file} (${e.filesDone}/${e.filesTotal})`);
        },
      });
      reporter.stop();
      if (argv.json) printJson(r);
      else {
        process.stdout.write(
          `${r.created ? 'created ' + r.repoUrl + '\n' : ''}${r.uploaded.length} file(s) committed, ${r.unchanged.length} unchanged; LFS: ${r.lfsUploaded} uploaded, ${r.skippedLfs} already stored\n${r.pullRequestUrl ?? r.commitUrl}\n`,
        );
      }
    });
  },
};
