/**
 * The daemon killed with SIGKILL under load: every agent connection fails, nothing
 * reaches the database directly while it is down (the pinned redirect points at a dead
 * port: refused), a restarted daemon serves again, and every recording verifies, the
 * killed sessions' intact up to their last flush.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import { cli } from '../helpers/daemon.js';
import { LineAgent, PG_MODULE } from '../helpers/line-agent.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { listStored, readRecording } from '../../src/recording/store.js';
import type { DecisionEvent } from '../../src/recording/events.js';

const enabled = bpfGate();

/** what LOOPING_AGENT prints: a session's span and end, or a refused dial */
interface WorkerLine { ev: 'session' | 'connect-failed'; w: number; t: number; t0: number; t1: number; queries: number; error: string | null; msg: string }

const AGENTS = 3;
const WORKERS = 3;

/**
 * Workers that each hold a session and run statements in a loop; a lost session is
 * reported and a new one dialed. Each line says what the worker saw, with times.
 */
const LOOPING_AGENT = `
const { Client } = require(${JSON.stringify(PG_MODULE)});
const [workers, tag, host, seconds] = [Number(process.argv[1]), process.argv[2], process.argv[3], Number(process.argv[4])];
const deadline = Date.now() + seconds * 1000;
let stop = false;
process.stdin.on('data', () => { stop = true; });
const say = (o) => console.log(JSON.stringify(o));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const going = () => !stop && Date.now() < deadline;
async function worker(w) {
  let n = 0;
  while (going()) {
    const c = new Client({ host, port: 5432, user: 'agent', database: 'orders', connectionTimeoutMillis: 5000 });
    c.on('error', () => {});
    const t0 = Date.now();
    try { await c.connect(); } catch (e) { say({ ev: 'connect-failed', w, t: Date.now(), msg: e.message }); await sleep(100); continue; }
    let queries = 0, error = null;
    try {
      while (going()) {
        const m = 'kill_' + tag + '_' + w + '_' + n++;
        const r = await c.query("SELECT '" + m + "' AS m");
        if (r.rows[0].m !== m) throw new Error('crossed: ' + r.rows[0].m);
        queries++;
        await sleep(20);
      }
    } catch (e) { error = e.message; }
    say({ ev: 'session', w, t0, t1: Date.now(), queries, error });
    await c.end().catch(() => {});
    if (error) await sleep(100);
  }
}
Promise.all(Array.from({ length: workers }, (_, w) => worker(w))).then(() => { say({ ev: 'done' }); process.exit(0); });
`;

describe.skipIf(!enabled)('the daemon killed under load', () => {
  const env = new E2EEnv({
    name: 'daemon-kill',
    proxyPort: 25442,
    pgHost: '127.0.0.13',
    rules: '      - { action: allow, match: { statements: [select] } }',
    recording: '  flush: { ms: 100, bytes: 65536 }',
  });

  beforeAll(async () => {
    await env.start();
  });
  afterAll(async () => {
    await LineAgent.killAll();
    await env.stop();
  });

  it('fails every agent connection closed, refuses while down, serves after restart; recordings intact', { timeout: 90_000 }, async () => {
    const agents = Array.from({ length: AGENTS }, (_, a) => new LineAgent(env.cg('report-bot.service'), LOOPING_AGENT, [String(WORKERS), `a${a}`, env.pgHost, '60'], 70_000));
    // load first: every agent's statements are reaching the server
    const deadline = Date.now() + 20_000;
    while (!agents.every((_, a) => env.pg.log().includes(`kill_a${a}_${WORKERS - 1}_5'`))) {
      if (Date.now() > deadline) throw new Error(`agents not under way: ${agents.map((x) => x.stderr).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const tKill = Date.now();
    await env.daemon.kill9();
    await new Promise((r) => setTimeout(r, 300)); // what the proxy had already sent lands in the log
    const logAtDown = env.pg.log().length;

    // while it is down: a fresh client is refused, and the looping agents keep being refused
    const refused = await env.psql("SELECT 'while_down'", { env: { PGPASSWORD: env.pg.password } });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Connection refused/);
    await new Promise((r) => setTimeout(r, 1500));
    const downWindow = env.pg.log().slice(logAtDown);
    expect(downWindow).not.toMatch(/connection received|statement:/);
    expect(downWindow).not.toContain('while_down');

    const tUp = Date.now(); // the daemon listens before it says it is ready: sessions may start before that
    env.daemon = await env.startDaemon();
    const after = await env.psql("SELECT 'after_restart'");
    expect(after.stdout.trim()).toBe('after_restart');
    await new Promise((r) => setTimeout(r, 1500)); // the agents' loops find the daemon again
    for (const a of agents) a.send('stop');
    await Promise.all(agents.map((a) => a.waitFor((l) => l.ev === 'done', 15_000)));

    for (const [i, a] of agents.entries()) {
      for (let w = 0; w < WORKERS; w++) {
        const mine = a.lines.filter((l) => l.w === w) as unknown as WorkerLine[];
        // the session open at the kill failed, promptly
        const killed = mine.find((l) => l.ev === 'session' && l.t0 < tKill && l.t1 >= tKill);
        expect(killed, `agent ${i} worker ${w}: ${JSON.stringify(mine)}`).toBeDefined();
        expect(killed!.error).toBeTruthy();
        expect(killed!.t1 - tKill).toBeLessThan(5000);
        // dials while down were refused
        const downDials = mine.filter((l) => l.ev === 'connect-failed' && l.t > tKill && l.t < tUp);
        expect(downDials.length).toBeGreaterThan(0);
        for (const d of downDials) expect(d.msg).toMatch(/ECONNREFUSED/);
        // and after the restart it works again
        expect(mine.some((l) => l.ev === 'session' && l.t0 >= tUp && l.queries > 0 && l.error === null)).toBe(true);
      }
    }

    // the server only ever saw the proxy: the vaulted user, never the agents' own
    const log = env.pg.log();
    expect(log).not.toMatch(/user=agent|agent@orders|password authentication failed/);
    // every connection over TCP (the setup's superuser comes over the unix socket) logged in as the vaulted user
    const tcp = new Set([...log.matchAll(/\[(\d+)\] \S+ LOG:\s+connection received: host=\d/g)].map((m) => m[1]));
    const users = [...log.matchAll(/\[(\d+)\] \S+ LOG:\s+connection authorized: user=(\S+)/g)].filter((m) => tcp.has(m[1])).map((m) => m[2]);
    expect(users.length).toBeGreaterThan(AGENTS * WORKERS);
    expect(new Set(users)).toEqual(new Set(['app']));
    const markerLines = log.split('\n').filter((l) => l.includes('kill_a'));
    expect(markerLines.length).toBeGreaterThan(AGENTS * WORKERS * 5);
    for (const l of markerLines) expect(l).toMatch(/ app@orders /);

    // every recording verifies; the sessions cut by the kill are intact up to their last flush
    const verify = cli(['verify', '--all', '--config', env.configFile]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.stdout).toMatch(/ recordings, 0 failed verification/);
    const key = loadRecordingKey(env.recordingKey, { create: false });
    const pids = new Set(agents.map((a) => a.pid));
    const cut = listStored(env.recordingsDir).map((f) => readRecording(env.recordingsDir, f.id, key))
      .filter((r) => !r.sealed && pids.has(r.start?.pid ?? -1));
    expect(cut.length).toBeGreaterThanOrEqual(AGENTS * WORKERS);
    for (const rec of cut) {
      expect(rec.problems).toEqual([]);
      expect(verify.stdout).toContain(`${rec.id}: intact but incomplete`);
      const commands = rec.events.filter((e): e is DecisionEvent => e.k === 'decision').map((d) => d.command);
      // what was recorded happened: its last statement reached the server
      if (commands.length) expect(log).toContain(commands[commands.length - 1]);
    }
    expect(cut.filter((r) => r.events.some((e) => e.k === 'decision')).length).toBeGreaterThanOrEqual(AGENTS * WORKERS);
  });
});
