import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';

// line numbers below refer to this document: limits: is on line 3, the field under test on line 5
const BASE = `agents:
  cgroup: /agents.slice
`;

function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, 'interlock.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected parseConfig to throw');
}

describe('limits: section', () => {
  it('defaults when absent', () => {
    const c = parseConfig(BASE, 'interlock.yaml');
    expect(c.limits).toEqual(DEFAULT_LIMITS);
    expect(c.limits).toEqual({
      maxMessageBytes: 16 << 20,
      maxUpstreamMessageBytes: 256 << 20,
      partialMessageTimeoutMs: 30_000,
      upstreamConnectTimeoutMs: 10_000,
      maxRequestBodyBytes: 16 << 20,
      maxHeaderBytes: 32 << 10,
      upstreamResponseTimeoutMs: 60_000,
      maxCommandBytes: 16 << 10,
      maxSessionsPerWorkload: 256,
    });
  });

  it('reads every field, sizes with units and durations', () => {
    const c = parseConfig(`${BASE}limits:
  maxMessageBytes: 1MiB
  maxUpstreamMessageBytes: 64MiB
  partialMessageTimeout: 10s
  upstreamConnectTimeout: 2m
  maxRequestBodyBytes: 4194304
  maxHeaderBytes: 16KiB
  upstreamResponseTimeout: 1h
  maxCommandBytes: 4KiB
  maxSessionsPerWorkload: 32
`, 'interlock.yaml');
    expect(c.limits).toEqual({
      maxMessageBytes: 1 << 20,
      maxUpstreamMessageBytes: 64 << 20,
      partialMessageTimeoutMs: 10_000,
      upstreamConnectTimeoutMs: 120_000,
      maxRequestBodyBytes: 4 << 20,
      maxHeaderBytes: 16 << 10,
      upstreamResponseTimeoutMs: 3_600_000,
      maxCommandBytes: 4 << 10,
      maxSessionsPerWorkload: 32,
    });
  });

  it('a partial section keeps the other defaults', () => {
    const c = parseConfig(`${BASE}limits: { maxMessageBytes: 2MiB }\n`, 'interlock.yaml');
    expect(c.limits).toEqual({ ...DEFAULT_LIMITS, maxMessageBytes: 2 << 20 });
  });

  it('errors name the file, line, column and field', () => {
    const cases: [string, number, string, RegExp][] = [
      ['  maxMessageBytes: 2GiB\n', 5, 'limits.maxMessageBytes', /2147483648 bytes is outside 1024\.\.1073741824/],
      ['  maxMessageBytes: lots\n', 5, 'limits.maxMessageBytes', /expected a size like 65536, 64KiB or 1GiB, found the string "lots"/],
      ['  maxUpstreamMessageBytes: 1KiB\n', 5, 'limits.maxUpstreamMessageBytes', /outside/],
      ['  partialMessageTimeout: 30\n', 5, 'limits.partialMessageTimeout', /expected a duration like 30s/],
      ['  partialMessageTimeout: 2h\n', 5, 'limits.partialMessageTimeout', /2h is longer than the 1h/],
      ['  upstreamConnectTimeout: 0s\n', 5, 'limits.upstreamConnectTimeout', /expected a duration/],
      ['  maxCommandBytes: 64KiB\n', 5, 'limits.maxCommandBytes', /outside 64\.\.32768/],
      ['  maxSessionsPerWorkload: 0\n', 5, 'limits.maxSessionsPerWorkload', /expected an integer from 1 to 1000000/],
      ['  maxMesageBytes: 1MiB\n', 5, 'limits.maxMesageBytes', /unknown field \(expected one of: maxMessageBytes, /],
    ];
    for (const [line, lineNo, field, problem] of cases) {
      const e = errorOf(`${BASE}limits:\n  maxHeaderBytes: 8KiB\n${line}`);
      expect(e.field).toBe(field);
      expect(e.line).toBe(lineNo);
      expect(e.message).toMatch(new RegExp(`^interlock\\.yaml:${lineNo}:\\d+: ${field.replace('.', '\\.')}: `));
      expect(e.message).toMatch(problem);
    }
    expect(errorOf(`${BASE}limits: 16MiB\n`).message).toMatch(/^interlock\.yaml:3:\d+: limits: expected a mapping/);
  });
});
