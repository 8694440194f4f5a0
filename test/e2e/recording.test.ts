/**
 * Session recording end to end: unmodified psql and node-postgres in the agents' cgroup,
 * the real redirect and daemon, and the `interlock` CLI reading what was recorded.
 * Replays must show what the agent saw (psql's own output), tampering must be caught
 * and named, a SIGKILLed daemon must leave readable, incomplete recordings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { collect, runAgent, spawnAgent } from '../helpers/agent.js';
import { cli, readAudit, startDaemon, waitForAudit } from '../helpers/daemon.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { listStored, readRecording, recordingFile } from '../../src/recording/store.js';
import { parseConfig } from '../../src/config/load.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { RuleSet } from '../../src/policy/rules.js';
import type { DecisionEvent } from '../../src/recording/events.js';

const enabled = bpfGate();

describe.skipIf(!enabled)('session recording through the redirect', () => {
  const env = new E2EEnv({
    name: 'recording',
    proxyPort: 15438,
    rules: [
      '      - { action: allow, match: { statements: [select, insert, create], relations: ["public.*"] } }',
      '      - { action: deny, match: { statements: [drop] }, message: "no schema changes" }',
    ].join('\n'),
    masking: '      - { columns: [email], strategy: redact }',
    recording: '  flush: { ms: 100, bytes: 65536 }\n  maxSessionBytes: 1MiB',
  });
  const cg = (unit = 'report-bot.service') => env.cg(unit);
  const key = () => loadRecordingKey(env.recordingKey, { create: false });
  const sessionOf = async (pid: number) =>
    String((await waitForAudit(env.auditFile, (l) => l.event === 'session.start' && l.pid === pid)).session);
  const sessionEnded = (id: string) => waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === id);
  /** the recording is sealed shortly after the session ends */
  const sealed = async (id: string) => {
    await sessionEnded(id);
    for (let i = 0; i < 50; i++) {
      const r = readRecording(env.recordingsDir, id, key());
      if (r.sealed) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`recording ${id} was not sealed`);
  };
  const icli = (...args: string[]) => cli([...args, '--config', env.configFile]);

  beforeAll(async () => {
    await env.start();
  });
  afterAll(async () => {
    await env.stop();
  });

  it('records a psql session: replay shows exactly what psql printed, with each decision', async () => {
    const statements = [
      'SELECT id, name, email FROM customers ORDER BY id',
      'SELECT count(*) AS n, 42::numeric(6,2) AS price, NULL::text AS nothing FROM customers',
      'DROP TABLE customers',
      "SELECT 'tab\there' AS odd, 'ünïcödé' AS wide",
    ];
    const r = await runAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-X', ...statements.flatMap((s) => ['-c', s])]);
    expect(r.stderr).toContain('ERROR:  interlock: no schema changes');
    expect(r.stdout).toContain('[redacted]');
    expect(r.stdout).not.toContain('ada@example.com');
    const id = await sessionOf(r.pid);
    const rec = await sealed(id);

    // what was recorded about the agent and the session
    expect(rec.problems).toEqual([]);
    expect(rec.start).toMatchObject({ protocol: 'postgres', workload: 'report-bot', target: 'orders-db', pid: r.pid, comm: 'psql', dst: '127.0.0.3:5432' });
    expect(rec.start?.cmdline?.[0]).toMatch(/psql$/); // Debian's psql wrapper execs the real binary
    expect(rec.start?.cmdline).toContain('DROP TABLE customers');
    expect(rec.start?.exe).toMatch(/psql/);
    expect(rec.start?.cgroup).toBe(`${env.agents}/report-bot.service`);
    const decisions = rec.events.filter((e): e is DecisionEvent => e.k === 'decision');
    expect(decisions.map((d) => [d.command, d.action])).toEqual(statements.map((s) => [s, s.startsWith('DROP') ? 'deny' : 'allow']));
    expect(rec.end).toMatchObject({ commands: 4, reason: 'client terminated' });
    expect(rec.end!.rows).toBe(4); // 2 customers, 1 count row, 1 odd row
    // the masked value never reached the recording either
    const all = Buffer.concat(rec.events.flatMap((e) => ('b' in e ? [Buffer.from(e.b)] : [])));
    expect(all.includes('ada@example.com')).toBe(false);
    expect(rec.events.some((e) => e.k === 'masked')).toBe(true);

    const replay = icli('replay', id);
    expect(replay.code, replay.stderr).toBe(0);
    // every result psql printed appears in the replay as psql printed it
    for (const block of r.stdout.split(/\n\n/).filter((b) => b.trim())) expect(replay.stdout).toContain(block);
    expect(replay.stdout).toContain('ERROR:  interlock: no schema changes');
    for (const s of statements) expect(replay.stdout).toContain(s);
    expect(replay.stdout).toMatch(/deny/);
  });

  it('lists, shows, verifies and exports sessions; a tampered byte fails verify naming the chunk', async () => {
    const r = await runAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', "SELECT 'list_marker'", '-c', 'DROP TABLE customers']);
    expect(r.stdout).toContain('list_marker');
    const id = await sessionOf(r.pid);
    await sealed(id);

    const list = icli('sessions', 'list', '--workload', 'report-bot', '--since', '1h');
    expect(list.code, list.stderr).toBe(0);
    const row = list.stdout.split('\n').find((l) => l.startsWith(id));
    expect(row).toMatch(/postgres\s+report-bot\s+orders-db\s+psql\[\d+\]\s+2\s+1\s+0\s+sealed/);
    expect(icli('sessions', 'list', '--workload', 'nobody-else').stdout).not.toContain(id);

    const show = icli('sessions', 'show', id);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain('verified, sealed');
    expect(show.stdout).toMatch(/decisions: 2 \(1 allowed, 1 denied, 0 held/);
    expect(show.stdout).toContain('DROP TABLE customers');
    expect(show.stdout).toMatch(/command line:\s+\S*psql -h 127\.0\.0\.3/);

    const exported = icli('export', id, '--format', 'jsonl');
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => JSON.stringify(l).includes('list_marker'))).toBe(true);
    expect(icli('export', id, '--format', 'asciicast').code).not.toBe(0); // a database session is not a terminal

    expect(icli('verify', id).stdout).toContain(`${id}: ok`);
    const file = recordingFile(env.recordingsDir, id);
    const bytes = readFileSync(file);
    const tampered = Buffer.from(bytes);
    tampered[bytes.length - 40] ^= 0x01; // inside the last (sealing) chunk's body
    writeFileSync(file, tampered);
    const v = icli('verify', id);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(new RegExp(`${id}: FAILED: chunk \\d+ .*HMAC`));
    const all = icli('verify', '--all');
    expect(all.code).toBe(1);
    expect(all.stdout).toMatch(/\d+ recordings, 1 failed verification/);
    writeFileSync(file, bytes);
    expect(icli('verify', '--all').code).toBe(0);
  });

  it('records 50 concurrent sessions, each in its own file with only its own statements', async () => {
    const pgModule = join(import.meta.dirname, '../../node_modules/pg');
    const script = `const {Client}=require(${JSON.stringify(pgModule)});
      (async()=>{const cs=[];for(let i=0;i<50;i++)cs.push(new Client({host:'127.0.0.3',port:5432,user:'x',database:'orders'}));
      await Promise.all(cs.map(c=>c.connect()));
      await Promise.all(cs.map(async(c,i)=>{for(let j=0;j<5;j++){const r=await c.query('SELECT $1::text AS m',['conc_'+i+'_'+j]);if(r.rows[0].m!=='conc_'+i+'_'+j)throw new Error('crossed');}}));
      await Promise.all(cs.map(c=>c.end()));console.log('ok')})().catch(e=>{console.error(e.message);process.exit(1)})`;
    const r = await runAgent(cg(), process.execPath, ['-e', script], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
    await new Promise((res) => setTimeout(res, 500));
    const ids = readAudit(env.auditFile).filter((l) => l.event === 'session.start' && l.pid === r.pid).map((l) => String(l.session));
    expect(ids).toHaveLength(50);
    const owners = new Set<number>();
    for (const id of ids) {
      const rec = await sealed(id);
      expect(rec.problems).toEqual([]);
      const text = Buffer.concat(rec.events.flatMap((e) => (e.k === 'in' || e.k === 'out' ? [Buffer.from(e.b)] : []))).toString('latin1');
      const markers = new Set([...text.matchAll(/conc_(\d+)_(\d)/g)].map((m) => Number(m[1])));
      expect(markers.size, `session ${id} saw ${[...markers].join(',')}`).toBe(1);
      const [owner] = markers;
      for (let j = 0; j < 5; j++) expect(text).toContain(`conc_${owner}_${j}`);
      owners.add(owner!);
    }
    expect(owners.size).toBe(50);
  });

  it('caps a session at maxSessionBytes with a marker, and the session goes on', async () => {
    const r = await runAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX',
      '-c', "SELECT repeat('x', 1000) FROM generate_series(1, 2000)", '-c', "SELECT 'after_cap'"]);
    expect(r.stdout).toContain('after_cap');
    const id = await sessionOf(r.pid);
    const rec = await sealed(id);
    expect(rec.truncated).toBe(true);
    expect(rec.events.findIndex((e) => e.k === 'truncated')).toBeGreaterThan(0);
    expect(readFileSync(recordingFile(env.recordingsDir, id)).length).toBeLessThan(1.2 * 1024 * 1024);
    expect(rec.end?.rows).toBe(2001);
    expect(icli('verify', id).stdout).toContain('truncated at the size cap');
  });

  it('review suggests a policy that, loaded back, decides every recorded command as it was decided', async () => {
    const r = await runAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX',
      '-c', 'SELECT name FROM customers WHERE id = 1', '-c', "INSERT INTO customers VALUES (77, 'Review', 'r@example.com')", '-c', 'DROP TABLE customers']);
    expect(r.stdout).toContain('Ada Lovelace');
    expect(r.stderr).not.toMatch(/INSERT/i); // the insert went through
    expect(r.stderr).toContain('ERROR:  interlock: no schema changes');
    await sealed(await sessionOf(r.pid));
    const review = icli('review', '--since', '1h');
    expect(review.code, review.stderr).toBe(0);
    const yamlText = /```yaml\n([\s\S]*?)```/.exec(review.stdout)?.[1];
    expect(yamlText).toContain('suggested-report-bot-orders-db');
    const html = icli('review', '--since', '1h', '--format', 'html');
    expect(html.stdout).toContain('<svg');

    await initAnalysis();
    const config = parseConfig(`agents: { cgroup: /x.slice }
workloads:
  - { name: report-bot, match: { cgroup: /x.slice/a } }
targets:
  - { name: orders-db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app } }
${yamlText}`, 'suggested.yaml');
    const recorded = listStored(env.recordingsDir).map((f) => readRecording(env.recordingsDir, f.id, key())).filter((rec) => rec.problems.length === 0);
    let checked = 0;
    for (const workload of ['report-bot']) {
      const rules = new RuleSet(config.policies.filter((p) => p.subjects.workloads.includes(workload)));
      for (const rec of recorded.filter((x) => x.start?.workload === workload)) {
        for (const d of rec.events.filter((e): e is DecisionEvent => e.k === 'decision')) {
          expect(rules.decideText(d.command).decision.action, `${workload}: ${d.command}`).toBe(d.action === 'allow' ? 'allow' : 'deny');
          checked++;
        }
      }
      // and nothing it never did
      for (const never of ['DELETE FROM customers', "SELECT pg_read_file('/etc/passwd')", 'TRUNCATE customers', 'UPDATE customers SET email = NULL']) {
        expect(rules.decideText(never).decision.action, `${workload}: ${never}`).toBe('deny');
      }
    }
    expect(checked).toBeGreaterThan(250); // the sessions above: psql, 50 node-postgres clients, the cap, this one
  });

  it('a daemon killed with SIGKILL leaves the live session readable up to its last flush, marked incomplete', async () => {
    const child = spawnAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX',
      '-c', "SELECT 'before_kill'", '-c', 'SELECT pg_sleep(30)']);
    const done = collect(child, 40_000);
    const id = await sessionOf(child.pid!);
    await waitForAudit(env.auditFile, (l) => l.event === 'query' && l.session === id && String(l.query).includes('pg_sleep'));
    await new Promise((res) => setTimeout(res, 400)); // past the 100 ms flush bound
    await env.daemon.kill9();
    const r = await done;
    expect(r.code).not.toBe(0);

    const rec = readRecording(env.recordingsDir, id, key());
    expect(rec.problems).toEqual([]);
    expect(rec.sealed).toBe(false);
    expect(rec.end).toBeUndefined();
    const commands = rec.events.filter((e): e is DecisionEvent => e.k === 'decision').map((d) => d.command);
    expect(commands).toEqual(["SELECT 'before_kill'", 'SELECT pg_sleep(30)']);
    const v = icli('verify', id);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('intact but incomplete');
    expect(icli('replay', id).stdout).toContain('recording incomplete');

    env.daemon = await startDaemon(env.configFile); // for afterAll, and: a restart keeps recording
    const again = await runAgent(cg(), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', "SELECT 'after_restart'"]);
    expect(again.stdout).toContain('after_restart');
    expect((await sealed(await sessionOf(again.pid))).problems).toEqual([]);
  });
});
