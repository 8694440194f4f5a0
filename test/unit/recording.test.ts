/**
 * The recording file: every event kind round-trips; any altered, missing, reordered or
 * foreign chunk is found and named; an unsealed file reads as incomplete; the size cap
 * leaves a truncation marker; retention picks the right files.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Packr } from 'msgpackr';
import { join } from 'node:path';
import type { RecordedEvent } from '../../src/recording/events.js';
import { MAGIC, ZERO_HASH, decodeFile, encodeChunk } from '../../src/recording/format.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { SessionRecorder, type Pressure } from '../../src/recording/recorder.js';
import { expiredRecordings } from '../../src/recording/retention.js';
import { RecordingStore, listStored, readRecording, recordingFile } from '../../src/recording/store.js';
import type { RecordingConfig } from '../../src/config/types.js';

const key = randomBytes(32);

function fileOf(id: string, chunks: RecordedEvent[][], seal = true): { bytes: Buffer; offsets: number[] } {
  const parts = [MAGIC];
  const offsets: number[] = [];
  let prev: Buffer = ZERO_HASH;
  let at = MAGIC.length;
  chunks.forEach((e, n) => {
    const c = encodeChunk({ s: id, n, p: prev, e, ...(seal && n === chunks.length - 1 ? { z: true as const } : {}) }, key);
    offsets.push(at);
    at += c.bytes.length;
    parts.push(c.bytes);
    prev = c.hash;
  });
  return { bytes: Buffer.concat(parts), offsets };
}

const EVERY_KIND: RecordedEvent[] = [
  { k: 'start', t: 0, at: 1_700_000_000_000, session: 's1', protocol: 'postgres', node: 'n', workload: 'w', groups: ['g'], target: 'db', pid: 7, uid: 1000, comm: 'psql', cmdline: ['psql', '-c', 'x'], exe: '/usr/bin/psql', cgroup: '/a.slice/b', dst: '127.0.0.3:5432', login: { clientUser: 'agent' } },
  { k: 'in', t: 1.5, b: Buffer.from('Q\0\0\0\x0dSELECT 1\0', 'latin1') },
  { k: 'decision', t: 1.6, command: 'SELECT 1', via: 'simple', kinds: ['select'], action: 'allow', rule: 'p#1' },
  { k: 'out', t: 2.25, b: Buffer.from([0x5a, 0, 0, 0, 5, 0x49]) },
  { k: 'masked', t: 3, tag: 'SELECT 1', counts: { email: 2 } },
  { k: 'approval', t: 4, command: 'DELETE FROM x', outcome: 'rejected', by: 'alice', reason: 'no' },
  { k: 'resize', t: 5, cols: 120, rows: 40, ch: 0 },
  { k: 'truncated', t: 6, bytes: 1024 },
  { k: 'end', t: 7, reason: 'client terminated', bytesIn: 10, bytesOut: 20, commands: 1, rows: 0 },
];

describe('recording format', () => {
  it('round-trips every event kind, byte data included', () => {
    const { bytes } = fileOf('s1', [EVERY_KIND.slice(0, 4), EVERY_KIND.slice(4)]);
    const d = decodeFile(bytes, key, 's1');
    expect(d.problem).toBeUndefined();
    expect(d.sealed).toBe(true);
    expect(d.chunks).toBe(2);
    expect(d.events.map((e) => ({ ...e, ...('b' in e ? { b: Buffer.from(e.b).toString('hex') } : {}) }))).toEqual(
      EVERY_KIND.map((e) => ({ ...e, ...('b' in e ? { b: Buffer.from(e.b).toString('hex') } : {}) })),
    );
  });

  it('names the chunk of any altered byte', () => {
    const { bytes, offsets } = fileOf('s1', [EVERY_KIND.slice(0, 3), EVERY_KIND.slice(3, 6), EVERY_KIND.slice(6)]);
    // every byte of the middle chunk, flipped one at a time, is caught at chunk 1 (or chunk 0 never)
    for (let at = offsets[1]!; at < offsets[2]!; at += 7) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x20;
      const d = decodeFile(bad, key, 's1');
      expect(d.problem, `byte ${at}`).toMatch(/^chunk 1 /);
      expect(d.events.length).toBe(3); // chunk 0 still readable
    }
  });

  it('finds a removed, a reordered and a foreign chunk, and a wrong key', () => {
    const three = [EVERY_KIND.slice(0, 3), EVERY_KIND.slice(3, 6), EVERY_KIND.slice(6)];
    const { bytes, offsets } = fileOf('s1', three);
    const c0 = bytes.subarray(offsets[0]!, offsets[1]!), c1 = bytes.subarray(offsets[1]!, offsets[2]!), c2 = bytes.subarray(offsets[2]!);
    expect(decodeFile(Buffer.concat([MAGIC, c0, c2]), key, 's1').problem).toMatch(/^chunk 1 .*numbered 2/);
    expect(decodeFile(Buffer.concat([MAGIC, c1, c0, c2]), key, 's1').problem).toMatch(/^chunk 0 /);
    const other = fileOf('s2', three);
    expect(decodeFile(other.bytes, key, 's1').problem).toMatch(/^chunk 0 .*belongs to session "s2"/);
    expect(decodeFile(bytes, randomBytes(32), 's1').problem).toMatch(/^chunk 0 .*HMAC/);
    expect(decodeFile(Buffer.concat([bytes, Buffer.from('junk')]), key, 's1').problem).toMatch(/^chunk 3 .*after the sealing chunk/);
  });

  it('reads an unsealed file as incomplete, and a cut one up to its last whole chunk', () => {
    const { bytes, offsets } = fileOf('s1', [EVERY_KIND.slice(0, 3), EVERY_KIND.slice(3, 6)], false);
    const whole = decodeFile(bytes, key, 's1');
    expect(whole.problem).toBeUndefined();
    expect(whole.sealed).toBe(false);
    const cut = decodeFile(bytes.subarray(0, offsets[1]! + 10), key, 's1');
    expect(cut.problem).toMatch(/^chunk 1 .*truncated/);
    expect(cut.events.length).toBe(3);
  });

  it('reports a signed chunk whose body is not a map, rather than throwing', () => {
    // the HMAC is right (same key), the body is msgpack nil: only the reader's checks stand between
    for (const packed of [Buffer.from([0xc0]), Buffer.from([0x2a]), Buffer.from([0x91, 0x01])]) {
      const mac = createHmac('sha256', key).update(createHash('sha256').update(packed).digest()).digest();
      const len = Buffer.alloc(4);
      len.writeUInt32BE(packed.length);
      const d = decodeFile(Buffer.concat([MAGIC, len, packed, mac]), key, 's1');
      expect(d.problem).toMatch(/^chunk 0 \(at byte 8\): /);
      expect(d.events).toEqual([]);
    }
  });

  it('reports a signed chunk whose session or number cannot be turned into text, rather than throwing', () => {
    const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
    for (const body of [{ s: 's1', n: { toString: 0 } }, { s: 2n ** 63n, n: 0 }, { s: 's1', n: 2n ** 62n }]) {
      const packed = packr.pack(body);
      const mac = createHmac('sha256', key).update(createHash('sha256').update(packed).digest()).digest();
      const len = Buffer.alloc(4);
      len.writeUInt32BE(packed.length);
      const d = decodeFile(Buffer.concat([MAGIC, len, packed, mac]), key, 's1');
      expect(d.problem).toMatch(/^chunk 0 \(at byte 8\): (belongs to session a bigint|numbered a (object|bigint))/);
    }
  });
});

describe('SessionRecorder and the store', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'interlock-rec-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const config = (over: Partial<RecordingConfig> = {}): RecordingConfig => ({
    enabled: true, dir: join(dir, 'recordings'), keyFile: join(dir, 'etc', 'recording.key'), flushMs: 20, flushBytes: 4096,
    maxSessionBytes: 1 << 20, bufferBytes: 1 << 20, retention: { days: 90, totalBytes: 1 << 30 }, onBackpressure: 'block', ...over,
  });

  it('creates the key 0600 and the directory 0700, and reuses the key', () => {
    const store = RecordingStore.open(config());
    expect(statSync(join(dir, 'recordings')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'etc', 'recording.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'etc')).mode & 0o777).toBe(0o700);
    const k = readFileSync(join(dir, 'etc', 'recording.key'));
    expect(loadRecordingKey(join(dir, 'etc', 'recording.key'), { create: false }).equals(k)).toBe(true);
    void store;
  });

  it('refuses a key others can read', () => {
    const file = join(dir, 'k');
    writeFileSync(file, randomBytes(32));
    chmodSync(file, 0o644);
    expect(() => loadRecordingKey(file, { create: false })).toThrow(/readable by others/);
  });

  it('records, seals, and reads back a session; files are 0600', async () => {
    const store = RecordingStore.open(config());
    const r = store.begin({ session: 'abc-1', protocol: 'postgres', workload: 'w', target: 't' });
    const chunk = Buffer.from('QQQQQQQQQQ');
    r.input(chunk.subarray(0, 4));
    r.input(chunk.subarray(4, 10)); // contiguous: one event
    r.decision('SELECT 1', 'simple', ['select'], 'allow', 'p#1', 'allowed');
    r.output(Buffer.from('out'));
    await new Promise((res) => setTimeout(res, 60)); // a timed flush in between
    r.decision('DROP TABLE x', 'simple', ['drop'], 'deny', undefined, 'no');
    r.end({ reason: 'client terminated', bytesIn: 10, bytesOut: 3, commands: 2, rows: 0 });
    await r.closedPromise();
    expect(statSync(recordingFile(config().dir, 'abc-1')).mode & 0o777).toBe(0o600);
    const rec = readRecording(config().dir, 'abc-1', loadRecordingKey(config().keyFile, { create: false }));
    expect(rec.problems).toEqual([]);
    expect(rec.sealed).toBe(true);
    expect(rec.start?.workload).toBe('w');
    expect(rec.events.map((e) => e.k)).toEqual(['start', 'in', 'decision', 'out', 'decision', 'end']);
    const input = rec.events[1] as { b: Uint8Array };
    expect(Buffer.from(input.b).toString()).toBe('QQQQQQQQQQ');
    expect(rec.events[2]).toMatchObject({ command: 'SELECT 1', action: 'allow' });
    expect(rec.events[2]).not.toHaveProperty('message'); // allowed: nothing was told
    expect(rec.events[4]).toMatchObject({ command: 'DROP TABLE x', action: 'deny', message: 'no' });
    expect(rec.end).toMatchObject({ commands: 2 });
  });

  it('caps a session with a truncation marker and still seals it', async () => {
    const store = RecordingStore.open(config({ maxSessionBytes: 1 << 20 }));
    const r = store.begin({ session: 'cap-1', protocol: 'postgres' });
    const big = Buffer.alloc(100_000, 0x61);
    for (let i = 0; i < 20; i++) r.output(Buffer.from(big));
    r.decision('SELECT 2', 'simple', ['select'], 'allow', undefined, undefined);
    r.end({ reason: 'done', bytesIn: 0, bytesOut: 2_000_000, commands: 1, rows: 0 });
    await r.closedPromise();
    const rec = readRecording(config().dir, 'cap-1', loadRecordingKey(config().keyFile, { create: false }));
    expect(rec.problems).toEqual([]);
    expect(rec.truncated).toBe(true);
    const outBytes = rec.events.filter((e) => e.k === 'out').reduce((n, e) => n + (e as { b: Uint8Array }).b.length, 0);
    expect(outBytes).toBeLessThanOrEqual(1 << 20);
    expect(outBytes).toBeGreaterThan(900_000);
    expect(rec.events.at(-1)?.k).toBe('end');
    expect(rec.sealed).toBe(true);
  });

  it('asks the session to wait when the disk falls behind, and to go on once it caught up', async () => {
    const store = RecordingStore.open(config({ bufferBytes: 64 * 1024, flushBytes: 4096 }));
    const r = store.begin({ session: 'bp-1', protocol: 'postgres' });
    const seen: Pressure[] = [];
    r.onPressure = (p) => seen.push(p);
    // the file is still opening: everything queues
    for (let i = 0; i < 40; i++) r.output(Buffer.alloc(4096, i));
    expect(seen).toEqual(['block']);
    await new Promise((res) => setTimeout(res, 100));
    expect(seen).toEqual(['block', 'resume']);
    r.end({ reason: 'done', bytesIn: 0, bytesOut: 0, commands: 0, rows: 0 });
    await r.closedPromise();
  });

  it('in "end" mode, tells the session to end instead', () => {
    const store = RecordingStore.open(config({ bufferBytes: 64 * 1024, onBackpressure: 'end' }));
    const r = store.begin({ session: 'bp-2', protocol: 'postgres' });
    const seen: string[] = [];
    r.onPressure = (p, why) => seen.push(`${p}: ${why}`);
    for (let i = 0; i < 40; i++) r.output(Buffer.alloc(4096, i));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^end: recording is \d+ bytes behind the disk/);
  });

  it('a recording that cannot be created ends its session', async () => {
    const c = config();
    const store = RecordingStore.open(c);
    writeFileSync(recordingFile(c.dir, 'dup-1'), 'taken');
    const r: SessionRecorder = store.begin({ session: 'dup-1', protocol: 'postgres' });
    const seen: string[] = [];
    r.onPressure = (p, why) => seen.push(`${p}: ${why}`);
    await r.closedPromise();
    expect(seen[0]).toMatch(/^end: cannot create .*EEXIST/);
  });

  it('lists what is stored and sweeps by retention', async () => {
    const c = config();
    const store = RecordingStore.open(c);
    const r = store.begin({ session: 'keep-1', protocol: 'postgres' });
    r.end({ reason: 'x', bytesIn: 0, bytesOut: 0, commands: 0, rows: 0 });
    await r.closedPromise();
    expect(listStored(c.dir).map((s) => s.id)).toEqual(['keep-1']);
    expect(store.sweep(Date.now() + 91 * 86_400_000)).toEqual(['keep-1']);
    expect(listStored(c.dir)).toEqual([]);
  });
});

describe('retention', () => {
  const day = 86_400_000, now = 100 * day;
  const files = [
    { id: 'old', size: 10, mtimeMs: now - 95 * day },
    { id: 'a', size: 40, mtimeMs: now - 30 * day },
    { id: 'b', size: 40, mtimeMs: now - 20 * day },
    { id: 'c', size: 40, mtimeMs: now - 10 * day },
  ];
  it('removes by age, then the oldest until the total fits', () => {
    expect(expiredRecordings(files, now, { days: 90, totalBytes: 1000 }, new Set())).toEqual(['old']);
    expect(expiredRecordings(files, now, { days: 90, totalBytes: 80 }, new Set()).sort()).toEqual(['a', 'old']);
    expect(expiredRecordings(files, now, { days: 15, totalBytes: 1000 }, new Set()).sort()).toEqual(['a', 'b', 'old']);
  });
  it('never removes a live session', () => {
    expect(expiredRecordings(files, now, { days: 1, totalBytes: 0 }, new Set(['a', 'old'])).sort()).toEqual(['b', 'c']);
  });
});

import { loadHostKey } from '../../src/protocols/ssh/host-key.js';
describe('the node SSH host key', () => {
  it('is created 0600 and always reads back (ssh2 encodes a bad key now and then)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'interlock-hostkey-'));
    try {
      for (let i = 0; i < 40; i++) {
        const file = join(dir, `k${i}`);
        const created = loadHostKey(file, { create: true });
        expect(created.publicKey).toMatch(/^ssh-ed25519 AAAA/);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        expect(loadHostKey(file, { create: false }).publicKey).toBe(created.publicKey);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
