import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAudit } from '../../src/audit/audit.js';

const dir = mkdtempSync(join(tmpdir(), 'interlock-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('audit trail', () => {
  it('writes pre-serialized lines exactly like pino\'s, bindings and all, to a root-only file', () => {
    const file = join(dir, 'a', 'audit.jsonl');
    const audit = createAudit(file);
    const session = audit.with({ session: 's1', workload: 'bot', pid: 42, comm: undefined });
    session.event('query', { protocol: 'simple', query: 'select "x"\n' });
    session.serialized('query', `"protocol":"simple","query":${JSON.stringify('select "x"\n')}`);
    audit.event('daemon.stop');
    audit.flush();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const [viaPino, viaSerialized, bare] = lines.map((l) => JSON.parse(l));
    const { time: t1, ...a } = viaPino;
    const { time: t2, ...b } = viaSerialized;
    expect(b).toEqual(a);
    expect(Object.keys(viaSerialized)).toEqual(Object.keys(viaPino));
    expect(a).toEqual({ level: 'info', session: 's1', workload: 'bot', pid: 42, protocol: 'simple', query: 'select "x"\n', event: 'query' });
    expect(Date.parse(t2)).toBeGreaterThanOrEqual(Date.parse(t1));
    expect(bare).toMatchObject({ level: 'info', event: 'daemon.stop' });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('holds lines until the batch is flushed, then writes them in order', () => {
    const file = join(dir, 'b.jsonl');
    const audit = createAudit(file);
    for (let i = 0; i < 5; i++) audit.event('query', { n: i });
    expect(readFileSync(file, 'utf8')).toBe(''); // batched: nothing written yet
    audit.flush();
    expect(readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).n)).toEqual([0, 1, 2, 3, 4]);
  });
});
