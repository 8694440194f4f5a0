/**
 * A Kubernetes connection becomes raw bytes only after a 101 to a judged exec/attach/portforward
 * upgrade. An Upgrade header on any other request is refused; an upgrade the API server does not
 * accept ends the connection; and nothing the agent sent after its upgrade request reaches the
 * API server before the 101. The API server stand-in here (127.0.0.23) logs every byte it reads
 * and answers like a server that ignores Upgrade (a plain 200), or switches protocols on cue.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { KubeProxy, type KubeConnection } from '../../src/protocols/kubernetes/proxy.js';
import { NodeCa } from '../../src/tls/node-ca.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import type { KubernetesTargetDef } from '../../src/config/types.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';

const API_HOST = '127.0.0.23';
let dir: string;
let ca: NodeCa;
let api: TlsServer;
let seen = '';
/** how the stand-in answers an upgrade request: switch protocols, or ignore the Upgrade header */
let switching = false;
let proxy: KubeProxy;
let proxyPort = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'interlock-kube-upgrade-'));
  ca = NodeCa.load(join(dir, 'ca.crt'), join(dir, 'ca.key'), { create: true });
  writeFileSync(join(dir, 'token'), 'test-token\n', { mode: 0o600 });
  api = createTlsServer(ca.serving([API_HOST]), (s) => {
    s.on('data', (d: Buffer) => {
      const first = seen.length === 0 || !s.readableDidRead;
      seen += d.toString('latin1');
      if (first || d.includes('HTTP/1.1')) {
        if (switching) s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nSTREAM-BYTES');
        else s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 31\r\n\r\n{"kind":"Secret","data":"c2Vj"}');
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => api.listen(0, API_HOST, r));
  const t: KubernetesTargetDef = {
    name: 'api', protocol: 'kubernetes', address: { host: API_HOST, port: 6443 }, serverNames: [],
    upstream: { host: API_HOST, port: (api.address() as AddressInfo).port, token: { file: join(dir, 'token') }, ca: { file: join(dir, 'ca.crt') } },
  };
  const allow = { action: 'allow' as const, message: 'ok' };
  proxy = new KubeProxy(ca, [t], () => ({
    target: t, judge: { decide: () => allow }, recording: NOT_RECORDED, requests: 0, audit: () => {}, closed: () => {},
  } satisfies KubeConnection), () => {}, DEFAULT_LIMITS);
  await proxy.listen('127.0.0.1', 0);
  proxyPort = ((proxy as unknown as { server: { address(): AddressInfo } }).server.address()).port;
});

afterAll(() => {
  proxy?.close();
  api?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Raw bytes to the proxy over TLS (HTTP/1.1); what came back when the proxy closed, or after `ms`. */
function raw(bytes: string, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = tlsConnect({ host: '127.0.0.1', port: proxyPort, ca: ca.certPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] }, () => s.write(bytes));
    const done = () => resolve(got);
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', done);
    s.on('error', done);
    setTimeout(() => {
      s.destroy();
      done();
    }, ms);
  });
}

const upgradeHeaders = 'Host: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const SMUGGLED = 'DELETE /api/v1/namespaces/shop/pods/web HTTP/1.1\r\nHost: k\r\nImpersonate-Group: system:masters\r\n\r\n';

describe('Kubernetes upgrades', () => {
  it('an Upgrade header on a GET of pods is refused, and nothing reaches the API server', async () => {
    seen = '';
    const got = await raw(`GET /api/v1/namespaces/shop/pods HTTP/1.1\r\n${upgradeHeaders}\r\n${SMUGGLED}`);
    expect(got).toMatch(/^HTTP\/1\.1 400/);
    expect(got).toContain('only exec, attach and portforward requests may upgrade');
    expect(seen).toBe('');
  });

  it('h2c on /version is refused the same way', async () => {
    seen = '';
    const got = await raw(`GET /version HTTP/1.1\r\nHost: k\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n${SMUGGLED}`);
    expect(got).toMatch(/^HTTP\/1\.1 400/);
    expect(seen).toBe('');
  });

  it('an exec upgrade the API server does not switch: its answer is not relayed, the smuggled request never reaches it', async () => {
    seen = '';
    switching = false;
    const got = await raw(`GET /api/v1/namespaces/shop/pods/web/exec?command=ls&stdout=true HTTP/1.1\r\n${upgradeHeaders}\r\n${SMUGGLED}`);
    expect(seen).toContain('/exec?command=ls');
    expect(seen).not.toContain('DELETE');
    expect(seen).not.toContain('Impersonate');
    expect(got).toMatch(/^HTTP\/1\.1 502/);
    expect(got).toContain('did not switch protocols');
    expect(got).not.toContain('c2Vj');
  });

  it('an exec upgrade the API server switches: the stream flows both ways, what was sent ahead follows the 101', async () => {
    seen = '';
    switching = true;
    const got = await raw(`GET /api/v1/namespaces/shop/pods/web/exec?command=ls&stdout=true HTTP/1.1\r\n${upgradeHeaders}\r\nFRAME-AHEAD`);
    expect(got).toMatch(/^HTTP\/1\.1 101/);
    expect(got).toContain('STREAM-BYTES');
    expect(seen).toContain('FRAME-AHEAD');
    expect(seen.indexOf('FRAME-AHEAD')).toBeGreaterThan(seen.indexOf('\r\n\r\n'));
  });
});
