/**
 * The PostgreSQL session's limits, driven with raw sockets (no redirect, no BPF): oversized
 * messages refused from their header, unfinished messages timed out, idle sessions left
 * alone, a silent upstream reported in time, endless results streamed with bounded memory,
 * and one bad session never touching another. The upstream is a scripted server on
 * 127.0.0.21/22 that misbehaves on cue.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { MessageFramer } from '../../src/protocols/postgres/framer.js';
import { readErrorFields } from '../../src/protocols/postgres/backend.js';
import { serializeStartup } from '../../src/protocols/postgres/startup.js';
import { serialize } from 'pg-protocol';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import type { LimitsConfig, PostgresTargetDef } from '../../src/config/types.js';
import { verdictJson } from '../../src/policy/rules.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';
import {
  commandComplete, dataRow, message, readyForQuery, rowDescription, startFakePostgres, startSilentServer, type FakePostgres,
} from '../helpers/fake-postgres.js';

const UPSTREAM_HOST = '127.0.0.21';
const SILENT_HOST = '127.0.0.22';

const allowAll = {
  decideText: () => ({ decision: { action: 'allow' as const, message: 'ok' }, kinds: ['select'], auditJson: verdictJson(['select'], { action: 'allow', message: 'ok' }) }),
};

/** What the scripted upstream does with each query, by its text. */
const endlessWriters = new Set<{ stop(): void }>();
const upstreamReads = { copyBytes: 0 };

function answer(sql: string, s: Socket): void {
  if (sql === 'select 1') {
    s.write(Buffer.concat([rowDescription(['one']), dataRow(['1']), commandComplete('SELECT 1'), readyForQuery()]));
  } else if (sql === 'endless') {
    // rows for as long as the proxy takes them, honouring back-pressure like a real server
    const row = dataRow(['x'.repeat(1000)]);
    const batch = Buffer.concat(Array.from({ length: 64 }, () => row));
    let stopped = false;
    const writer = { written: 0, stop: () => (stopped = true) };
    endlessWriters.add(writer);
    s.write(rowDescription(['x']));
    const pump = () => {
      while (!stopped && !s.destroyed) {
        writer.written += batch.length;
        (s as Socket & { endlessWritten?: number }).endlessWritten = writer.written;
        if (!s.write(batch)) return void s.once('drain', pump);
      }
    };
    pump();
  } else if (sql.startsWith('bigrow ')) {
    // one DataRow of n bytes, sent in 64 KiB pieces
    const n = Number(sql.slice(7));
    const value = Buffer.alloc(n, 'y');
    const row = dataRow([value]);
    s.write(rowDescription(['big']));
    for (let at = 0; at < row.length; at += 65536) s.write(row.subarray(at, at + 65536));
    s.write(Buffer.concat([commandComplete('SELECT 1'), readyForQuery()]));
  } else if (sql.startsWith('bignotice ')) {
    // a message the proxy must read whole, over its limit: only its header and a little body
    const head = Buffer.alloc(5);
    head[0] = 'T'.charCodeAt(0);
    head.writeInt32BE(Number(sql.slice(10)), 1);
    s.write(Buffer.concat([head, Buffer.alloc(1000)]));
  } else if (sql === 'copyin') {
    // a server that stops reading: the proxy must stop reading the agent
    s.pause();
    s.write(message('G', Buffer.from([0, 0, 0])));
  } else {
    s.write(Buffer.concat([commandComplete('SELECT 0'), readyForQuery()]));
  }
}

interface Proxy {
  port: number;
  audits: { event: string; fields: Record<string, unknown> }[];
  sessions: PostgresSession[];
  closed: number;
}

const servers: Server[] = [];
const agents: Socket[] = [];
let upstream: FakePostgres;
let silent: FakePostgres;

async function startProxy(opts: { limits?: Partial<LimitsConfig>; loginTimeoutMs?: number; upstreamHost?: string; upstreamPort?: number } = {}): Promise<Proxy> {
  const target: PostgresTargetDef = {
    name: 'fake', protocol: 'postgres', address: { host: UPSTREAM_HOST, port: 5432 },
    upstream: { host: opts.upstreamHost ?? UPSTREAM_HOST, port: opts.upstreamPort ?? upstream.port, user: 'app' },
  };
  const p: Proxy = { port: 0, audits: [], sessions: [], closed: 0 };
  const server = createServer((client) => {
    p.sessions.push(new PostgresSession({
      client, target, judge: allowAll,
      loginTimeoutMs: opts.loginTimeoutMs,
      limits: { ...DEFAULT_LIMITS, ...opts.limits },
      hooks: {
        audit: (event, fields) => p.audits.push({ event, fields }),
        auditSerialized: (event, members) => p.audits.push({ event, fields: JSON.parse(`{${members}}`) }),
        startRecording: () => NOT_RECORDED,
        cancel: () => {},
        registerCancelKey: () => ({ processId: 1, secretKey: 2 }),
        closed: () => p.closed++,
      },
    }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  p.port = (server.address() as AddressInfo).port;
  return p;
}

/** A raw agent connection that frames what comes back (DataRows counted, not kept). */
class Agent {
  readonly sock: Socket;
  readonly framer = new MessageFramer({ maxMessageBytes: 1 << 30 });
  readonly messages: { type: string; payload: Buffer }[] = [];
  rows = 0;
  rowBytes = 0;
  lastRow?: Buffer;
  closed = false;
  private waiters: (() => void)[] = [];

  constructor(port: number) {
    this.sock = connect(port, '127.0.0.1');
    agents.push(this.sock);
    this.sock.on('error', () => {});
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.sock.on('data', (d) => {
      this.framer.push(d);
      for (let f = this.framer.next(); f; f = this.framer.next()) {
        if (f.type === 0x44) {
          this.rows++;
          this.rowBytes += f.raw.length;
          if (f.raw.length > 1 << 20) this.lastRow = Buffer.from(f.raw);
        } else this.messages.push({ type: String.fromCharCode(f.type), payload: Buffer.from(f.payload) });
      }
      this.wake();
    });
  }

  static async loggedIn(port: number): Promise<Agent> {
    const a = new Agent(port);
    a.sock.write(serializeStartup({ user: 'agent', database: 'orders' }));
    await a.until(() => a.has('Z'), 3000, 'ReadyForQuery after login');
    return a;
  }

  has(type: string): boolean {
    return this.messages.some((m) => m.type === type);
  }

  error(): Record<string, string> | undefined {
    const e = this.messages.find((m) => m.type === 'E');
    return e && readErrorFields(e.payload);
  }

  /** Resolves when cond() holds (checked on every event of this agent, and every 20 ms for others'); fails after timeoutMs. */
  until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      const poll = setInterval(() => !done && cond() && finish(), 20);
      const check = () => {
        if (done) return;
        if (cond()) finish();
        else this.waiters.push(check);
      };
      check();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async query(sql: string, timeoutMs = 3000): Promise<void> {
    const before = this.messages.filter((m) => m.type === 'Z').length;
    this.sock.write(serialize.query(sql));
    await this.until(() => this.messages.filter((m) => m.type === 'Z').length > before || this.closed, timeoutMs, `the answer to ${sql}`);
  }
}

const header = (type: string, len: number) => {
  const b = Buffer.alloc(5);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(len, 1);
  return b;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  upstream = await startFakePostgres(UPSTREAM_HOST, answer);
  silent = await startSilentServer(SILENT_HOST);
});

afterEach(() => {
  for (const w of endlessWriters) w.stop();
  endlessWriters.clear();
  for (const a of agents.splice(0)) a.destroy();
});

afterAll(async () => {
  for (const s of servers) s.close();
  await upstream?.close();
  await silent?.close();
});

describe('PostgreSQL session limits', () => {
  it('refuses a 1 GB length prefix from its header, at once, without the memory for it', async () => {
    const p = await startProxy();
    const a = await Agent.loggedIn(p.port);
    const before = process.memoryUsage();
    const t0 = performance.now();
    a.sock.write(header('Q', 2 ** 30));
    await a.until(() => a.closed, 3000, 'the session to end');
    const took = performance.now() - t0;
    const after = process.memoryUsage();
    const e = a.error();
    expect(e?.C).toBe('54000');
    expect(e?.S).toBe('FATAL');
    expect(e?.M).toBe('interlock: message "Q" of 1073741824 bytes is over the limit of 16777216 bytes (limits.maxMessageBytes); the session ends');
    expect(took).toBeLessThan(1000);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(16 << 20);
    expect(after.rss - before.rss).toBeLessThan(64 << 20);
    expect(p.audits.find((x) => x.event === 'limit.exceeded')?.fields).toMatchObject({ limit: 'limits.maxMessageBytes', from: 'agent', messageType: 'Q', bytes: 2 ** 30 });
    expect(p.closed).toBe(1);
  });

  it('refuses a 100 MB Query after its header, not after 100 MB', async () => {
    const p = await startProxy();
    const a = await Agent.loggedIn(p.port);
    const total = 100 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    a.sock.write(header('Q', total + 4));
    let sent = 5;
    // keep sending, as a client would, until the refusal is seen; bounded in count and time
    const deadline = performance.now() + 5000;
    while (!a.closed && !a.error() && sent < total && performance.now() < deadline) {
      if (!a.sock.write(chunk)) await Promise.race([new Promise((r) => a.sock.once('drain', r)), sleep(50)]);
      sent += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    await a.until(() => a.closed, 3000, 'the session to end');
    expect(a.error()?.C).toBe('54000');
    expect(a.error()?.M).toMatch(/message "Q" of 104857604 bytes is over the limit of 16777216 bytes \(limits\.maxMessageBytes\)/);
    expect(sent).toBeLessThan(16 << 20); // refused long before the body could have arrived
  });

  it('refuses an oversized message sent while the login is still under way', async () => {
    const p = await startProxy({ upstreamHost: SILENT_HOST, upstreamPort: silent.port, limits: { upstreamConnectTimeoutMs: 5000 } });
    const a = new Agent(p.port);
    a.sock.write(Buffer.concat([serializeStartup({ user: 'agent', database: 'orders' }), header('P', 2 ** 30)]));
    await a.until(() => a.closed, 2000, 'the session to end');
    expect(a.error()?.C).toBe('54000');
    expect(a.error()?.M).toMatch(/message "P" of 1073741824 bytes/);
  });

  it('refuses a startup packet over 10000 bytes, as PostgreSQL does', async () => {
    const p = await startProxy();
    const a = new Agent(p.port);
    const len = Buffer.alloc(4);
    len.writeInt32BE(2 ** 30, 0);
    a.sock.write(len);
    await a.until(() => a.closed, 2000, 'the session to end');
    expect(a.error()?.C).toBe('08P01');
    expect(a.error()?.M).toBe('interlock: startup packet of 1073741824 bytes is over the limit of 10004 bytes; the session ends');
    expect(p.audits.map((x) => x.event)).toEqual(['connect.refused']);
  });

  it('ends a session whose message is left unfinished, and leaves an idle one alone', async () => {
    const p = await startProxy({ limits: { partialMessageTimeoutMs: 300 } });
    const idle = await Agent.loggedIn(p.port);
    const slow = await Agent.loggedIn(p.port);
    const q = serialize.query('select 1');
    slow.sock.write(q.subarray(0, 7)); // the header and two bytes of the text
    const t0 = performance.now();
    await slow.until(() => slow.closed, 3000, 'the slow session to end');
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(slow.error()?.C).toBe('08P01');
    expect(slow.error()?.M).toBe('interlock: a message was left unfinished for over 0.3 s (limits.partialMessageTimeout); the session ends');
    expect(p.audits.some((x) => x.event === 'limit.exceeded' && x.fields.limit === 'limits.partialMessageTimeout')).toBe(true);

    // idle between complete messages for three times the bound: still served
    await sleep(900);
    expect(idle.closed).toBe(false);
    await idle.query('select 1');
    expect(idle.error()).toBeUndefined();
    expect(idle.rows).toBe(1);
  });

  it('does not cut a client that finishes each message in time, however slowly it sends them', async () => {
    const p = await startProxy({ limits: { partialMessageTimeoutMs: 400 } });
    const a = await Agent.loggedIn(p.port);
    // five queries, each sent in two halves 150 ms apart, 250 ms between queries: 2 s in all
    for (let i = 0; i < 5; i++) {
      const q = serialize.query('select 1');
      a.sock.write(q.subarray(0, 6));
      await sleep(150);
      a.sock.write(q.subarray(6));
      await a.until(() => a.rows === i + 1, 2000, `row ${i + 1}`);
      await sleep(250);
    }
    expect(a.closed).toBe(false);
    expect(a.error()).toBeUndefined();
  });

  it('cuts a login trickled a byte at a time at proxy.loginTimeout, although bytes keep coming', async () => {
    const p = await startProxy({ loginTimeoutMs: 500 });
    const a = new Agent(p.port);
    const startup = serializeStartup({ user: 'agent', database: 'orders', application_name: 'x'.repeat(200) });
    const t0 = performance.now();
    for (let i = 0; i < startup.length && !a.closed && performance.now() - t0 < 3000; i++) {
      a.sock.write(startup.subarray(i, i + 1));
      await sleep(20);
    }
    await a.until(() => a.closed, 3000, 'the session to end');
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(1500);
    expect(a.error()?.M).toBe('login took too long (over 0.5 s, proxy.loginTimeout)');
  });

  it('gives a clear error within the bound when the upstream accepts and never answers, and lets go of it', async () => {
    const p = await startProxy({ upstreamHost: SILENT_HOST, upstreamPort: silent.port, limits: { upstreamConnectTimeoutMs: 400 } });
    const a = new Agent(p.port);
    const t0 = performance.now();
    a.sock.write(serializeStartup({ user: 'agent', database: 'orders' }));
    await a.until(() => silent.sockets.size === 1, 2000, 'the proxy to connect upstream');
    await a.until(() => a.closed, 3000, 'the session to end');
    const took = performance.now() - t0;
    expect(took).toBeLessThan(1500);
    expect(a.error()?.C).toBe('08006');
    expect(a.error()?.M).toBe(`target fake (${SILENT_HOST}:${silent.port}) did not answer within 0.4 s (limits.upstreamConnectTimeout)`);
    // the upstream socket is closed now, not after a linger
    await a.until(() => silent.sockets.size === 0, 1000, 'the upstream socket to close');
    expect(p.closed).toBe(1);
  });

  it('streams endless rows with bounded memory: a client that does not read holds the server back', async () => {
    const p = await startProxy();
    const a = await Agent.loggedIn(p.port);
    a.sock.write(serialize.query('endless'));
    await a.until(() => a.rows > 1000, 3000, 'rows to flow');
    const serverSocket = [...upstream.sockets].find((s) => (s as Socket & { endlessWritten?: number }).endlessWritten !== undefined)!;
    const written = () => (serverSocket as Socket & { endlessWritten?: number }).endlessWritten ?? 0;
    const memBefore = process.memoryUsage();

    // the agent stops reading: within a moment the server cannot write more
    a.sock.pause();
    await sleep(400);
    const stalledAt = written();
    await sleep(600);
    expect(written() - stalledAt).toBeLessThan(1 << 20); // nothing (or a last batch) moved while nobody read
    expect(written() - a.rowBytes).toBeLessThan(64 << 20); // all that is in flight: socket buffers and one read

    // reading again: another 100 MB of rows streams through
    const target = a.rowBytes + 100 * 1024 * 1024;
    a.sock.resume();
    await a.until(() => a.rowBytes >= target, 20_000, '100 MB more rows');
    const memAfter = process.memoryUsage();
    expect(memAfter.arrayBuffers - memBefore.arrayBuffers).toBeLessThan(64 << 20);
    expect(memAfter.rss - memBefore.rss).toBeLessThan(128 << 20);
    expect(a.error()).toBeUndefined();
  }, 30_000);

  it('holds a client back while the server does not read', async () => {
    const p = await startProxy();
    const a = await Agent.loggedIn(p.port);
    a.sock.write(serialize.query('copyin'));
    await a.until(() => a.has('G'), 2000, 'CopyInResponse');
    const piece = Buffer.concat(Array.from({ length: 16 }, () => message('d', Buffer.alloc(4096, 'c'))));
    let accepted = 0;
    const t0 = performance.now();
    // write while the socket takes it; stop at the first write that would only buffer in this process
    for (let i = 0; i < 10_000 && performance.now() - t0 < 3000; i++) {
      const ok = a.sock.write(piece);
      accepted += piece.length;
      if (!ok) {
        const drained = await Promise.race([new Promise((r) => a.sock.once('drain', () => r(true))), sleep(300).then(() => false)]);
        if (!drained) break;
      }
    }
    // the kernel buffers on both legs and one read's worth: megabytes, not the 650 MB this loop could send
    expect(accepted).toBeLessThan(64 << 20);
    expect(a.closed).toBe(false);
  });

  it('passes a row over maxUpstreamMessageBytes through in pieces when nothing masks it', async () => {
    const p = await startProxy({ limits: { maxUpstreamMessageBytes: 1 << 20 } });
    const a = await Agent.loggedIn(p.port);
    const n = 8 * 1024 * 1024;
    await a.query(`bigrow ${n}`, 5000);
    expect(a.error()).toBeUndefined();
    expect(a.rows).toBe(1);
    const expected = dataRow([Buffer.alloc(n, 'y')]);
    expect(a.lastRow?.length).toBe(expected.length);
    expect(createHash('sha256').update(a.lastRow!).digest('hex')).toBe(createHash('sha256').update(expected).digest('hex'));
    // and the session goes on
    await a.query('select 1');
    expect(a.rows).toBe(2);
  });

  it('ends the session with a clear error when a server message it must read whole is over the limit', async () => {
    const p = await startProxy({ limits: { maxUpstreamMessageBytes: 1 << 20 } });
    const a = await Agent.loggedIn(p.port);
    await a.query(`bignotice ${2 ** 30}`);
    await a.until(() => a.closed, 2000, 'the session to end');
    expect(a.error()?.C).toBe('54000');
    expect(a.error()?.M).toMatch(/^interlock: target fake sent a message "T" of 1073741824 bytes in a result that must be held whole to be masked, over the limit of 1048576 bytes \(limits\.maxUpstreamMessageBytes\)/);
    expect(p.audits.find((x) => x.event === 'limit.exceeded')?.fields).toMatchObject({ from: 'upstream', messageType: 'T' });
  });

  it('a bad session is refused while a healthy one on the same proxy keeps working', async () => {
    const p = await startProxy({ limits: { partialMessageTimeoutMs: 300 } });
    const good = await Agent.loggedIn(p.port);
    const huge = await Agent.loggedIn(p.port);
    const slow = await Agent.loggedIn(p.port);
    const garbage = await Agent.loggedIn(p.port);
    huge.sock.write(header('Q', 2 ** 30));
    slow.sock.write(header('Q', 100));
    garbage.sock.write(header('Q', -7));
    for (let i = 0; i < 3; i++) {
      await good.query('select 1');
      await sleep(150);
    }
    await huge.until(() => huge.closed, 2000, 'the oversized session to end');
    await slow.until(() => slow.closed, 2000, 'the slow session to end');
    await garbage.until(() => garbage.closed, 2000, 'the malformed session to end');
    expect([huge.error()?.C, slow.error()?.C, garbage.error()?.C]).toEqual(['54000', '08P01', '08P01']);
    expect(good.rows).toBe(3);
    expect(good.error()).toBeUndefined();
    expect(good.closed).toBe(false);
    expect(p.closed).toBe(3);
  });
});
