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
});
