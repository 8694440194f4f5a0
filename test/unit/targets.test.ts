import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TargetIndex, endpointKey, readSecret } from '../../src/config/targets.js';
import type { TargetDef } from '../../src/config/types.js';

const target = (name: string, host: string, port: number): TargetDef => ({
  name, protocol: 'postgres', address: { host, port }, upstream: { host: 'db.internal', port: 5432, user: 'app' },
});

describe('TargetIndex', () => {
  const index = new TargetIndex([
    target('v4', '127.0.0.3', 5432),
    target('v4-other-port', '127.0.0.3', 6432),
    target('v6', '2001:DB8::1', 5432),
    target('mapped', '::ffff:10.0.0.7', 5432),
  ]);

  it('finds IPv4 targets by address and port', () => {
    expect(index.byAddress('127.0.0.3', 5432)?.name).toBe('v4');
    expect(index.byAddress('127.0.0.3', 6432)?.name).toBe('v4-other-port');
    expect(index.byAddress('127.0.0.3', 7432)).toBeUndefined();
    expect(index.byAddress('127.0.0.4', 5432)).toBeUndefined();
  });

  it('finds an IPv6 target however the config spelled it (the dial is always the compressed form)', () => {
    const spelled = new TargetIndex([target('long', '2001:0db8:0:0:0:0:0:1', 5432), target('lo', '0:0:0:0:0:0:0:1', 5432)]);
    expect(spelled.byAddress('2001:db8::1', 5432)?.name).toBe('long');
    expect(spelled.byAddress('::1', 5432)?.name).toBe('lo');
  });

  it('folds a v4-mapped dial onto the IPv4 target', () => {
    expect(index.byAddress('::ffff:127.0.0.3', 5432)?.name).toBe('v4');
    expect(index.byAddress('::FFFF:127.0.0.3', 6432)?.name).toBe('v4-other-port');
  });

  it('folds a v4-mapped configured host onto IPv4 dials', () => {
    expect(index.byAddress('10.0.0.7', 5432)?.name).toBe('mapped');
  });

  it('compares IPv6 case-insensitively', () => {
    expect(index.byAddress('2001:db8::1', 5432)?.name).toBe('v6');
    expect(index.byAddress('2001:Db8::1', 5432)?.name).toBe('v6');
    expect(index.byAddress('2001:db8::2', 5432)).toBeUndefined();
  });

  it('builds keys from the canonical address and the port', () => {
    expect(endpointKey('::ffff:127.0.0.3', 5432)).toBe(endpointKey('127.0.0.3', 5432));
    expect(endpointKey('FE80::1', 1)).toBe(endpointKey('fe80::1', 1));
    expect(endpointKey('127.0.0.3', 5432)).not.toBe(endpointKey('127.0.0.3', 5433));
  });

  it('keeps the target list', () => {
    expect(index.targets.map((t) => t.name)).toEqual(['v4', 'v4-other-port', 'v6', 'mapped']);
  });
});

describe('readSecret', () => {
  let dir: string;
  const ENV = 'INTERLOCK_TEST_SECRET_VAR';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'interlock-secret-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => {
    delete process.env[ENV];
  });

  const secretFile = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode: 0o600 });
    expect(statSync(p).mode & 0o777).toBe(0o600);
    return p;
  };

  it('gives undefined without a reference', () => {
    expect(readSecret(undefined)).toBeUndefined();
  });

  it('reads a file, dropping one trailing newline', () => {
    expect(readSecret({ file: secretFile('plain', 's3cret') })).toBe('s3cret');
    expect(readSecret({ file: secretFile('lf', 's3cret\n') })).toBe('s3cret');
    expect(readSecret({ file: secretFile('crlf', 's3cret\r\n') })).toBe('s3cret');
    expect(readSecret({ file: secretFile('two', 's3cret\n\n') })).toBe('s3cret\n');
    expect(readSecret({ file: secretFile('inner', ' a b\nc ') })).toBe(' a b\nc ');
  });

  it('reads the file again on every call', () => {
    const p = secretFile('rotating', 'old\n');
    expect(readSecret({ file: p })).toBe('old');
    writeFileSync(p, 'new\n');
    expect(readSecret({ file: p })).toBe('new');
  });

  it('names the file it cannot read', () => {
    const p = join(dir, 'does-not-exist');
    expect(() => readSecret({ file: p })).toThrow(`cannot read secret file ${p}: ENOENT`);
  });

  it('reads an environment variable as is', () => {
    process.env[ENV] = 'from-env\n';
    expect(readSecret({ env: ENV })).toBe('from-env\n');
    process.env[ENV] = '';
    expect(readSecret({ env: ENV })).toBe('');
  });

  it('names the environment variable that is not set', () => {
    expect(() => readSecret({ env: ENV })).toThrow(`secret environment variable ${ENV} is not set`);
  });
});
