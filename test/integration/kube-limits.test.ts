/**
 * The Kubernetes proxy's limits, driven directly (no redirect): request bodies over
 * limits.maxRequestBodyBytes answered 413 (from content-length before reading, or as they
 * flow), a body or headers left unfinished cut after limits.partialMessageTimeout, headers
 * over limits.maxHeaderBytes refused, and a silent API server answered 504 with a Status
 * within limits.upstreamResponseTimeout, while a healthy request on the same proxy is served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { KubeProxy, type KubeConnection } from '../../src/protocols/kubernetes/proxy.js';
import { NodeCa } from '../../src/tls/node-ca.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import type { KubernetesTargetDef, LimitsConfig } from '../../src/config/types.js';
import { NOT_RECORDED, type SessionRecording } from '../../src/recording/recorder.js';
import { startSilentServer, type FakePostgres } from '../helpers/fake-postgres.js';

const API_HOST = '127.0.0.21';
const SILENT_HOST = '127.0.0.22';

let dir: string;
let ca: NodeCa;
let api: HttpsServer;
let apiPort = 0;
let apiBodies: number[] = [];
let silent: FakePostgres;
const proxies: KubeProxy[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'interlock-kube-limits-'));
  ca = NodeCa.load(join(dir, 'ca.crt'), join(dir, 'ca.key'), { create: true });
  writeFileSync(join(dir, 'token'), 'test-token\n', { mode: 0o600 });
  // a quick API server: any request is answered with an empty list, after its body
  api = createHttpsServer(ca.serving([API_HOST]), (req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      apiBodies.push(n);
      const body = JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => api.listen(0, API_HOST, r));
  apiPort = (api.address() as AddressInfo).port;
  silent = await startSilentServer(SILENT_HOST);
});

afterAll(async () => {
  for (const p of proxies) p.close();
  api?.close();
  await silent?.close();
  rmSync(dir, { recursive: true, force: true });
});

function target(host: string, port: number): KubernetesTargetDef {
  return {
    name: host === SILENT_HOST ? 'silent' : 'api', protocol: 'kubernetes', address: { host, port: 6443 }, serverNames: [],
    upstream: { host, port, token: { file: join(dir, 'token') }, ca: { file: join(dir, 'ca.crt') } },
  };
}

async function startProxy(t: KubernetesTargetDef, limits: Partial<LimitsConfig>, recording: SessionRecording = NOT_RECORDED) {
  const audits: { event: string; fields: Record<string, unknown> }[] = [];
  const allow = { action: 'allow' as const, message: 'ok' };
  const proxy = new KubeProxy(ca, [t], () => ({
    target: t, judge: { decide: () => allow }, recording, requests: 0,
    audit: (event, fields) => audits.push({ event, fields }), closed: () => {},
  } satisfies KubeConnection), () => {}, { ...DEFAULT_LIMITS, ...limits });
  proxies.push(proxy);
  await proxy.listen('127.0.0.1', 0);
  const port = ((proxy as unknown as { server: { address(): AddressInfo } }).server.address()).port;
  return { port, audits };
}

const tlsToProxy = { ca: ca_pem(), checkServerIdentity: () => undefined };
function ca_pem() {
  return () => ca.certPem;
}

interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** An HTTP/1.1 request; `write` sends the body (or part of it). Bounded by timeoutMs. */
function http1(port: number, opts: { method?: string; path?: string; headers?: Record<string, string>; write?: (req: import('node:http').ClientRequest) => void }, timeoutMs = 5000): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/api/v1/namespaces/shop/pods', headers: opts.headers,
      ca: tlsToProxy.ca(), checkServerIdentity: tlsToProxy.checkServerIdentity, agent: false, timeout: timeoutMs,
    }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (opts.write) opts.write(req);
    else req.end();
  });
}

describe('Kubernetes proxy and its recording', () => {
  it('forwards nothing until the recording start is on disk', async () => {
    const waiting: (() => void)[] = [];
    const p = await startProxy(target(API_HOST, apiPort), {}, { ...NOT_RECORDED, whenStarted: (fn) => void waiting.push(fn) });
    apiBodies = [];
    const answer = http1(p.port, { method: 'POST', headers: { 'content-type': 'application/json' }, write: (req) => req.end('{"kind":"Pod"}') });
    await new Promise((r) => setTimeout(r, 400));
    expect(waiting).toHaveLength(1);
    expect(apiBodies).toEqual([]); // the API server has seen nothing yet
    waiting[0]!();
    const a = await answer;
    expect(a.status).toBe(200);
    expect(apiBodies).toEqual([14]); // the body waited with the request, and arrived whole
  });
});

describe('Kubernetes proxy limits', () => {
  it('answers 413 from content-length, before reading the body, and serves the next request', async () => {
    const p = await startProxy(target(API_HOST, apiPort), { maxRequestBodyBytes: 1 << 20 });
    apiBodies = [];
    const big = await http1(p.port, {
      method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(100 << 20) },
      write: (req) => req.flushHeaders(), // headers only: the body never comes
    });
    expect(big.status).toBe(413);
    const status = JSON.parse(big.body);
    expect(status).toMatchObject({ kind: 'Status', status: 'Failure', code: 413, reason: 'RequestEntityTooLarge' });
    expect(status.message).toBe('interlock: a request body of 104857600 bytes is over the limit of 1048576 bytes (limits.maxRequestBodyBytes)');
    expect(big.ms).toBeLessThan(2000);
    expect(p.audits.find((a) => a.event === 'limit.exceeded')?.fields).toMatchObject({ limit: 'limits.maxRequestBodyBytes', bytes: 100 << 20 });
    expect(apiBodies).toEqual([]); // never forwarded

    const ok = await http1(p.port, {});
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).kind).toBe('PodList');
  });

  it('answers 413 when a body of unknown length grows past the limit (HTTP/2)', async () => {
    const p = await startProxy(target(API_HOST, apiPort), { maxRequestBodyBytes: 1 << 20 });
    const session = http2Connect(`https://127.0.0.1:${p.port}`, { ca: ca.certPem, checkServerIdentity: () => undefined });
    session.on('error', () => {});
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/api/v1/namespaces/shop/configmaps', 'content-type': 'application/json' });
      stream.on('error', () => {});
      const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
        let status = 0;
        let body = '';
        const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (d) => (body += d));
        // the answer is complete at its end, though our side of the stream was never ended
        const done = () => {
          clearTimeout(timer);
          resolve({ status, body });
        };
        stream.on('end', done);
        stream.on('close', done);
      });
      const chunk = Buffer.alloc(64 * 1024, ' ');
      let sent = 0;
      for (let i = 0; i < 64 && !stream.destroyed && sent < 4 << 20; i++) {
        if (!stream.write(chunk)) await new Promise((r) => setTimeout(r, 10));
        sent += chunk.length;
      }
      const r = await answered;
      expect(r.status).toBe(413);
      expect(JSON.parse(r.body).message).toMatch(/^interlock: a request body of \d+ bytes is over the limit of 1048576 bytes \(limits\.maxRequestBodyBytes\)$/);
    } finally {
      session.destroy();
    }
  });

  it('answers 504 with a Status when the API server never answers, within the bound', async () => {
    const p = await startProxy(target(SILENT_HOST, silent.port), { upstreamResponseTimeoutMs: 400 });
    const r = await http1(p.port, {});
    expect(r.status).toBe(504);
    expect(r.ms).toBeGreaterThanOrEqual(350);
    expect(r.ms).toBeLessThan(2000);
    expect(JSON.parse(r.body)).toMatchObject({
      kind: 'Status', code: 504, reason: 'Timeout',
      message: `interlock: silent (${SILENT_HOST}:${silent.port}) did not answer within 0.4 s (limits.upstreamResponseTimeout)`,
    });
  });

  it('cuts a request body left unfinished (408), and headers left unfinished', async () => {
    const p = await startProxy(target(API_HOST, apiPort), { partialMessageTimeoutMs: 300 });
    const body = await http1(p.port, {
      method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '100' },
      write: (req) => req.write('{"kind":'), // and nothing more
    });
    expect(body.status).toBe(408);
    expect(body.ms).toBeGreaterThanOrEqual(250);
    expect(body.ms).toBeLessThan(2000);
    expect(JSON.parse(body.body).message).toBe('interlock: the request body was not complete within 0.3 s (limits.partialMessageTimeout)');

    // slowloris headers over raw TLS: the connection is answered 408 and closed by Node's HTTP/1 server
    const sock = tlsConnect({ host: '127.0.0.1', port: p.port, ca: ca.certPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => (got += d));
    const closed = new Promise<number>((resolve) => sock.on('close', () => resolve(performance.now())));
    await new Promise((r) => sock.once('secureConnect', r));
    const t0 = performance.now();
    sock.write('GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => sock.writable && sock.write('X-A: b\r\n'), 50);
    const done = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    clearInterval(trickle);
    sock.destroy();
    expect(done).toBeGreaterThan(0);
    expect(done - t0).toBeLessThan(2000);
    expect(got).toMatch(/^HTTP\/1\.1 408/);
  });

  it('refuses headers over limits.maxHeaderBytes', async () => {
    const p = await startProxy(target(API_HOST, apiPort), { maxHeaderBytes: 4096 });
    const r = await http1(p.port, { headers: { 'x-big': 'z'.repeat(8192) } }).catch((e: Error) => ({ status: -1, body: e.message, ms: 0 }));
    expect(r.status).toBe(431);
    const ok = await http1(p.port, { headers: { 'x-small': 'z'.repeat(1024) } });
    expect(ok.status).toBe(200);
  });
});
