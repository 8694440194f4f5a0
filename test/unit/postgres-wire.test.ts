import { describe, expect, it } from 'vitest';
import { Parser } from 'pg-protocol/dist/parser.js';
import { serialize } from 'pg-protocol';
import { MessageFramer, MessageTooLarge, ProtocolError, type Frame } from '../../src/protocols/postgres/framer.js';
import {
  parseStartupPacket,
  serializeCancelRequest,
  serializeSSLRequest,
  serializeStartup,
  PROTOCOL_3_0,
} from '../../src/protocols/postgres/startup.js';
import {
  authenticationOk,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readCString,
  readErrorFields,
  readyForQuery,
} from '../../src/protocols/postgres/backend.js';

/** Parses backend messages with node-postgres' own parser. */
function pgParse(buf: Buffer): any[] {
  const out: any[] = [];
  new Parser().parse(buf, (m) => out.push(m));
  return out;
}

function drain(f: MessageFramer): Frame[] {
  const frames: Frame[] = [];
  for (let m = f.next(); m; m = f.next()) frames.push(m);
  return frames;
}

const simple = (f: Frame) => ({ type: f.type, payload: f.payload.toString('hex'), raw: f.raw.toString('hex') });

// A mix of empty, small and multi-byte messages, as a client would send them.
const stream = Buffer.concat([
  serialize.query('select 1'),
  serialize.sync(),
  serialize.parse({ name: 's1', text: 'select $1::text', types: [25] }),
  serialize.bind({ statement: 's1', values: ['héllo'] }),
  serialize.describe({ type: 'P', name: '' }),
  serialize.execute({ portal: '', rows: 0 }),
  serialize.sync(),
  serialize.query('x'.repeat(300)),
]);

describe('MessageFramer', () => {
  const whole = drain(withChunks([stream]));

  function withChunks(chunks: Buffer[], opts = {}) {
    const f = new MessageFramer(opts);
    for (const c of chunks) f.push(c);
    return f;
  }

  it('frames whole messages as zero-copy views', () => {
    expect(whole.map((m) => String.fromCharCode(m.type))).toEqual(['Q', 'S', 'P', 'B', 'D', 'E', 'S', 'Q']);
    expect(whole[0].payload.toString()).toBe('select 1\0');
    expect(whole[1].payload.length).toBe(0);
    expect(whole[0].raw.buffer).toBe(stream.buffer); // a view, not a copy
    expect(Buffer.concat(whole.map((m) => m.raw)).equals(stream)).toBe(true);
  });

  it('gives the same frames for every two-way and three-way split', () => {
    const expected = whole.map(simple);
    for (let i = 0; i <= stream.length; i++) {
      const f = new MessageFramer();
      f.push(stream.subarray(0, i));
      const got = drain(f);
      f.push(stream.subarray(i));
      got.push(...drain(f));
      expect(got.map(simple)).toEqual(expected);
      expect(f.bufferedBytes).toBe(0);
    }
    for (let i = 0; i < stream.length; i += 7) {
      for (let j = i; j <= stream.length; j += 5) {
        const f = new MessageFramer();
        const got: Frame[] = [];
        for (const part of [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]) {
          f.push(part);
          got.push(...drain(f));
        }
        expect(got.map(simple)).toEqual(expected);
      }
    }
  });

  it('handles byte-by-byte delivery and tracks buffered bytes', () => {
    const f = new MessageFramer();
    const got: Frame[] = [];
    for (let i = 0; i < stream.length; i++) {
      f.push(stream.subarray(i, i + 1));
      got.push(...drain(f));
    }
    expect(got.map(simple)).toEqual(whole.map(simple));
    expect(f.bufferedBytes).toBe(0);

    const g = new MessageFramer();
    g.push(stream.subarray(0, 3));
    expect(g.next()).toBeNull();
    expect(g.bufferedBytes).toBe(3);
  });

  it('frames startup-format messages, then regular ones', () => {
    const startup = serializeStartup({ user: 'alice', database: 'db' });
    const all = Buffer.concat([serializeSSLRequest(), startup, serialize.query('select 1')]);
    for (let i = 0; i <= all.length; i++) {
      const f = new MessageFramer({ startup: true });
      f.push(all.subarray(0, i));
      f.push(all.subarray(i));
      const ssl = f.next()!;
      expect(ssl.type).toBe(0);
      expect(parseStartupPacket(ssl.payload)).toEqual({ kind: 'ssl' });
      const s = f.next()!;
      expect(s.raw.equals(startup)).toBe(true);
      f.setStartupMode(false);
      const q = f.next()!;
      expect(String.fromCharCode(q.type)).toBe('Q');
      expect(f.next()).toBeNull();
    }
  });

  it('rejects an oversized length before the body arrives', () => {
    const f = new MessageFramer({ maxMessageBytes: 1024 });
    const header = Buffer.from([0x51, 0, 0, 0x04, 0x01]); // 'Q', length 1025
    f.push(header);
    expect(() => f.next()).toThrow(MessageTooLarge);
    try {
      f.next();
    } catch (e) {
      // a limit, not a broken client: program_limit_exceeded, with what the header claimed
      expect((e as MessageTooLarge).code).toBe('54000');
      expect((e as MessageTooLarge).length).toBe(1025);
      expect((e as MessageTooLarge).limit).toBe(1024);
    }
    // exactly at the limit is fine
    const ok = new MessageFramer({ maxMessageBytes: 1024 });
    ok.push(Buffer.from([0x51, 0, 0, 0x04, 0x00]));
    expect(ok.next()).toBeNull();

    // default limit: 64 MiB
    const d = new MessageFramer();
    const big = Buffer.alloc(5);
    big[0] = 0x64;
    big.writeInt32BE(64 * 1024 * 1024 + 1, 1);
    d.push(big);
    expect(() => d.next()).toThrow(/"d" of 67108865 bytes is too large \(limit 67108864\)/);
  });

  it('rejects lengths below 4, including negative ones', () => {
    for (const len of [0, 3, -1, -2147483648]) {
      const f = new MessageFramer();
      const b = Buffer.alloc(5);
      b[0] = 0x51;
      b.writeInt32BE(len, 1);
      f.push(b);
      expect(() => f.next()).toThrow(ProtocolError);
    }
  });

  it('bounds startup packets to 10000 payload bytes and at least a protocol code', () => {
    for (const [len, ok] of [[10004, true], [10005, false], [7, false], [8, true], [-5, false]] as const) {
      const f = new MessageFramer({ startup: true });
      const b = Buffer.alloc(4);
      b.writeInt32BE(len, 0);
      f.push(b);
      if (ok) expect(f.next()).toBeNull();
      else expect(() => f.next()).toThrow(ProtocolError);
    }
  });
});

describe('MessageFramer limits', () => {
  const header = (type: number, len: number) => {
    const b = Buffer.alloc(5);
    b[0] = type;
    b.writeInt32BE(len, 1);
    return b;
  };

  it('refuses a 1 GB length prefix from the header alone, holding only the header', () => {
    const f = new MessageFramer({ maxMessageBytes: 16 << 20 });
    f.push(header(0x51, 2 ** 30));
    expect(() => f.next()).toThrow(/"Q" of 1073741824 bytes is too large \(limit 16777216\)/);
    expect(f.bufferedBytes).toBe(5);
  });

  it('names a startup packet over 10000 bytes as too large, with the limit', () => {
    const f = new MessageFramer({ startup: true });
    const b = Buffer.alloc(4);
    b.writeInt32BE(2 ** 30, 0);
    f.push(b);
    expect(() => f.next()).toThrow(/startup packet of 1073741824 bytes is too large \(limit 10004\)/);
  });

  it('checkNext sees a bad header without consuming a whole message', () => {
    const f = new MessageFramer({ maxMessageBytes: 1024 });
    const q = serialize.query('select 1');
    f.push(q);
    f.checkNext(); // fine, and still there
    expect(f.bufferedBytes).toBe(q.length);
    f.next();
    f.push(header(0x51, 5000));
    expect(() => f.checkNext()).toThrow(MessageTooLarge);
  });

  it('reports an oversized message instead of throwing, then passes it through in pieces', () => {
    const f = new MessageFramer({ maxMessageBytes: 64, reportOversized: true });
    const small = serialize.sync();
    const bodyLen = 1000;
    const big = Buffer.concat([header(0x44, 4 + bodyLen), Buffer.alloc(bodyLen, 7)]);
    const after = serialize.flush();
    const all = Buffer.concat([small, big, after]);
    // delivered in uneven pieces, the header split across two of them
    const cuts = [small.length + 2, small.length + 300, small.length + 301, small.length + 900, all.length];
    const frames: number[] = [];
    const pieces: Buffer[] = [];
    let seenOversized = -1;
    let at = 0;
    for (const cut of cuts) {
      expect(cut).toBeGreaterThan(at);
      f.push(all.subarray(at, cut));
      at = cut;
      for (let n = 0; n < 10; n++) { // bounded: a handful of steps per push
        if (f.passing) {
          for (let p = f.nextPiece(); p; p = f.nextPiece()) pieces.push(p);
          if (f.passing) break;
        }
        for (let m = f.next(); m; m = f.next()) frames.push(m.type);
        if (f.oversized < 0) break;
        seenOversized = f.oversized;
        expect(f.oversizedBytes).toBe(4 + bodyLen);
        f.passThrough();
      }
      // of the big message, at most an unfinished header is ever held
      expect(f.bufferedBytes).toBeLessThanOrEqual(4);
    }
    expect(seenOversized).toBe(0x44);
    expect(Buffer.concat(pieces).equals(big)).toBe(true);
    expect(frames).toEqual([small[0], after[0]]);
    expect(f.passing).toBe(0);
    expect(f.bufferedBytes).toBe(0);
  });

  it('throws on an oversized message unless asked to report it', () => {
    const f = new MessageFramer({ maxMessageBytes: 64 });
    f.push(header(0x44, 1000));
    expect(() => f.next()).toThrow(MessageTooLarge);
    expect(() => new MessageFramer().passThrough()).toThrow();
  });
});

describe('startup packets', () => {
  const payloadOf = (msg: Buffer) => msg.subarray(4);

  it('parses SSLRequest, GSSENCRequest and CancelRequest', () => {
    expect(parseStartupPacket(payloadOf(serializeSSLRequest()))).toEqual({ kind: 'ssl' });
    const gss = Buffer.alloc(4);
    gss.writeInt32BE(80877104, 0);
    expect(parseStartupPacket(gss)).toEqual({ kind: 'gssenc' });
    const cancel = serializeCancelRequest(4242, -123456789);
    expect(cancel.readInt32BE(0)).toBe(16);
    expect(parseStartupPacket(payloadOf(cancel))).toEqual({ kind: 'cancel', processId: 4242, secretKey: -123456789 });
  });

  it('parses a StartupMessage as node-postgres sends it', () => {
    const msg = serialize.startup({ user: 'alice', database: 'shop', application_name: 'ünï', client_encoding: 'UTF8' });
    const p = parseStartupPacket(payloadOf(msg));
    expect(p).toEqual({
      kind: 'startup',
      protocolVersion: PROTOCOL_3_0,
      params: { user: 'alice', database: 'shop', application_name: 'ünï', client_encoding: 'UTF8' },
    });
  });

  it('round-trips through serializeStartup, byte-identical to node-postgres', () => {
    const params = { user: 'bob', database: 'x', options: '-c search_path=a,b' };
    const ours = serializeStartup(params);
    // node-postgres always appends client_encoding
    expect(serializeStartup({ ...params, client_encoding: 'UTF8' }).equals(serialize.startup(params))).toBe(true);
    expect(serializeSSLRequest().equals(serialize.requestSsl())).toBe(true);
    const parsed = parseStartupPacket(payloadOf(ours));
    expect(parsed.kind === 'startup' && { ...parsed.params }).toEqual(params);
  });

  it('accepts protocol 3.x minor versions and keeps _pq_ options', () => {
    const msg = serializeStartup({ user: 'u', '_pq_.foo': 'bar' }, (3 << 16) | 2);
    const p = parseStartupPacket(payloadOf(msg));
    expect(p).toMatchObject({ kind: 'startup', protocolVersion: 196610, params: { '_pq_.foo': 'bar' } });
  });

  it('keeps a "__proto__" parameter as a plain entry', () => {
    const body = Buffer.from('user\0u\0__proto__\0x\0\0');
    const payload = Buffer.concat([Buffer.from([0, 3, 0, 0]), body]);
    const p = parseStartupPacket(payload);
    expect(p.kind === 'startup' && Object.keys(p.params)).toEqual(['user', '__proto__']);
  });

  it('rejects malformed startup packets', () => {
    const v3 = Buffer.from([0, 3, 0, 0]);
    const bad = (body: string | Buffer, version = v3) =>
      () => parseStartupPacket(Buffer.concat([version, typeof body === 'string' ? Buffer.from(body) : body]));
    expect(bad('user\0u\0\0', Buffer.from([0, 2, 0, 0]))).toThrow(/unsupported frontend protocol 2\.0/);
    expect(bad('user\0u\0\0', Buffer.from([0, 4, 0, 0]))).toThrow(ProtocolError);
    expect(bad('user\0u\0')).toThrow(/terminator/); // missing final NUL
    expect(bad('user\0u')).toThrow(/unterminated/);
    expect(bad('user\0')).toThrow(ProtocolError); // name without value
    expect(bad('user\0u\0\0extra')).toThrow(/terminator/);
    expect(bad('database\0d\0\0')).toThrow(/no PostgreSQL user name/);
    expect(bad('user\0\0\0')).toThrow(/no PostgreSQL user name/);
    expect(() => parseStartupPacket(Buffer.from([0, 3]))).toThrow(ProtocolError);
    // SSLRequest / CancelRequest with the wrong size
    expect(() => parseStartupPacket(Buffer.concat([payloadOf(serializeSSLRequest()), Buffer.from([0])]))).toThrow(ProtocolError);
    expect(() => parseStartupPacket(payloadOf(serializeCancelRequest(1, 2)).subarray(0, 8))).toThrow(ProtocolError);
    try {
      bad('database\0d\0\0')();
    } catch (e) {
      expect((e as ProtocolError).code).toBe('28000');
    }
  });

  it('refuses to serialize parameters that would inject others', () => {
    expect(() => serializeStartup({ user: 'u\0role\0admin' })).toThrow(TypeError);
  });
});

describe('backend messages', () => {
  it('errorResponse round-trips through pg-protocol', () => {
    const [m] = pgParse(
      errorResponse({ severity: 'FATAL', code: '28000', message: 'denied: ünïcode', detail: 'why', hint: 'do this' }),
    );
    expect(m).toMatchObject({ name: 'error', severity: 'FATAL', code: '28000', message: 'denied: ünïcode', detail: 'why', hint: 'do this' });
    const [n] = pgParse(errorResponse({ severity: 'ERROR', code: '42501', message: 'no' }));
    expect(n).toMatchObject({ name: 'error', severity: 'ERROR', code: '42501', message: 'no', detail: undefined, hint: undefined });
  });

  it('errorResponse drops NULs that would truncate a field', () => {
    const buf = errorResponse({ severity: 'ERROR', code: '42501', message: 'a\0b', detail: 'c' });
    expect(pgParse(buf)[0]).toMatchObject({ message: 'ab', detail: 'c' });
  });

  it('noticeResponse round-trips', () => {
    const [m] = pgParse(noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful' }));
    expect(m).toMatchObject({ name: 'notice', severity: 'WARNING', code: '01000', message: 'careful' });
  });

  it('authenticationOk, backendKeyData, parameterStatus, readyForQuery', () => {
    const msgs = pgParse(
      Buffer.concat([
        authenticationOk(),
        parameterStatus('server_version', '15.4'),
        backendKeyData(1234, -5),
        readyForQuery('I'),
        readyForQuery('T'),
        readyForQuery('E'),
      ]),
    );
    expect(msgs.map((m) => m.name)).toEqual([
      'authenticationOk', 'parameterStatus', 'backendKeyData', 'readyForQuery', 'readyForQuery', 'readyForQuery',
    ]);
    expect(msgs[1]).toMatchObject({ parameterName: 'server_version', parameterValue: '15.4' });
    expect(msgs[2]).toMatchObject({ processID: 1234, secretKey: -5 });
    expect(msgs.slice(3).map((m) => m.status)).toEqual(['I', 'T', 'E']);
  });

  it('negotiateProtocolVersion lays out minor version and option names', () => {
    const b = negotiateProtocolVersion(0, ['_pq_.a', '_pq_.bb']);
    expect(String.fromCharCode(b[0])).toBe('v');
    expect(b.readInt32BE(1)).toBe(b.length - 1);
    expect(b.readInt32BE(5)).toBe(0);
    expect(b.readInt32BE(9)).toBe(2);
    expect(b.subarray(13).toString()).toBe('_pq_.a\0_pq_.bb\0');
  });

  it('readErrorFields decodes what errorResponse encodes', () => {
    const f = new MessageFramer();
    f.push(errorResponse({ severity: 'ERROR', code: '22012', message: 'division by zero', hint: 'h' }));
    expect(readErrorFields(f.next()!.payload)).toEqual({ S: 'ERROR', V: 'ERROR', C: '22012', M: 'division by zero', H: 'h' });
    expect(() => readErrorFields(Buffer.from('SERROR\0'))).toThrow(ProtocolError);
    expect(() => readErrorFields(Buffer.from('SERR'))).toThrow(ProtocolError);
  });

  it('readCString', () => {
    const b = Buffer.from('ab\0\0cd');
    expect(readCString(b, 0)).toEqual(['ab', 3]);
    expect(readCString(b, 3)).toEqual(['', 4]);
    expect(() => readCString(b, 4)).toThrow(ProtocolError);
    expect(() => readCString(b, 99)).toThrow(ProtocolError);
  });
});
