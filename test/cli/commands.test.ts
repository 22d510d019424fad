import { describe, expect, it } from 'vitest';
import { allCommands, commandTable } from '../../src/cli/commands.js';
import { runCli } from './cli-helpers.js';

describe('command table', () => {
  it('lists every command module under its own usage', async () => {
    const modules = await allCommands();
    expect(modules.map((m) => m.command)).toEqual(commandTable.map((c) => c.usage));
  });
  it('top-level help lists every command without loading the runtime', () => {
    const r = runCli(['--help']);
    expect(r.code).toBe(0);
    for (const c of commandTable) expect(r.stdout).toContain(`fopeify ${c.usage}`);
  });
  it('a repeated scalar flag takes the last value', () => {
    const r = runCli(['inspect', 'fixtures/tiny-rope-256', '--length', '100', '--length', '300', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).length).toBe(300);
  });
});
