/**
 * PostgreSQL restarted (pg_ctl restart -m fast) under open sessions: an idle one and
 * one in a long query each get the server's error promptly (never a hang), the trail
 * says the upstream ended them, and the daemon serves new sessions once it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import { collect, spawnAgent } from '../helpers/agent.js';
import { waitForAudit } from '../helpers/daemon.js';
import { LineAgent, PG_MODULE } from '../helpers/line-agent.js';

const enabled = bpfGate();

/** An idle session: one statement, then it waits and reports how it ended. */
const IDLE_AGENT = `
const { Client } = require(${JSON.stringify(PG_MODULE)});
const c = new Client({ host: process.argv[1], port: 5432, user: 'agent', database: 'orders' });
const say = (o) => console.log(JSON.stringify(o));
c.on('error', (e) => say({ ev: 'lost', t: Date.now(), msg: e.message, code: e.code }));
c.on('end', () => { say({ ev: 'ended', t: Date.now() }); process.exit(0); });
c.connect().then(() => c.query("SELECT 'idle_ready' AS m")).then((r) => say({ ev: 'ready', m: r.rows[0].m, pid: process.pid }))
  .catch((e) => { say({ ev: 'failed', msg: e.message }); process.exit(1); });
`;

describe.skipIf(!enabled)('the upstream restarted mid-session', () => {
  const env = new E2EEnv({
    name: 'upstream-restart',
    proxyPort: 25452,
    pgHost: '127.0.0.13',
    rules: '      - { action: allow, match: { statements: [select] } }',
  });

  beforeAll(async () => {
    await env.start();
  });
  afterAll(async () => {
    await LineAgent.killAll();
    await env.stop();
  });

  it('ends idle and busy sessions with the server\'s error within a bound, then serves again', { timeout: 60_000 }, async () => {
    const idle = new LineAgent(env.cg('report-bot.service'), IDLE_AGENT, [env.pgHost], 40_000);
    await idle.waitFor((l) => l.ev === 'ready', 10_000);
    const busyChild = spawnAgent(env.cg('report-bot.service'), 'psql', ['-h', env.pgHost, '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', 'SELECT pg_sleep(60)']);
    const busy = collect(busyChild, 40_000);
    const busyQuery = await waitForAudit(env.auditFile, (l) => l.event === 'query' && l.pid === busyChild.pid && String(l.query).includes('pg_sleep'));
    const idleStart = await waitForAudit(env.auditFile, (l) => l.event === 'session.start' && l.pid === idle.pid);
    await new Promise((r) => setTimeout(r, 300)); // the sleep is under way on the server
    expect(env.pg.superSql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND usename = 'app'").trim()).toBe('1');

    const t0 = Date.now();
    env.pg.restart();
    const restartMs = Date.now() - t0;

    // the busy client: the server's FATAL, relayed, well before its 60 s sleep
    const b = await busy;
    expect(b.code).not.toBe(0);
    expect(b.stderr).toMatch(/terminating connection due to administrator command|server closed the connection unexpectedly/);
    expect(Date.now() - t0).toBeLessThan(restartMs + 5000);
    // the idle client: told, and its connection closed
    const lost = await idle.waitFor((l) => l.ev === 'lost' || l.ev === 'ended', 5000);
    expect(Number(lost.t) - t0).toBeLessThan(restartMs + 5000);
    if (lost.ev === 'lost') expect(lost.msg).toMatch(/terminating connection due to administrator command|Connection terminated/);
    await idle.waitFor((l) => l.ev === 'ended', 5000);
    expect(await idle.exited).toBe(0);

    // the trail: both sessions ended by the upstream
    for (const session of [busyQuery.session, idleStart.session]) {
      const end = await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === session);
      expect(String(end.reason)).toMatch(/^upstream (closed|error)/);
    }

    // the daemon itself carried on and serves the restarted server
    expect(env.daemon.proc.exitCode).toBeNull();
    const again = await env.psql("SELECT 'after_upstream_restart'");
    expect(again.stdout.trim()).toBe('after_upstream_restart');
    const log = env.pg.log();
    const restarted = log.lastIndexOf('database system is ready to accept connections');
    expect(restarted).toBeGreaterThan(log.indexOf('received fast shutdown request'));
    expect(log.slice(restarted)).toMatch(/app@orders LOG:\s+statement: SELECT 'after_upstream_restart'/);
  });
});
