/**
 * Fuzzing the recording file reader and the replay decoders on damaged input.
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { createHash, createHmac } from 'node:crypto';
import { decodeFile, encodeChunk, MAGIC, ZERO_HASH } from '../../src/recording/format.js';
import type { RecordedEvent } from '../../src/recording/events.js';
import { decodePostgresSession } from '../../src/recording/replay/postgres.js';
import { WsMessageReader } from '../../src/recording/replay/kubernetes.js';
import { bytes, cuts, fuzz, split, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const KEY = Buffer.alloc(32, 7);
const SESSION = 's-1';

const event: fc.Arbitrary<RecordedEvent> = fc.oneof(
  fc.tuple(fc.constantFrom('in' as const, 'out' as const), fc.nat(), bytes(30)).map(([k, t, b]) => ({ k, t, b: new Uint8Array(b) })),
  fc.tuple(fc.nat(), fc.string({ maxLength: 20 })).map(([t, command]) => ({ k: 'decision' as const, t, command, kinds: ['select'], action: 'allow' as const })),
);

/** A sealed recording of 1–4 chunks, and its events. */
const recording = fc.array(fc.array(event, { maxLength: 3 }), { minLength: 1, maxLength: 4 }).map((chunks) => {
  const parts: Buffer[] = [MAGIC];
  let prev: Buffer = ZERO_HASH;
  chunks.forEach((e, n) => {
    const c = encodeChunk({ s: SESSION, n, p: prev, e, ...(n === chunks.length - 1 ? { z: true as const } : {}) }, KEY);
    parts.push(c.bytes);
    prev = c.hash;
  });
  return { file: Buffer.concat(parts), events: chunks.flat() };
});

/** Damage of every kind: bytes changed, cut, inserted, chunks swapped. */
const damage = fc.oneof(
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }).map((flips) => (f: Buffer) => {
    const out = Buffer.from(f);
    for (const [at, x] of flips) out[at % out.length] ^= x;
    return out;
  }),
  fc.nat().map((at) => (f: Buffer) => f.subarray(0, at % f.length)),
  fc.tuple(fc.nat(), bytes(40)).map(([at, junk]) => (f: Buffer) => Buffer.concat([f.subarray(0, at % f.length), junk, f.subarray(at % f.length)])),
  fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => (f: Buffer) => Buffer.concat([f.subarray(0, a % f.length), f.subarray(b % f.length)])),
);

/** A chunk whose HMAC is right but whose body is anything msgpack can hold. */
function signedChunk(body: unknown): Buffer {
  const packed = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true }).pack(body);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(packed.length);
  const mac = createHmac('sha256', KEY).update(createHash('sha256').update(packed).digest()).digest();
  return Buffer.concat([len, packed, mac]);
}

/** events as comparable JSON (bytes may come back as Buffer or Uint8Array) */
const strip = (events: RecordedEvent[]) => JSON.stringify(events.map((e) => ('b' in e ? { ...e, b: [...e.b] } : e)));

describe('recording files, fuzzed', () => {
  it('a damaged recording: never a throw, only a prefix of the events, and never a clean sealed read', () => {
    fc.assert(
      fc.property(recording, damage, ({ file, events }, hurt) => {
        const bad = hurt(file);
        const d = decodeFile(bad, KEY, SESSION);
        // what is read is what was written, up to where the damage starts
        expect(strip(events).startsWith(strip(d.events).slice(0, -1))).toBe(true);
        // tamper evidence: a file that reads sealed and without a problem is the original
        if (d.sealed && d.problem === undefined) expect(bad.equals(file)).toBe(true);
        if (d.problem !== undefined) expect(d.problem).toMatch(/^(not a recording file|chunk \d+ \(at byte \d+\): )/);
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('a correctly signed chunk with any body: a clear problem, never a throw', () => {
    // values msgpack carries that JSON does not: 64-bit integers (as BigInt), maps with awkward keys
    const field = fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }), fc.constantFrom({ toString: 0 }, { valueOf: 'x' }, { toJSON: 1 }));
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      field,
      fc.record({ s: fc.oneof(fc.constant(SESSION), field), n: fc.oneof(fc.constant(0), field), p: fc.oneof(fc.constant(ZERO_HASH), field), e: fc.oneof(fc.jsonValue({ maxDepth: 2 }), field) }, { requiredKeys: [] }),
    );
    fc.assert(
      fc.property(body, (b) => {
        const d = decodeFile(Buffer.concat([MAGIC, signedChunk(b)]), KEY, SESSION);
        if (d.problem === undefined) {
          expect(d.chunks).toBe(1);
          expect(Array.isArray((b as { e: unknown }).e)).toBe(true);
        } else expect(d.problem).toMatch(/^chunk 0 \(at byte 8\): /);
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});

describe('replay decoders, fuzzed', () => {
  it('decodePostgresSession on any data events: never a throw, every byte accounted for', () => {
    const events = fc.array(
      fc.tuple(fc.constantFrom('in' as const, 'out' as const), bytes(60)).map(([k, b]) => ({ k, t: 0, b: new Uint8Array(b) })),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(events, (evs) => {
        const items = decodePostgresSession(evs);
        for (const item of items) expect(['in', 'out', 'event', 'raw']).toContain(item.kind);
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('WebSocket messages: the same however the recorded bytes were cut, never a throw', () => {
    fc.assert(
      fc.property(bytes(200), cuts(), (buf, at) => {
        const whole = new WsMessageReader();
        const one = whole.push(buf);
        const pieces = new WsMessageReader();
        const many = split(buf, at).flatMap((c) => pieces.push(c));
        expect(many).toEqual(one);
        expect(pieces.error).toEqual(whole.error);
        expect(pieces.pending).toBe(whole.pending);
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
