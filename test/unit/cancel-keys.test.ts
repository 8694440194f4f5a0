import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { CancelKeys, sendUpstreamCancel } from '../../src/protocols/postgres/cancel.js';
import type { TargetDef } from '../../src/config/types.js';

const target = (port: number): TargetDef => ({
  name: 'orders-db', protocol: 'postgres', address: { host: '127.0.0.3', port: 5432 },
  upstream: { host: '127.0.0.1', port, user: 'app' },
});
const entry = (sessionId: string, workload = 'report-bot', port = 5432) => ({
  sessionId, workload, target: target(port), upstreamPid: 4711, upstreamSecret: 99,
});

describe('CancelKeys', () => {
  it('issues a positive 32-bit process id and a 32-bit secret', () => {
    const keys = new CancelKeys();
    for (let i = 0; i < 200; i++) {
      const { processId, secretKey } = keys.issue(entry(`s${i}`));
      expect(Number.isInteger(processId) && processId >= 0 && processId <= 0x7fffffff).toBe(true);
      expect(Number.isInteger(secretKey) && secretKey >= -0x80000000 && secretKey <= 0x7fffffff).toBe(true);
    }
  });

  it('issues distinct keys', () => {
    const keys = new CancelKeys();
    const seen = new Set<string>();
    const pids = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const k = keys.issue(entry(`s${i}`));
      seen.add(`${k.processId}:${k.secretKey}`);
      pids.add(k.processId);
    }
    expect(seen.size).toBe(1000);
    expect(pids.size).toBeGreaterThan(990); // random, not a counter stuck on one value
  });

  it('finds a session only for the workload that owns it, and only with both keys', () => {
    const keys = new CancelKeys();
    const e = entry('a', 'report-bot');
    const other = entry('b', 'etl');
    const k = keys.issue(e);
    const ko = keys.issue(other);
    expect(keys.find(k.processId, k.secretKey, 'report-bot')).toBe(e);
    expect(keys.find(ko.processId, ko.secretKey, 'etl')).toBe(other);
    expect(keys.find(k.processId, k.secretKey, 'etl')).toBeUndefined();
    expect(keys.find(k.processId, k.secretKey, 'unknown')).toBeUndefined();
    expect(keys.find(k.processId, (k.secretKey ^ 1) | 0, 'report-bot')).toBeUndefined();
    expect(keys.find(k.processId, ko.secretKey, 'report-bot')).toBeUndefined();
  });

  it('forgets a session, leaving the others', () => {
    const keys = new CancelKeys();
    const a = entry('a');
    const b = entry('b');
    const ka = keys.issue(a);
    const kb = keys.issue(b);
    keys.forget('a');
    expect(keys.find(ka.processId, ka.secretKey, 'report-bot')).toBeUndefined();
    expect(keys.find(kb.processId, kb.secretKey, 'report-bot')).toBe(b);
    keys.forget('a'); // twice is harmless
    keys.forget('never-issued');
    expect(keys.find(kb.processId, kb.secretKey, 'report-bot')).toBe(b);
  });
});

describe('sendUpstreamCancel', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  it('sends exactly one 16-byte CancelRequest with the upstream keys', async () => {
    let resolveBytes!: (b: Buffer) => void;
    const received = new Promise<Buffer>((r) => (resolveBytes = r));
    server = createServer((sock) => {
      const chunks: Buffer[] = [];
      sock.on('data', (c) => chunks.push(c));
      sock.on('end', () => {
        resolveBytes(Buffer.concat(chunks));
        sock.end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;

    await sendUpstreamCancel({ ...entry('s', 'report-bot', port), upstreamPid: 0x01020304, upstreamSecret: -2 });
    const b = await received;
    expect(b.length).toBe(16);
    expect(b.readInt32BE(0)).toBe(16);
    expect(b.readInt32BE(4)).toBe(80877102);
    expect(b.readInt32BE(8)).toBe(0x01020304);
    expect(b.readInt32BE(12)).toBe(-2);
    expect(b.toString('hex')).toBe('00000010' + '04d2162e' + '01020304' + 'fffffffe');
  });

  it('resolves quietly when nobody listens', async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await expect(sendUpstreamCancel(entry('s', 'report-bot', port), 2000)).resolves.toBeUndefined();
  });
});
