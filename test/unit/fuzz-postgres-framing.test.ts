/**
 * Fuzzing the PostgreSQL wire framing both ways (client → proxy, server → proxy) and the small
 * decoders the proxy runs on what it frames. See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { MessageFramer, ProtocolError, MAX_STARTUP_PAYLOAD_BYTES, type FramerOptions } from '../../src/protocols/postgres/framer.js';
import { parseStartupPacket, serializeStartup, serializeCancelRequest, serializeSSLRequest } from '../../src/protocols/postgres/startup.js';
import { errorResponse, readErrorFields, readCString } from '../../src/protocols/postgres/backend.js';
import { Denials } from '../../src/protocols/postgres/denial.js';
import { ChunkQueue } from '../../src/util/chunk-queue.js';
import { bytes, cuts, fuzz, split, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

// ---------------------------------------------------------------------------------------------
// generators: valid messages, then streams of them, then those streams damaged

function message(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string) => Buffer.from(s.replaceAll('\0', '') + '\0', 'utf8');
const text = fc.string({ maxLength: 30 });

/** What a client sends after login, built by pg-protocol's own serializer. */
const frontendMessage: fc.Arbitrary<Buffer> = fc.oneof(
  text.map((sql) => serialize.query(sql.replaceAll('\0', ''))),
  fc.tuple(text, text).map(([name, sql]) => serialize.parse({ name: name.replaceAll('\0', ''), text: sql.replaceAll('\0', ''), types: [] })),
  fc.array(fc.option(text, { nil: null }), { maxLength: 4 }).map((values) => serialize.bind({ values })),
  fc.nat({ max: 1000 }).map((rows) => serialize.execute({ rows })),
  fc.constant(serialize.sync()),
  fc.constant(serialize.flush()),
  fc.constant(serialize.end()),
  bytes(40).map((b) => serialize.copyData(b)),
);

/** What a server sends, built by hand (pg-protocol has no backend serializer). */
const backendMessage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.array(fc.tuple(text, fc.nat(), fc.integer({ min: 0, max: 1 })), { maxLength: 4 }).map((cols) => {
    const parts: Buffer[] = [Buffer.alloc(2)];
    parts[0].writeInt16BE(cols.length);
    for (const [name, typeOid, format] of cols) {
      const fixed = Buffer.alloc(18);
      fixed.writeUInt32BE(typeOid % 100000, 6);
      fixed.writeInt16BE(format, 16);
      parts.push(cstr(name), fixed);
    }
    return message(0x54, Buffer.concat(parts));
  }),
  fc.array(fc.option(bytes(20), { nil: null }), { maxLength: 5 }).map((fields) => {
    const parts: Buffer[] = [Buffer.alloc(2)];
    parts[0].writeInt16BE(fields.length);
    for (const f of fields) {
      const len = Buffer.alloc(4);
      len.writeInt32BE(f === null ? -1 : f.length);
      parts.push(len, ...(f ? [f] : []));
    }
    return message(0x44, Buffer.concat(parts));
  }),
  text.map((tag) => message(0x43, cstr(tag))),
  fc.tuple(text, text).map(([code, m]) => errorResponse({ severity: 'ERROR', code, message: m })),
  fc.constantFrom('I', 'T', 'E').map((s) => message(0x5a, Buffer.from(s))),
  bytes(40).map((b) => message(0x64, b)),
  fc.constant(message(0x63, Buffer.alloc(0))),
);

/** A damaged stream: bytes overwritten (lengths included), cut short, or spliced with junk. */
function damaged(stream: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(stream, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), bytes(8))
    .map(([buf, edits, cut, junk]) => {
      const out = Buffer.from(buf);
      if (out.length === 0) return junk;
      for (const [at, value] of edits) out[at % out.length] = value;
      const c = cut % (out.length + 1);
      return Buffer.concat([out.subarray(0, c), junk, out.subarray(c)]);
    });
}

const streamOf = (m: fc.Arbitrary<Buffer>) => fc.array(m, { maxLength: 8 }).map((ms) => Buffer.concat(ms));
const validFrontend = streamOf(frontendMessage);
const validBackend = streamOf(backendMessage);
const anyStream = fc.oneof(bytes(300), validFrontend, validBackend, damaged(validFrontend), damaged(validBackend));

// ---------------------------------------------------------------------------------------------
// running a framer the way the session does: next() after every push()

interface Framed {
  /** copies: frames are views that a later push may outlive */
  frames: { type: number; raw: Buffer }[];
  error?: string;
  /** the largest bufferedBytes seen once next() had nothing more */
  maxHeld: number;
}

function frame(chunks: Buffer[], opts: FramerOptions): Framed {
  const f = new MessageFramer(opts);
  const out: Framed = { frames: [], maxHeld: 0 };
  try {
    for (const c of chunks) {
      f.push(c);
      for (let m = f.next(); m; m = f.next()) {
        expect(m.raw.subarray(opts.startup ? 4 : 5)).toEqual(m.payload);
        out.frames.push({ type: m.type, raw: Buffer.from(m.raw) });
      }
      out.maxHeld = Math.max(out.maxHeld, f.bufferedBytes);
    }
  } catch (e) {
    // the only failure the framer documents; anything else would escape as an internal error
    if (!(e instanceof ProtocolError)) throw e;
    out.error = e.message;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('PostgreSQL framing, fuzzed', () => {
  for (const mode of [{ startup: false }, { startup: true }]) {
    it(`any bytes at any chunking: only ProtocolError, and chunking changes neither frames nor error (startup=${mode.startup})`, () => {
      fc.assert(
        fc.property(anyStream, cuts(), fc.integer({ min: 5, max: 1000 }), (buf, at, max) => {
          const opts = { ...mode, maxMessageBytes: max };
          const whole = frame([buf], opts);
          const chunked = frame(split(buf, at), opts);
          expect(chunked.frames).toEqual(whole.frames);
          expect(chunked.error).toEqual(whole.error);
          // what was framed is the stream's beginning, byte for byte
          const framed = Buffer.concat(whole.frames.map((f) => f.raw));
          expect(framed).toEqual(buf.subarray(0, framed.length));
          // a partial message held back never exceeds the limits
          const limit = mode.startup ? MAX_STARTUP_PAYLOAD_BYTES + 4 : max + 1;
          expect(chunked.maxHeld).toBeLessThan(Math.max(limit, mode.startup ? 4 : 5));
        }),
        fuzz(3000),
      );
    }, FUZZ_TEST_TIMEOUT_MS);
  }

  it('valid streams, either direction, reassemble to exactly the input at any chunking', () => {
    const stream = fc.array(fc.oneof(frontendMessage, backendMessage), { maxLength: 12 });
    fc.assert(
      fc.property(stream, cuts(), (messages, at) => {
        const buf = Buffer.concat(messages);
        const out = frame(split(buf, at), {});
        expect(out.error).toBeUndefined();
        expect(out.frames.map((f) => f.raw)).toEqual(messages);
        expect(out.frames.map((f) => f.type)).toEqual(messages.map((m) => m[0]));
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('ChunkQueue.take returns the pushed bytes in order, whatever the chunking', () => {
    fc.assert(
      fc.property(bytes(400), cuts(), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 20 }), (buf, at, takes) => {
        const q = new ChunkQueue();
        for (const c of split(buf, at)) q.push(c);
        let read = 0;
        for (const n of takes) {
          if (n > q.length) break;
          expect(q.take(n)).toEqual(buf.subarray(read, read + n));
          read += n;
          expect(q.length).toBe(buf.length - read);
        }
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('50 MB of near-limit messages in random chunks: the framer never holds more than one message', () => {
    // a source of noise to slice bodies from, and a limit small enough to be reached often
    const max = 1 << 20;
    const noise = Buffer.alloc(max);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 4, max }), fc.integer({ min: 1024, max: 256 * 1024 })), { minLength: 64, maxLength: 64 }), (plan) => {
        const f = new MessageFramer({ maxMessageBytes: max });
        let fed = 0;
        let frames = 0;
        let k = 0;
        let held = 0;
        while (fed < 50 * 1024 * 1024) {
          const [len, chunk] = plan[k++ % plan.length];
          const msg = message(0x64, noise.subarray(0, len - 4));
          for (let off = 0; off < msg.length; off += chunk) {
            f.push(msg.subarray(off, off + chunk));
            while (f.next()) frames++;
            held = Math.max(held, f.bufferedBytes);
          }
          fed += msg.length;
        }
        expect(held).toBeLessThanOrEqual(max);
        expect(f.bufferedBytes).toBe(0);
        expect(frames).toBe(k);
      }),
      { ...fuzz(1), numRuns: 1 }, // one pass is the point; a long run should not repeat it
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});

describe('startup packets, fuzzed', () => {
  it('any payload parses to a packet or fails with ProtocolError', () => {
    const payload = fc.oneof(
      bytes(64),
      // a plausible protocol code in front of junk reaches the parameter loop
      fc.tuple(fc.constantFrom(196608, 196609, 80877102, 80877103, 80877104), bytes(64)).map(([code, rest]) => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(code);
        return Buffer.concat([head, rest]);
      }),
    );
    fc.assert(
      fc.property(payload, (p) => {
        try {
          const packet = parseStartupPacket(p);
          expect(['ssl', 'gssenc', 'cancel', 'startup']).toContain(packet.kind);
          if (packet.kind === 'startup') expect(packet.params.user).toBeTruthy();
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('serialized startup messages frame and parse back to the same parameters', () => {
    const name = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.includes('\0'));
    const value = fc.string({ maxLength: 20 }).filter((s) => !s.includes('\0'));
    const params = fc.tuple(fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.includes('\0')), fc.array(fc.tuple(name, value), { maxLength: 5 }));
    fc.assert(
      fc.property(params, cuts(), ([user, rest], at) => {
        const wanted: Record<string, string> = Object.fromEntries([...rest.filter(([k]) => k !== 'user'), ['user', user]]);
        const wire = Buffer.concat([serializeSSLRequest(), serializeStartup(wanted), serializeCancelRequest(7, -9)]);
        const out = frame(split(wire, at), { startup: true });
        expect(out.error).toBeUndefined();
        const packets = out.frames.map((f) => parseStartupPacket(f.raw.subarray(4)));
        expect(packets[0]).toEqual({ kind: 'ssl' });
        expect(packets[1]).toMatchObject({ kind: 'startup', protocolVersion: 196608 });
        expect({ ...(packets[1] as { params: Record<string, string> }).params }).toEqual(wanted);
        expect(packets[2]).toEqual({ kind: 'cancel', processId: 7, secretKey: -9 });
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});

describe('error fields and denial rewriting, fuzzed', () => {
  it('readErrorFields and readCString on any payload: a value or ProtocolError', () => {
    fc.assert(
      fc.property(bytes(80), fc.nat({ max: 90 }), (p, at) => {
        for (const run of [() => readErrorFields(p), () => readCString(p, at)]) {
          try {
            run();
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
          }
        }
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('errorResponse round-trips through readErrorFields (NULs dropped, never a desync)', () => {
    fc.assert(
      fc.property(text, text, fc.option(text, { nil: undefined }), (code, msg, detail) => {
        const wire = errorResponse({ severity: 'ERROR', code, message: msg, detail });
        const out = frame([wire], {});
        expect(out.frames).toHaveLength(1);
        const fields = readErrorFields(out.frames[0].raw.subarray(5));
        expect(fields.C).toBe(code.replaceAll('\0', ''));
        expect(fields.M).toBe(msg.replaceAll('\0', ''));
        expect(fields.D).toBe(detail?.replaceAll('\0', ''));
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('Denials.rewrite on any ErrorResponse: one of its own refusals, nothing, or ProtocolError', () => {
    const marker = fc.nat({ max: 5 }).map((n) => `function pg_catalog."interlock-denial-${n}"() does not exist`);
    const payload = fc.oneof(
      bytes(80),
      fc.tuple(fc.constantFrom('42883', '42501', 'XX000'), fc.oneof(marker, text)).map(([code, m]) => errorResponse({ severity: 'ERROR', code, message: m }).subarray(5)),
    );
    fc.assert(
      fc.property(fc.array(payload, { maxLength: 6 }), (payloads) => {
        const mine = new Denials();
        mine.query({ message: 'interlock: mine' });
        mine.query({ message: 'interlock: mine too' });
        for (const p of payloads) {
          let out: Buffer | undefined;
          try {
            out = mine.rewrite({ type: 0x45, payload: p, raw: message(0x45, p) });
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
            continue;
          }
          if (out) {
            const fields = readErrorFields(out.subarray(5));
            expect(fields.C).toBe('42501');
            expect(fields.M).toMatch(/^interlock: mine/);
          }
        }
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
