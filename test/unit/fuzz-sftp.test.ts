/**
 * Fuzzing the SFTP inspector: packet framing both ways and request decoding, on arbitrary bytes
 * and on valid sessions, at arbitrary chunk boundaries. See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FX_PERMISSION_DENIED, FXP, PFLAG, SftpInspector, SftpProtocolError, type SftpDecider, type SftpFileEvent } from '../../src/protocols/ssh/sftp.js';
import { bytes, cuts, fuzz, split, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const str = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return Buffer.concat([u32(b.length), b]);
};
const packet = (type: number, ...fields: Buffer[]) => {
  const body = Buffer.concat(fields);
  return Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
};
const INIT = packet(FXP.INIT, u32(3));
const VERSION = packet(FXP.VERSION, u32(3));

/** Everything under /secret is refused. */
const decide: SftpDecider = (_access, path) => (path.startsWith('/secret') ? { allowed: false, message: 'no' } : { allowed: true });

type Step = { from: 'client' | 'server'; bytes: Buffer };

interface Run {
  toServer: Buffer;
  toClient: Buffer;
  events: SftpFileEvent[];
  error?: string;
}

/** Feeds the steps, each cut into chunks, and collects what the inspector lets through. */
function run(steps: Step[], at: number[]): Run {
  const events: SftpFileEvent[] = [];
  const inspector = new SftpInspector(decide, (e) => events.push(e), { maxPacketBytes: 4096 });
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  try {
    for (const step of steps) {
      for (const chunk of split(step.bytes, at)) {
        if (step.from === 'client') {
          const out = inspector.fromClient(chunk);
          toServer.push(...out.toServer);
          toClient.push(...out.toClient);
        } else toClient.push(...inspector.fromServer(chunk));
      }
    }
  } catch (e) {
    // the inspector's only documented failure: the caller ends the channel
    if (!(e instanceof SftpProtocolError)) throw e;
    return { toServer: Buffer.concat(toServer), toClient: Buffer.concat(toClient), events, error: e.message };
  } finally {
    inspector.close();
  }
  return { toServer: Buffer.concat(toServer), toClient: Buffer.concat(toClient), events };
}

// ---------------------------------------------------------------------------------------------
// valid requests (with unique ids) and the server's answers

const path = fc.oneof(
  fc.constantFrom('/secret/key', '/srv/data', 'rel/x', '/secret', '/', '.', '../up', 'a\0b'),
  // no "secret" or NUL by chance: then a refused packet must hold "/secret" or the NUL path
  fc.string({ maxLength: 10 }).filter((s) => !s.includes('secret') && !s.includes('\0')),
);
const request = (id: number) =>
  fc.oneof(
    fc.tuple(path, fc.constantFrom(PFLAG.READ, PFLAG.WRITE | PFLAG.CREAT, PFLAG.APPEND)).map(([p, f]) => packet(FXP.OPEN, u32(id), str(p), u32(f), u32(0))),
    path.map((p) => packet(FXP.STAT, u32(id), str(p))),
    path.map((p) => packet(FXP.REMOVE, u32(id), str(p))),
    fc.tuple(path, path).map(([a, b]) => packet(FXP.RENAME, u32(id), str(a), str(b))),
    fc.tuple(path, path).map(([a, b]) => packet(FXP.EXTENDED, u32(id), str('posix-rename@openssh.com'), str(a), str(b))),
    fc.constant(packet(FXP.CLOSE, u32(id), str('h1'))),
    bytes(16).map((d) => packet(FXP.WRITE, u32(id), str('h1'), Buffer.alloc(8), str(d))),
  );
const session = fc
  .array(fc.nat({ max: 6 }), { maxLength: 8 })
  .chain((kinds) => fc.tuple(...kinds.map((_, i) => request(i + 1))))
  .map((requests): Step[] => [
    { from: 'client', bytes: INIT },
    { from: 'server', bytes: VERSION },
    { from: 'client', bytes: Buffer.concat(requests) },
    { from: 'server', bytes: Buffer.concat(requests.map((_, i) => packet(FXP.HANDLE, u32(i + 1), str('h1')))) },
  ]);

describe('SFTP inspector, fuzzed', () => {
  it('arbitrary bytes either way, at any chunking: only SftpProtocolError, and the same outcome however chunked', () => {
    const junkSession = fc.tuple(bytes(200), bytes(200), fc.boolean()).map(([c, s, handshake]): Step[] => [
      ...(handshake ? [{ from: 'client' as const, bytes: INIT }, { from: 'server' as const, bytes: VERSION }] : []),
      { from: 'client', bytes: c },
      { from: 'server', bytes: s },
    ]);
    fc.assert(
      fc.property(fc.oneof(junkSession, session), cuts(), (steps, at) => {
        const whole = run(steps, []);
        const chunked = run(steps, at);
        expect(chunked.error).toEqual(whole.error);
        expect(chunked.events).toEqual(whole.events);
        if (whole.error === undefined) {
          expect(chunked.toServer).toEqual(whole.toServer);
          expect(chunked.toClient).toEqual(whole.toClient);
        }
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('valid sessions: every request is forwarded verbatim or refused by id, and nothing under /secret reaches the server', () => {
    fc.assert(
      fc.property(session, cuts(), (steps, at) => {
        const out = run(steps, at);
        expect(out.error).toBeUndefined();
        const requests = steps[2].bytes;
        // walk the client's packets: forwarded ones must come out in order, refused ones get a status
        expect(out.toServer.subarray(0, INIT.length)).toEqual(INIT);
        let forwarded = INIT.length;
        let refusals = 0;
        for (let off = 0; off < requests.length; ) {
          const len = requests.readUInt32BE(off);
          const raw = requests.subarray(off, off + 4 + len);
          const id = raw.readUInt32BE(5);
          if (out.toServer.subarray(forwarded, forwarded + raw.length).equals(raw)) forwarded += raw.length;
          else {
            refusals++;
            const status = Buffer.concat([u32(id), u32(FX_PERMISSION_DENIED)]);
            expect(out.toClient.includes(status)).toBe(true);
            expect(raw.includes('/secret') || raw.includes('a\0b')).toBe(true);
          }
          off += 4 + len;
        }
        expect(forwarded).toBe(out.toServer.length);
        expect(out.toServer.includes('/secret')).toBe(false);
        expect(out.events.filter((e) => !e.allowed)).toHaveLength(refusals);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
