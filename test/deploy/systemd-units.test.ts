/**
 * deploy/systemd passes `systemd-analyze verify`. PID 1 need not be systemd: verify
 * loads the units and the ones they name from the host's unit path, checks every
 * directive and that the start transaction (ordering cycles included) can be built.
 * It exits 0 on unknown keys and bad values, only printing them, so any output fails.
 */
import { describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, tool, verifyUnits } from './tools.js';

const analyze = tool('systemd-analyze', 'systemd');
const UNITS = join(REPO, 'deploy/systemd');

describe.skipIf(!analyze)('systemd units', () => {
  it('pass systemd-analyze verify with nothing to say', () => {
    const dir = mkdtempSync('/tmp/interlock-units-');
    try {
      const stub = join(dir, 'interlock');
      writeFileSync(stub, '#!/bin/sh\n');
      chmodSync(stub, 0o755);
      const units = readdirSync(UNITS);
      expect(units.sort()).toEqual(['agents.slice', 'example-agent.service', 'interlock.service']);
      for (const u of units) writeFileSync(join(dir, u), readFileSync(join(UNITS, u), 'utf8').replaceAll('/usr/local/bin/interlock', stub));
      expect(verifyUnits(analyze!, dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('catch a broken unit (verify is not silently passing everything)', () => {
    const dir = mkdtempSync('/tmp/interlock-units-');
    try {
      writeFileSync(join(dir, 'broken.service'), '[Service]\nExecStart=/bin/true\nProtectSystem=sometimes\nNoSuchKey=1\n');
      const lines = verifyUnits(analyze!, dir);
      expect(lines.some((l) => l.includes('sometimes'))).toBe(true);
      expect(lines.some((l) => l.includes('NoSuchKey'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('run interlock hardened, outside the agents, ready only once the redirect is attached', () => {
    const svc = readFileSync(join(UNITS, 'interlock.service'), 'utf8');
    const directive = (text: string, key: string) => text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
    expect(directive(svc, 'Slice')).toEqual([]); // the default system.slice: never agents.slice
    expect(directive(svc, 'Type')).toEqual(['exec']);
    expect(directive(svc, 'ExecStartPost')[0]).toMatch(/timeout \d+ .*interlock status --config/);
    expect(directive(svc, 'Restart')).toEqual(['on-failure']);
    expect(directive(svc, 'NoNewPrivileges')).toEqual(['yes']);
    expect(directive(svc, 'ProtectSystem')).toEqual(['strict']);
    expect(directive(svc, 'ProtectHome')).toEqual(['yes']);
    expect(directive(svc, 'PrivateTmp')).toEqual(['yes']);
    expect(directive(svc, 'CapabilityBoundingSet')[0]!.split(' ').sort()).toEqual(
      ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SYS_RESOURCE']);
    for (const k of ['StateDirectory', 'LogsDirectory', 'ConfigurationDirectory', 'RuntimeDirectory']) expect(directive(svc, k)).toEqual(['interlock']);

    const slice = readFileSync(join(UNITS, 'agents.slice'), 'utf8');
    expect(directive(slice, 'After')).toEqual(['interlock.service']);
    expect(directive(slice, 'AssertPathExists')).toEqual(['/run/interlock/control.sock']);

    const agent = readFileSync(join(UNITS, 'example-agent.service'), 'utf8');
    expect(directive(agent, 'Slice')).toEqual(['agents.slice']);
    expect(directive(agent, 'User')[0]).not.toBe('root');
    expect(directive(agent, 'CapabilityBoundingSet')).toEqual(['']);
    expect(directive(agent, 'NoNewPrivileges')).toEqual(['yes']);
    expect(directive(agent, 'InaccessiblePaths')[0]).toContain('/run/postgresql');
    expect(directive(agent, 'InaccessiblePaths')[0]).toContain('/etc/interlock');
  });
});
