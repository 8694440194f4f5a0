/**
 * Garbage on the wire, live: an agent opens hundreds of connections to the
 * intercepted PostgreSQL, SSH and Kubernetes destinations and sends random bytes and
 * mutated protocol messages (seeded, so a failure can be replayed), while a real psql
 * session held across the storm and fresh ones beside it must see nothing of it. The
 * daemon must stay up, with the same pid, and keep answering.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv, ALLOW_ORDINARY } from '../helpers/e2e-env.js';
import { collect, runAgent, spawnAgent } from '../helpers/agent.js';
import { cli, readAudit } from '../helpers/daemon.js';

const enabled = bpfGate();
const SEED = Number(process.env.INTERLOCK_GARBAGE_SEED ?? Date.now() % 1_000_000);
const CONNECTIONS = Number(process.env.INTERLOCK_GARBAGE_CONNECTIONS ?? 300);

/** Runs in the agent: CONNECTIONS connections, 16 at a time, each a random kind of junk. */
const STORM = `
const net = require('node:net');
let s = Number(process.argv[2]) >>> 0 || 1;
const rnd = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
const int = (n) => Math.floor(rnd() * n);
const bytes = (n) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = int(256); return b; };
const startup = () => { const p = Buffer.from('user\\0x\\0database\\0orders\\0\\0'); const h = Buffer.alloc(8); h.writeInt32BE(8 + p.length); h.writeInt32BE(196608, 4); return Buffer.concat([h, p]); };
const message = () => { const body = bytes(int(64)); const h = Buffer.alloc(5); h[0] = 'QPBEDSHFXCdcf'.charCodeAt(int(13)); h.writeInt32BE(rnd() < 0.8 ? body.length + 4 : int(2 ** 31), 1); return Buffer.concat([h, body]); };
const mutate = (b) => { const c = Buffer.from(b); for (let i = 0, n = 1 + int(4); i < n; i++) c[int(c.length)] = int(256); return c; };
const junk = {
  postgres: () => [() => bytes(1 + int(4096)), () => Buffer.concat([startup(), message(), message()]), () => mutate(startup()), () => Buffer.concat([startup(), mutate(message())])][int(4)](),
  ssh: () => [() => bytes(1 + int(4096)), () => Buffer.concat([Buffer.from('SSH-2.0-OpenSSH_9.2\\r\\n'), bytes(int(2048))]), () => Buffer.from('SSH-2.0-' + 'x'.repeat(int(20000)) + '\\r\\n')][int(3)](),
  kubernetes: () => [() => bytes(1 + int(4096)), () => Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), bytes(int(600))]), () => Buffer.from('GET /api HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')][int(3)](),
};
const where = { postgres: ['127.0.0.3', 5432], ssh: ['127.0.0.14', 22], kubernetes: ['127.0.0.15', 6443] };
const kinds = Object.keys(where);
let started = 0, finished = 0, answered = 0;
const deadline = Date.now() + 45000;
function one() {
  if (started >= Number(process.argv[3]) || Date.now() > deadline) return;
  started++;
  const kind = kinds[int(3)];
  const c = net.connect(where[kind][1], where[kind][0]);
  const done = () => { if (c.done) return; c.done = true; c.destroy(); finished++; if (finished === started && started >= Number(process.argv[3])) { console.log(JSON.stringify({ started, finished, answered })); process.exit(0); } one(); };
  c.on('connect', () => { c.write(junk[kind](), () => undefined); if (rnd() < 0.3) c.end(); });
  c.on('data', () => { answered++; });
  c.on('error', done);
  c.on('close', done);
  c.setTimeout(300 + int(700), done);
}
for (let i = 0; i < 16; i++) one();
setTimeout(() => { console.log(JSON.stringify({ started, finished, answered, timedOut: true })); process.exit(0); }, 50000);
`;

describe.skipIf(!enabled)('garbage on every intercepted protocol, live', () => {
  let env: E2EEnv;

  beforeAll(async () => {
    const work = execFileSync('mktemp', ['-d', '/tmp/interlock-garbage-keys-XXXXXX'], { encoding: 'utf8' }).trim();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'vaulted')]);
    writeFileSync(join(work, 'known_hosts'), `127.0.0.14 ${execFileSync('cat', [join(work, 'vaulted.pub')], { encoding: 'utf8' }).split(' ').slice(0, 2).join(' ')}\n`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=garbage-ca', '-days', '1',
      '-keyout', join(work, 'ca.key'), '-out', join(work, 'ca.crt')], { stdio: 'ignore' });
    writeFileSync(join(work, 'token'), 'not-a-real-token\n', { mode: 0o600 });
    env = new E2EEnv({
      name: 'garbage',
      proxyPort: 15445,
      rules: ALLOW_ORDINARY,
      masking: '      - { columns: [email], strategy: redact }',
      targets: [
        '  - name: build-host',
        '    protocol: ssh',
        '    address: 127.0.0.14:22',
        '    upstream:',
        '      user: deploy',
        `      privateKey: { file: ${join(work, 'vaulted')} }`,
        `      knownHosts: { file: ${join(work, 'known_hosts')} }`,
        '  - name: cluster',
        '    protocol: kubernetes',
        '    address: 127.0.0.15:6443',
        '    upstream:',
        `      token: { file: ${join(work, 'token')} }`,
        `      ca: { file: ${join(work, 'ca.crt')} }`,
      ].join('\n'),
      policies: [
        '  - name: analysts-elsewhere',
        '    subjects: { groups: [analysts] }',
        '    targets: [build-host, cluster]',
        '    rules:',
        '      - { action: allow, match: { commands: ["echo *"] } }',
        '      - { action: allow, match: { verbs: [get] } }',
      ].join('\n'),
    });
    await env.start();
    writeFileSync(join(env.root, 'storm.cjs'), STORM, { mode: 0o644 });
  });

  afterAll(async () => {
    await env?.stop();
  });

  it(`survives ${CONNECTIONS} connections of junk (seed ${SEED}) while real sessions go on untouched`, { timeout: 120_000 }, async () => {
    const pid = env.daemon.proc.pid;
    // a session held open across the whole storm, and fresh ones during it
    const held = collect(spawnAgent(env.cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX',
      '-c', "select 'held_before'", '-c', 'select pg_sleep(6)', '-c', 'select email from customers where id = 1', '-c', "select 'held_after'"]), 60_000);
    const storm = runAgent(env.cg('report-bot.service'), process.execPath, [join(env.root, 'storm.cjs'), String(SEED), String(CONNECTIONS)], { timeoutMs: 60_000 });
    const fresh: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await env.psql(`select 'fresh_${i}', email from customers where id = 2`);
      fresh.push(r.stdout.trim());
      await new Promise((r) => setTimeout(r, 300));
    }
    const s = await storm;
    const summary = JSON.parse(s.stdout.trim().split('\n').pop()!) as { started: number; finished: number; timedOut?: boolean };
    expect(summary, `seed ${SEED}: ${s.stderr}`).toMatchObject({ started: CONNECTIONS, finished: CONNECTIONS });
    expect(summary.timedOut).toBeUndefined();

    // the real sessions saw correct, masked results
    expect(fresh).toEqual(Array.from({ length: 8 }, (_, i) => `fresh_${i}|[redacted]`));
    const h = await held;
    expect(h.stdout.trim().split('\n')).toEqual(['held_before', '', '[redacted]', 'held_after']);

    // the daemon is the same process, still serving, and said why it refused the junk
    expect(env.daemon.proc.exitCode).toBeNull();
    expect(env.daemon.proc.pid).toBe(pid);
    const status = cli(['status', '--config', env.configFile]);
    expect(status.stdout).toContain(`daemon: running, pid ${pid}`);
    expect(env.daemon.output()).not.toMatch(/uncaught|unhandled/i);
    const audit = readAudit(env.auditFile);
    const storming = audit.filter((l) => l.pid === s.pid);
    // the junk reached every protocol's proxy (and was answered there, not dropped by the redirect)
    const seen = [...new Set(storming.map((l) => `${l.event} ${l.target ?? '-'}`))].sort();
    for (const target of ['orders-db', 'build-host', 'cluster']) expect(seen.join('\n'), seen.join('\n')).toContain(` ${target}`);
    // after the storm: a fresh session works as before
    const after = await env.psql("select 'after_storm'");
    expect(after.stdout.trim()).toBe('after_storm');
  });
});
