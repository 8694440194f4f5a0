/**
 * 1,000 PostgreSQL sessions held at once on one node, through the real redirect, with
 * policy, masking and recording on: every session is served, masked, audited and
 * recorded, and the daemon's heap per idle session stays small.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import { cli, readAudit } from '../helpers/daemon.js';
import { LineAgent, PG_MODULE } from '../helpers/line-agent.js';
import { controlRequest, type DaemonStatus } from '../../src/daemon/control.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { readRecording } from '../../src/recording/store.js';

const enabled = bpfGate();

// bench/sessions.sh raises these; the test suite runs the 1,000
const PROCESSES = Number(process.env.INTERLOCK_LOAD_PROCESSES ?? 4);
const PER_PROCESS = Number(process.env.INTERLOCK_LOAD_PER_PROCESS ?? 250);
const SESSIONS = PROCESSES * PER_PROCESS;
/** logins in flight per agent process: a real fleet ramps up too, and the login timeout is 2 s here */
const PARALLEL_LOGINS = 25;

/**
 * One agent process: opens `count` sessions, runs a masked SELECT and an allowed SET on
 * each, reports, holds them all until told to close.
 */
const HOLDING_AGENT = `
const { Client } = require(${JSON.stringify(PG_MODULE)});
const [count, tag, host, parallel] = [Number(process.argv[1]), process.argv[2], process.argv[3], Number(process.argv[4])];
const clients = [], errors = [];
let masked = 0, served = 0, next = 0;
async function one(i) {
  const c = new Client({ host, port: 5432, user: 'agent', database: 'orders' });
  c.on('error', (e) => errors.push('while idle: ' + e.message));
  clients.push(c);
  await c.connect();
  const r = await c.query('SELECT id, name, email FROM customers ORDER BY id');
  await c.query("SET application_name TO 'load_" + tag + "_" + i + "'");
  if (r.rows.length === 2 && r.rows[0].name === 'Ada Lovelace' && r.rows.every((x) => x.email === '[redacted]')) masked++;
  served++;
}
(async () => {
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < count) { const i = next++; await one(i).catch((e) => errors.push(e.message)); }
  }));
  console.log(JSON.stringify({ ev: 'held', served, masked, errors: errors.slice(0, 5), failed: errors.length }));
  process.stdin.once('data', async () => {
    await Promise.all(clients.map((c) => c.end().catch((e) => errors.push('end: ' + e.message))));
    console.log(JSON.stringify({ ev: 'closed', failed: errors.length, errors: errors.slice(0, 5) }));
    process.exit(0); // stdin would keep it waiting
  });
})();
`;

describe.skipIf(!enabled)('1,000 concurrent sessions on one node', () => {
  const env = new E2EEnv({
    name: 'load',
    proxyPort: 25432,
    pgHost: '127.0.0.13',
    maxConnections: SESSIONS + 100,
    daemonNodeArgs: ['--expose-gc'],
    rules: [
      '      - { action: deny, match: { statements: [drop, truncate, alter] }, message: "no schema changes" }',
      '      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }',
      '      - { action: allow, match: { statements: [set] } }',
    ].join('\n'),
    masking: '      - { columns: [email], strategy: redact }',
    // one workload holds them all here, past the default per-workload quota
    extra: `limits: { maxSessionsPerWorkload: ${SESSIONS + 10} }`,
  });
  const cg = (unit = 'report-bot.service') => env.cg(unit);

  /** the daemon's heap after a full GC: the median of a few samples */
  const heapUsed = async (): Promise<number> => {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = (await controlRequest(`${env.root}/control.sock`, 'status', 20_000, { gc: true })) as { status: DaemonStatus };
      samples.push(res.status.memory.heapUsed);
      await new Promise((r) => setTimeout(r, 100));
    }
    return samples.sort((a, b) => a - b)[2]!;
  };

  const hold = (tag: string, count: number) => new LineAgent(cg(), HOLDING_AGENT, [String(count), tag, env.pgHost, String(PARALLEL_LOGINS)], 170_000);

  beforeAll(async () => {
    await env.start();
  });
  afterAll(async () => {
    await LineAgent.killAll();
    await env.stop();
  });

  it('serves, masks, audits and records 1,000 sessions held open together; heap per idle session is small', { timeout: 180_000 }, async () => {
    // warm-up: code paths compiled, caches filled, so the baseline is the steady state
    const warm = hold('warm', 20);
    expect((await warm.waitFor((l) => l.ev === 'held', 30_000)).served).toBe(20);
    warm.send('close');
    await warm.waitFor((l) => l.ev === 'closed', 10_000);
    await warm.exited;
    const sessionsNow = async () => ((await controlRequest(`${env.root}/control.sock`, 'status')) as { status: DaemonStatus }).status.sessions.length;
    for (let i = 0; i < 50 && (await sessionsNow()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await sessionsNow()).toBe(0);
    await new Promise((r) => setTimeout(r, 500)); // recordings sealed and closed
    const before = await heapUsed();

    const t0 = Date.now();
    const agents = Array.from({ length: PROCESSES }, (_, p) => hold(`p${p}`, PER_PROCESS));
    const held = await Promise.all(agents.map((a) => a.waitFor((l) => l.ev === 'held', 150_000)));
    const openMs = Date.now() - t0;
    for (const h of held) expect(h, JSON.stringify(h)).toMatchObject({ served: PER_PROCESS, masked: PER_PROCESS, failed: 0 });

    // what the server sees: 1,000 backends at once, every one logged in as the vaulted user
    const backends = env.pg.superSql("SELECT count(*), count(*) FILTER (WHERE usename = 'app') FROM pg_stat_activity WHERE application_name LIKE 'load\\_p%'").trim();
    expect(backends).toBe(`${SESSIONS}|${SESSIONS}`);
    expect(await sessionsNow()).toBe(SESSIONS);

    await new Promise((r) => setTimeout(r, 500)); // past the recorders' flush bound: every session idle
    const during = await heapUsed();
    const perSession = (during - before) / SESSIONS;
    const status = (await controlRequest(`${env.root}/control.sock`, 'status')) as { status: DaemonStatus };
    console.log(`load: ${SESSIONS} sessions open in ${openMs} ms; daemon heap ${(before / 1048576).toFixed(1)} MiB before, ` +
      `${(during / 1048576).toFixed(1)} MiB with all idle: ${(perSession / 1024).toFixed(1)} KiB per idle session; rss ${(status.status.memory.rss / 1048576).toFixed(0)} MiB`);
    expect(cli(['status', '--config', env.configFile]).stdout).toMatch(/memory: heap [\d.]+ MiB used/);

    const t1 = Date.now();
    for (const a of agents) a.send('close');
    const closed = await Promise.all(agents.map((a) => a.waitFor((l) => l.ev === 'closed', 60_000)));
    for (const c of closed) expect(c, JSON.stringify(c)).toMatchObject({ failed: 0 });
    await Promise.all(agents.map((a) => a.exited));
    console.log(`load: ${SESSIONS} sessions closed in ${Date.now() - t1} ms`);

    // the audit trail: 1,000 sessions, each started, masked and ended, every statement allowed
    const pids = new Set(agents.map((a) => a.pid));
    const ids = new Set(readAudit(env.auditFile).filter((l) => l.event === 'session.start' && pids.has(l.pid as number)).map((l) => String(l.session)));
    expect(ids.size).toBe(SESSIONS);
    const ended = () => readAudit(env.auditFile).filter((l) => l.event === 'session.end' && ids.has(String(l.session))).length;
    for (let i = 0; i < 100 && ended() < SESSIONS; i++) await new Promise((r) => setTimeout(r, 100));
    const trail = readAudit(env.auditFile).filter((l) => ids.has(String(l.session)));
    expect(trail.filter((l) => l.event === 'session.end')).toHaveLength(SESSIONS);
    expect(trail.filter((l) => l.event === 'masked')).toHaveLength(SESSIONS);
    const queries = trail.filter((l) => l.event === 'query');
    expect(queries).toHaveLength(2 * SESSIONS);
    expect(queries.every((q) => q.decision === 'allow')).toBe(true);
    expect(await sessionsNow()).toBe(0);

    // the recordings: one sealed, verified file per session holding the masked rows only
    const key = loadRecordingKey(env.recordingKey, { create: false });
    let sealed = 0;
    for (const id of ids) {
      let rec = readRecording(env.recordingsDir, id, key);
      for (let i = 0; i < 20 && !rec.sealed; i++) {
        await new Promise((r) => setTimeout(r, 50));
        rec = readRecording(env.recordingsDir, id, key);
      }
      expect(rec.problems).toEqual([]);
      const out = Buffer.concat(rec.events.flatMap((e) => (e.k === 'out' ? [Buffer.from(e.b)] : [])));
      expect(out.includes('[redacted]') && !out.includes('ada@example.com'), id).toBe(true);
      if (rec.sealed) sealed++;
    }
    expect(sealed).toBe(SESSIONS);
    const verify = cli(['verify', '--all', '--config', env.configFile]);
    expect(verify.stdout).toMatch(new RegExp(`${SESSIONS + 20} recordings, 0 failed verification`));

    expect(perSession).toBeLessThanOrEqual(64 * 1024);
  });
});
