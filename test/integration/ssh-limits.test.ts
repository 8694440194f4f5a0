/**
 * The SSH session's limits, driven directly (no redirect): the handshake and login must
 * finish by proxy.loginTimeout however the bytes trickle in, an exec command over
 * limits.maxCommandBytes and over-long env requests or subsystem names are refused without
 * ending the session, and a silent upstream fails the channel within
 * limits.upstreamConnectTimeout. The agent is an ssh2 client; the upstream a listener on
 * 127.0.0.22 that accepts and never answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { SshSession, type SshJudge } from '../../src/protocols/ssh/session.js';
import { loadHostKey, type HostKey } from '../../src/protocols/ssh/host-key.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import type { LimitsConfig, SshTargetDef } from '../../src/config/types.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';
import { startSilentServer, type FakePostgres } from '../helpers/fake-postgres.js';

const SILENT_HOST = '127.0.0.22';
const allow = { action: 'allow' as const, message: 'ok' };
const judge: SshJudge = { decideExec: () => ({ decision: allow }), decideChannel: () => allow, decidePath: () => allow };

let dir: string;
let hostKey: HostKey;
let silent: FakePostgres;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'interlock-ssh-limits-'));
  hostKey = loadHostKey(join(dir, 'host_key'), { create: true });
  const { private: key } = ssh2.utils.generateKeyPairSync('ed25519');
  writeFileSync(join(dir, 'upstream_key'), key, { mode: 0o600 });
  writeFileSync(join(dir, 'known_hosts'), '');
  silent = await startSilentServer(SILENT_HOST);
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  await silent?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startProxy(opts: { loginTimeoutMs?: number; limits?: Partial<LimitsConfig> } = {}) {
  const target: SshTargetDef = {
    name: 'build', protocol: 'ssh', address: { host: SILENT_HOST, port: 22 },
    upstream: {
      host: SILENT_HOST, port: silent.port, user: 'deploy', privateKey: { file: join(dir, 'upstream_key') },
      knownHosts: { file: join(dir, 'known_hosts') }, agentUsers: ['deploy'], env: ['LANG', 'LC_*'],
    },
  };
  const p = { port: 0, audits: [] as { event: string; fields: Record<string, unknown> }[], closed: 0 };
  const server = createServer((socket) => {
    sockets.push(socket);
    new SshSession({
      socket, hostKey, target, judge, loginTimeoutMs: opts.loginTimeoutMs, limits: { ...DEFAULT_LIMITS, ...opts.limits },
      hooks: { audit: (event, fields) => p.audits.push({ event, fields }), startRecording: () => NOT_RECORDED, closed: () => p.closed++ },
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  p.port = (server.address() as AddressInfo).port;
  return p;
}

function agent(port: number): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on('ready', () => resolve(c));
    c.on('error', reject);
    c.connect({ host: '127.0.0.1', port, username: 'deploy', password: 'anything', hostVerifier: () => true, readyTimeout: 5000 });
  });
}

/** Runs a command; resolves with its exit code and stderr (bounded by timeoutMs). */
function exec(c: ssh2.Client, command: string, env?: Record<string, string>, timeoutMs = 5000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms`)), timeoutMs);
    c.exec(command, { env }, (err, ch) => {
      if (err) return reject(err);
      let stderr = '';
      let code: number | null = null;
      ch.on('exit', (c2: number | null) => (code = c2));
      ch.stderr.on('data', (d: Buffer) => (stderr += d));
      ch.on('data', () => {});
      ch.on('close', () => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SSH session limits', () => {
  it('cuts a handshake trickled a byte at a time at proxy.loginTimeout', async () => {
    const p = await startProxy({ loginTimeoutMs: 500 });
    const sock = connect(p.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('data', () => {});
    let closed = false;
    sock.on('close', () => (closed = true));
    const ident = Buffer.from('SSH-2.0-slowloris_client_with_a_rather_long_identification_string\r\n');
    const t0 = performance.now();
    for (let i = 0; i < ident.length && !closed && performance.now() - t0 < 3000; i++) {
      sock.write(ident.subarray(i, i + 1));
      await sleep(25);
    }
    for (let i = 0; i < 100 && !closed; i++) await sleep(20);
    const took = performance.now() - t0;
    expect(closed).toBe(true);
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(2000);
    expect(p.audits.find((a) => a.event === 'connect.refused')?.fields.reason).toBe('handshake and login took longer than 0.5 s (proxy.loginTimeout)');
    expect(p.closed).toBe(1);
  });

  it('refuses an over-long exec command, an over-long env value and subsystem name, and the session goes on', async () => {
    const p = await startProxy({ limits: { maxCommandBytes: 1024, upstreamConnectTimeoutMs: 300 } });
    const c = await agent(p.port);
    try {
      const long = await exec(c, `echo ${'x'.repeat(2000)}`);
      expect(long.code).toBe(126);
      expect(long.stderr).toContain('interlock: command of 2005 bytes is over the limit of 1024 bytes (limits.maxCommandBytes)');
      const audited = p.audits.find((a) => a.event === 'command' && a.fields.via === 'exec');
      expect(String(audited?.fields.command)).toMatch(/… \(2005 characters\)$/); // named, not copied whole
      expect(String(audited?.fields.command).length).toBeLessThan(300);
      expect(p.audits.some((a) => a.event === 'limit.exceeded' && a.fields.limit === 'limits.maxCommandBytes')).toBe(true);

      // an env value over the bound is refused (the request only; the channel goes on to its command)
      const envRefused = p.audits.length;
      const withEnv = await exec(c, `echo ${'y'.repeat(2000)}`, { LANG: 'x'.repeat(5000) });
      expect(withEnv.code).toBe(126);
      expect(p.audits.slice(envRefused).some((a) => a.event === 'limit.exceeded' && a.fields.via === 'env')).toBe(true);

      // a subsystem with a 1000-byte name: refused, audited by a prefix
      const subsys = await new Promise<Error | undefined>((resolve) => c.subsys('s'.repeat(1000), (err) => resolve(err)));
      expect(subsys).toBeInstanceOf(Error);
      const sub = p.audits.find((a) => a.event === 'command' && a.fields.via === 'subsystem');
      expect(sub?.fields.message).toBe('a subsystem name of 1000 bytes is over the limit of 64');
      expect(String(sub?.fields.command).length).toBeLessThan(300);

      // the session is still there: an allowed command reaches for the (silent) upstream and fails in time
      expect(p.closed).toBe(0);
      const t0 = performance.now();
      const r = await exec(c, 'uname -a');
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/interlock: could not reach build \(127\.0\.0\.22:\d+\): Timed out while waiting for handshake/);
    } finally {
      c.end();
    }
  });
});
