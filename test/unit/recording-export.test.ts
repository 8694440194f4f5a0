import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import type { RecordedEvent, Recording, StartEvent } from '../../src/recording/events.js';
import { toAsciicast, toJsonLines } from '../../src/recording/export.js';
import { MAX_PLAYBACK_WAIT_MS, playTerminal } from '../../src/recording/replay/terminal.js';
import { cstr, int16, int32, message } from '../helpers/pg-wire.js';

const rowDescription = (columns: [string, number][]) =>
  message('T', int16(columns.length), ...columns.flatMap(([name, oid]) => [cstr(name), int32(16384), int16(1), int32(oid), int16(-1), int32(-1), int16(0)]));
const dataRow = (values: (string | null)[]) =>
  message('D', int16(values.length), ...values.map((v) => (v === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)]))));
const commandComplete = (tag: string) => message('C', cstr(tag));
const errorResponse = (fields: Record<string, string>) => message('E', ...Object.entries(fields).map(([k, v]) => cstr(k + v)), Buffer.from([0]));
const readyForQuery = (status = 'I') => message('Z', Buffer.from(status));

function recording(start: StartEvent, events: RecordedEvent[]): Recording {
  return { id: start.session, file: `/r/${start.session}`, start, events: [start, ...events], sealed: true, truncated: false, problems: [] };
}

const pgStart: StartEvent = { k: 'start', t: 0, at: 1_700_000_000_123, session: 'pg-1', protocol: 'postgres', node: 'n1', target: 'db' };
const sshStart: StartEvent = { k: 'start', t: 0, at: 1_700_000_000_900, session: 'ssh-1', protocol: 'ssh', node: 'n1', workload: 'ops/bot', target: 'web-1' };

const parseLines = (text: string) => text.trimEnd().split('\n').map((l) => JSON.parse(l));

describe('toJsonLines for PostgreSQL', () => {
  const rec = recording(pgStart, [
    // one event holding two messages, and a message split across two events
    { k: 'in', t: 5, b: serialize.query("SELECT id, email FROM users WHERE name = 'ü'") },
    { k: 'decision', t: 5, command: "SELECT id, email FROM users WHERE name = 'ü'", via: 'simple', kinds: ['select'], action: 'allow', rule: 'policy#1' },
    { k: 'out', t: 9, b: Buffer.concat([rowDescription([['id', 23], ['email', 25]]), dataRow(['1', 'a@example.com']), dataRow(['2', null])]).subarray(0, 40) },
    { k: 'out', t: 10, b: Buffer.concat([rowDescription([['id', 23], ['email', 25]]), dataRow(['1', 'a@example.com']), dataRow(['2', null])]).subarray(40) },
    { k: 'masked', t: 10, tag: 'SELECT 2', counts: { email: 1 } },
    { k: 'out', t: 11, b: Buffer.concat([commandComplete('SELECT 2'), readyForQuery()]) },
    { k: 'in', t: 20, b: Buffer.concat([serialize.parse({ name: 's1', text: 'SELECT $1::bytea', types: [17] }), serialize.bind({ statement: 's1', values: [Buffer.from([0xde, 0xad]), 'x', null] }), serialize.execute(), serialize.sync()]) },
    { k: 'out', t: 21, b: Buffer.concat([errorResponse({ S: 'ERROR', V: 'ERROR', C: '42P01', M: 'relation "nope" does not exist', P: '15' }), readyForQuery()]) },
    { k: 'end', t: 30, reason: 'client terminated', bytesIn: 100, bytesOut: 200, commands: 2, rows: 2 },
  ]);
  const lines = parseLines(toJsonLines(rec));

  it('starts with the start event', () => {
    expect(lines[0]).toEqual(pgStart);
  });

  it('decodes what the agent sent into protocol messages', () => {
    expect(lines[1]).toEqual({ t: 5, dir: 'in', message: 'Query', sql: "SELECT id, email FROM users WHERE name = 'ü'" });
    expect(lines.find((l) => l.message === 'Parse')).toEqual({ t: 20, dir: 'in', message: 'Parse', statement: 's1', sql: 'SELECT $1::bytea', param_types: [17] });
    expect(lines.find((l) => l.message === 'Bind')).toMatchObject({
      statement: 's1',
      portal: '',
      params: [{ base64: Buffer.from([0xde, 0xad]).toString('base64') }, 'x', null],
    });
    expect(lines.filter((l) => l.dir === 'in').map((l) => l.message)).toEqual(['Query', 'Parse', 'Bind', 'Execute', 'Sync']);
  });

  it('decodes what the agent received, across event boundaries', () => {
    expect(lines.find((l) => l.message === 'RowDescription')).toEqual({
      t: 10,
      dir: 'out',
      message: 'RowDescription',
      columns: [
        { name: 'id', type_oid: 23, type_modifier: -1, format: 0, table_oid: 16384, column: 1 },
        { name: 'email', type_oid: 25, type_modifier: -1, format: 0, table_oid: 16384, column: 1 },
      ],
    });
    expect(lines.filter((l) => l.message === 'DataRow').map((l) => l.values)).toEqual([['1', 'a@example.com'], ['2', null]]);
    expect(lines.find((l) => l.message === 'CommandComplete')).toEqual({ t: 11, dir: 'out', message: 'CommandComplete', tag: 'SELECT 2' });
    expect(lines.find((l) => l.message === 'ErrorResponse')?.fields).toEqual({
      severity_localized: 'ERROR',
      severity: 'ERROR',
      code: '42P01',
      message: 'relation "nope" does not exist',
      position: '15',
    });
    expect(lines.filter((l) => l.message === 'ReadyForQuery').map((l) => l.status)).toEqual(['I', 'I']);
  });

  it('keeps the other events, in their place', () => {
    const kinds = lines.map((l) => l.k ?? l.message);
    expect(kinds.indexOf('decision')).toBe(2);
    expect(kinds.indexOf('masked')).toBeGreaterThan(kinds.lastIndexOf('DataRow'));
    expect(kinds.indexOf('masked')).toBeLessThan(kinds.indexOf('CommandComplete'));
    expect(lines.at(-1)).toEqual({ k: 'end', t: 30, reason: 'client terminated', bytesIn: 100, bytesOut: 200, commands: 2, rows: 2 });
  });

  it('writes one JSON object per line', () => {
    const text = toJsonLines(rec);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trimEnd().split('\n')).toHaveLength(lines.length);
  });

  it('keeps bytes that are not protocol messages as base64', () => {
    const junk = Buffer.from('Znot a length');
    const out = parseLines(toJsonLines(recording(pgStart, [{ k: 'out', t: 1, b: junk }])));
    expect(out[1]).toMatchObject({ t: 1, dir: 'out', data_base64: junk.toString('base64') });
    expect(out[1].undecodable).toMatch(/not PostgreSQL protocol/);
  });
});

describe('toJsonLines for other protocols', () => {
  it('carries data events as base64 with their channel', () => {
    const rec = recording(sshStart, [
      { k: 'resize', t: 0, cols: 120, rows: 40 },
      { k: 'in', t: 3, b: Buffer.from('ls\r'), ch: 0 },
      { k: 'out', t: 4, b: Buffer.from('file\r\n') },
    ]);
    const lines = parseLines(toJsonLines(rec));
    expect(lines[0]).toEqual(sshStart);
    expect(lines[1]).toEqual({ k: 'resize', t: 0, cols: 120, rows: 40 });
    expect(lines[2]).toEqual({ t: 3, dir: 'in', ch: 0, data_base64: Buffer.from('ls\r').toString('base64') });
    expect(lines[3]).toEqual({ t: 4, dir: 'out', data_base64: Buffer.from('file\r\n').toString('base64') });
  });
});

describe('toAsciicast', () => {
  const euro = Buffer.from('€', 'utf8');
  const rec = recording(sshStart, [
    { k: 'resize', t: 0, cols: 132, rows: 43, ch: 0 },
    { k: 'out', t: 12.5, b: Buffer.from('$ '), ch: 0 },
    { k: 'in', t: 1000, b: Buffer.from('echo hi\r'), ch: 0 },
    // a multi-byte character split across two events
    { k: 'out', t: 1500, b: Buffer.concat([Buffer.from('hi '), euro.subarray(0, 1)]), ch: 0 },
    { k: 'out', t: 1501, b: Buffer.concat([euro.subarray(1), Buffer.from('\r\n')]), ch: 0 },
    { k: 'resize', t: 2000, cols: 100, rows: 30, ch: 0 },
    { k: 'decision', t: 2000, command: 'exit', kinds: [], action: 'allow' },
  ]);
  const lines = parseLines(toAsciicast(rec));

  it('writes the v2 header from the start event and the first terminal size', () => {
    expect(lines[0]).toEqual({ version: 2, width: 132, height: 43, timestamp: 1_700_000_000, title: 'interlock session ssh-1 ops/bot → web-1' });
  });

  it('writes output, input and resizes with times in seconds', () => {
    expect(lines.slice(1)).toEqual([
      [0, 'r', '132x43'],
      [0.0125, 'o', '$ '],
      [1, 'i', 'echo hi\r'],
      [1.5, 'o', 'hi '],
      [1.501, 'o', '€\r\n'],
      [2, 'r', '100x30'],
    ]);
  });

  it('defaults to 80x24 without a resize event', () => {
    const plain = parseLines(toAsciicast(recording(sshStart, [{ k: 'out', t: 1, b: Buffer.from('x') }])));
    expect(plain[0]).toMatchObject({ width: 80, height: 24 });
    expect(plain[1]).toEqual([0.001, 'o', 'x']);
  });

  it('refuses a PostgreSQL recording', () => {
    expect(() => toAsciicast(recording(pgStart, []))).toThrow(/asciicast export needs an SSH recording; session pg-1 is a postgres session/);
  });
});

describe('playTerminal', () => {
  const rec = recording(sshStart, [
    { k: 'out', t: 100, b: Buffer.from('one ') },
    { k: 'in', t: 150, b: Buffer.from('typed') },
    { k: 'out', t: 300, b: Buffer.from('two ') },
    // a long idle gap
    { k: 'out', t: 60_300, b: Buffer.from('three') },
  ]);

  const play = async (opts: { speed?: number; instant?: boolean }) => {
    const written: string[] = [];
    const waits: number[] = [];
    await playTerminal(rec, { ...opts, write: (s) => written.push(s), sleep: async (ms) => void waits.push(ms) });
    return { written, waits };
  };

  it('writes what the terminal showed, not what was typed', async () => {
    expect((await play({})).written).toEqual(['one ', 'two ', 'three']);
  });

  it('waits as recorded, divided by the speed, at most 5 s per gap', async () => {
    expect(MAX_PLAYBACK_WAIT_MS).toBe(5000);
    expect((await play({})).waits).toEqual([100, 200, 5000]);
    expect((await play({ speed: 4 })).waits).toEqual([25, 50, 5000]);
    expect((await play({ speed: 100 })).waits).toEqual([1, 2, 600]);
  });

  it('does not wait at all when instant', async () => {
    const { written, waits } = await play({ instant: true });
    expect(waits).toEqual([]);
    expect(written.join('')).toBe('one two three');
  });

  it('rejects a speed that is not positive', async () => {
    await expect(play({ speed: 0 })).rejects.toThrow(/positive/);
  });

  it('refuses a PostgreSQL recording', async () => {
    await expect(playTerminal(recording(pgStart, []), { write: () => {} })).rejects.toThrow(/SSH recording/);
  });
});
