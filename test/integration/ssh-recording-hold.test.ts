/**
 * recording.onBackpressure: block, for SSH: while the recording is behind the disk, the
 * session's channels stop moving bytes (nothing reaches the agent unrecorded), and they
 * go on once it catches up. Driven directly: an ssh2 agent, the SshSession, and an
 * in-process ssh2 server on 127.0.0.23 whose exec streams output until told to stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { SshSession, type SshJudge } from '../../src/protocols/ssh/session.js';
import { loadHostKey, type HostKey } from '../../src/protocols/ssh/host-key.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import type { SshTargetDef } from '../../src/config/types.js';
import type { Pressure, SessionRecording } from '../../src/recording/recorder.js';

const UPSTREAM_HOST = '127.0.0.23';
const allow = { action: 'allow' as const, message: 'ok' };
const judge: SshJudge = { decideExec: () => ({ decision: allow }), decideChannel: () => allow, decidePath: () => allow };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A recording the test holds and releases by hand; it counts what it was given. */
class HeldRecording implements SessionRecording {
  onPressure?: (p: Pressure, why: string) => void;
  output_ = 0;
  input() {}
  output(b: Uint8Array) {
    this.output_ += b.length;
  }
  decision() {}
  note() {}
  end() {}
  whenStarted(fn: () => void) {
    fn();
  }
}

let dir: string;
let hostKey: HostKey;
let upstream: ssh2.Server;
let upstreamPort = 0;
let serverKey: { private: string; public: string };
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'interlock-ssh-hold-'));
  hostKey = loadHostKey(join(dir, 'host_key'), { create: true });
  const vaulted = ssh2.utils.generateKeyPairSync('ed25519');
  writeFileSync(join(dir, 'upstream_key'), vaulted.private, { mode: 0o600 });
  serverKey = ssh2.utils.generateKeyPairSync('ed25519');
  // the upstream: any exec writes 16 KiB blocks as fast as the channel takes them
  upstream = new ssh2.Server({ hostKeys: [serverKey.private] }, (client) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('error', () => {});
    client.on('session', (accept) => {
      accept().on('exec', (acceptExec) => {
        const ch = acceptExec();
        const block = Buffer.alloc(16 * 1024, 0x61);
        let stopped = false;
        ch.on('close', () => (stopped = true));
        const pump = () => {
          while (!stopped && ch.write(block));
          if (!stopped) ch.once('drain', pump);
        };
        pump();
        setTimeout(() => {
          stopped = true;
          ch.exit(0);
          ch.end();
        }, 2500);
      });
    });
  });
  await new Promise<void>((r) => upstream.listen(0, UPSTREAM_HOST, r));
  upstreamPort = (upstream.address() as AddressInfo).port;
  // the upstream's key, pinned as known_hosts writes a non-22 port
  writeFileSync(join(dir, 'known_hosts'), `[${UPSTREAM_HOST}]:${upstreamPort} ${serverKey.public}\n`);
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SSH under a recording that falls behind (onBackpressure: block)', () => {
  it('holds every channel while the recording is behind, and resumes when it catches up', async () => {
    const rec = new HeldRecording();
    const target: SshTargetDef = {
      name: 'build', protocol: 'ssh', address: { host: UPSTREAM_HOST, port: 22 },
      upstream: {
        host: UPSTREAM_HOST, port: upstreamPort, user: 'deploy', privateKey: { file: join(dir, 'upstream_key') },
        knownHosts: { file: join(dir, 'known_hosts') }, agentUsers: ['deploy'], env: [],
      },
    };
    const proxy = createServer((socket) => {
      sockets.push(socket);
      new SshSession({
        socket, hostKey, target, judge, limits: DEFAULT_LIMITS,
        hooks: { audit: () => {}, startRecording: () => rec, closed: () => {} },
      });
    });
    servers.push(proxy);
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const c = await new Promise<ssh2.Client>((resolve, reject) => {
      const cl = new ssh2.Client();
      cl.on('ready', () => resolve(cl));
      cl.on('error', reject);
      cl.connect({ host: '127.0.0.1', port: (proxy.address() as AddressInfo).port, username: 'deploy', password: 'x', hostVerifier: () => true, readyTimeout: 5000 });
    });
    try {
      let received = 0;
      const exited = new Promise<number | null>((resolve, reject) => {
        c.exec('stream', (err, ch) => {
          if (err) return reject(err);
          let code: number | null = null;
          ch.on('data', (d: Buffer) => (received += d.length));
          ch.on('exit', (x: number | null) => (code = x));
          ch.on('close', () => resolve(code));
        });
      });
      // bytes flow
      for (let i = 0; i < 50 && received < 256 * 1024; i++) await sleep(20);
      expect(received).toBeGreaterThanOrEqual(256 * 1024);

      // the recording falls behind: after what was in flight, nothing more reaches the agent
      rec.onPressure!('block', 'test: the disk is slow');
      await sleep(300);
      const atHold = received;
      await sleep(500);
      expect(received).toBe(atHold);
      // and nothing reached it that the recording did not get
      expect(rec.output_).toBeGreaterThanOrEqual(received);

      // it catches up: bytes flow again, and the command ends normally
      rec.onPressure!('resume', 'test: caught up');
      for (let i = 0; i < 50 && received < atHold + 256 * 1024; i++) await sleep(20);
      expect(received).toBeGreaterThanOrEqual(atHold + 256 * 1024);
      expect(await exited).toBe(0);
    } finally {
      c.end();
    }
  });
});
