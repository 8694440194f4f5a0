/**
 * End to end through the real eBPF redirect: unmodified psql / node-postgres /
 * pgbench in a cgroup below the agents' cgroup, a real PostgreSQL 15 (SCRAM) on
 * 127.0.0.3:5432, the real `interlock run`. Assertions are on what the server,
 * the audit trail and the clients saw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import type { TestPostgres } from '../helpers/postgres.js';
import { ALLOW_ORDINARY, E2EEnv } from '../helpers/e2e-env.js';
import { collect, runAgent, spawnAgent } from '../helpers/agent.js';
import { CLI, cli, readAudit, startDaemon, waitForAudit, type RunningDaemon } from '../helpers/daemon.js';
import { addon } from '../../src/interception/addon.js';

const enabled = bpfGate();
const PROXY_PORT = 15433;
const CORE_PROGRAMS = ['il_connect4', 'il_connect6', 'il_sendmsg4', 'il_sendmsg6', 'il_sock_create', 'il_sockops', 'il_getpeername4', 'il_getpeername6'];

describe.skipIf(!enabled)('PostgreSQL through the eBPF redirect', () => {
  const env = new E2EEnv({ name: 'e2e', proxyPort: PROXY_PORT, rules: ALLOW_ORDINARY });
  let pg: TestPostgres;
  let daemon: RunningDaemon;
  let auditFile: string;
  let configFile: string;
  let root: string;
  const PIN_DIR = env.pinDir;
  const AGENTS = env.agents;
  const cg = (unit: string) => env.cg(unit);
  const psql = (unit: string, host: string, sql: string, extra: string[] = [], envVars: Record<string, string> = {}) =>
    env.psql(sql, { unit, host, extra, env: envVars });

  beforeAll(async () => {
    await env.start();
    ({ pg, daemon, auditFile, configFile, root } = env);
  });

  afterAll(async () => {
    env.daemon = daemon;
    await env.stop();
  });

  it('logs an agent in upstream with the vaulted credential, attributed to its workload and pid', async () => {
    const r = await psql('report-bot.service', '127.0.0.3', "select current_user, 'marker_attr_1'");
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app|marker_attr_1');
    const q = await waitForAudit(auditFile, (l) => l.event === 'query' && String(l.query).includes('marker_attr_1'));
    expect(q).toMatchObject({ workload: 'report-bot', groups: ['analysts'], target: 'orders-db', pid: r.pid, uid: 65534, comm: 'psql', dst: '127.0.0.3:5432', cgroup: `${AGENTS}/report-bot.service` });
    const start = readAudit(auditFile).find((l) => l.event === 'session.start' && l.session === q.session);
    expect(start).toMatchObject({ workload: 'report-bot', pid: r.pid, clientUser: 'whoever', upstreamUser: 'app' });
    // the server saw the statement from the vaulted user
    expect(pg.log()).toMatch(/app@orders LOG:\s+statement: select current_user, 'marker_attr_1'/);
  });

  it('never takes a password from the agent, and never hands the vaulted one out', async () => {
    const r = await psql('report-bot.service', '127.0.0.3', "select 'pw_check'", [], { PGPASSWORD: 'agent-guess-777' });
    expect(r.stdout.trim()).toBe('pw_check');
    await waitForAudit(auditFile, (l) => String(l.query).includes('pw_check'));
    expect(pg.log()).not.toContain('agent-guess-777');
    expect(pg.log()).not.toMatch(/password authentication failed/);
    const trail = JSON.stringify(readAudit(auditFile));
    expect(trail).not.toContain(pg.password);
    expect(trail).not.toContain('agent-guess-777');
  });

  it('leaves a process outside the agents\' cgroup alone', async () => {
    const marker = `direct_${Date.now()}`;
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync('psql', ['-h', '127.0.0.3', '-p', '5432', '-U', 'app', '-d', 'orders', '-w', '-qAtX', '-c', `select '${marker}'`], {
      env: { ...process.env, PGPASSWORD: pg.password }, encoding: 'utf8',
    });
    expect(out.trim()).toBe(marker);
    await new Promise((r) => setTimeout(r, 300));
    expect(JSON.stringify(readAudit(auditFile))).not.toContain(marker);
    // and without the password it gets the server's own refusal: nobody added a credential
    const r = await import('node:child_process').then((cp) =>
      cp.spawnSync('psql', ['-h', '127.0.0.3', '-p', '5432', '-U', 'app', '-d', 'orders', '-w', '-c', 'select 1'], { encoding: 'utf8', env: { PATH: process.env.PATH } }));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/password/);
  });

  it('intercepts a v4-mapped IPv6 dial (::ffff:127.0.0.3), which a connect4-only hook would miss', async () => {
    const r = await psql('report-bot.service', '::ffff:127.0.0.3', "select current_user, 'marker_v6map'");
    expect(r.stdout.trim()).toBe('app|marker_v6map');
    const q = await waitForAudit(auditFile, (l) => String(l.query).includes('marker_v6map'));
    expect(q).toMatchObject({ workload: 'report-bot', pid: r.pid, dst: '127.0.0.3:5432' });
  });

  it('shows the client the address it dialed (getpeername), not the proxy\'s', async () => {
    const script = `const s=require('net').connect(5432,process.argv[1],()=>{console.log(s.remoteAddress+' '+s.remotePort);s.destroy()})`;
    for (const [host, seen] of [['127.0.0.3', '127.0.0.3 5432'], ['::ffff:127.0.0.3', '::ffff:127.0.0.3 5432']]) {
      const r = await runAgent(cg('report-bot.service'), process.execPath, ['-e', script, host]);
      expect(r.stdout.trim()).toBe(seen);
    }
  });

  it('refuses an unconfigured database address on 5432 with a clear PostgreSQL error, and audits it', async () => {
    const r = await psql('report-bot.service', '127.0.0.9', 'select 1');
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('no target configured for 127.0.0.9:5432');
    await waitForAudit(auditFile, (l) => l.event === 'connect.refused' && l.pid === r.pid && String(l.reason).includes('127.0.0.9:5432'));
  });

  it('refuses a workload without a policy, and a cgroup that is no known workload', async () => {
    const intern = await psql('intern-1.service', '127.0.0.3', 'select 1');
    expect(intern.stderr).toContain('workload intern-bot has no policy for target orders-db');
    const stranger = await psql('stranger.service', '127.0.0.3', 'select 1');
    expect(stranger.stderr).toContain('workload unknown has no policy for target orders-db');
    expect(stranger.stdout).toBe('');
    await waitForAudit(auditFile, (l) => l.event === 'connect.refused' && l.pid === stranger.pid && l.workload === 'unknown');
  });

  it('refuses a database the target does not serve', async () => {
    const r = await runAgent(cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'postgres', '-w', '-c', 'select 1']);
    expect(r.stderr).toContain('database "postgres" is not served by target orders-db');
  });

  it('reports a dead upstream clearly', async () => {
    const r = await psql('report-bot.service', '127.0.0.5', 'select 1');
    expect(r.stderr).toMatch(/target dead-db \(127\.0\.0\.5:5432\) is unreachable: ECONNREFUSED/);
  });

  it('refuses a connection made straight to the proxy port (no redirect record)', async () => {
    const r = await runAgent(cg('report-bot.service'), 'psql', ['-h', '127.0.0.1', '-p', String(PROXY_PORT), '-U', 'x', '-d', 'orders', '-w', '-c', 'select 1']);
    expect(r.stderr).toContain('not redirected by interlock');
  });

  it('relays the extended protocol (node-postgres, parameters) and audits the statement', async () => {
    const pgModule = join(import.meta.dirname, '../../node_modules/pg');
    const script = `const {Client}=require(${JSON.stringify(pgModule)});(async()=>{const c=new Client({host:'127.0.0.3',port:5432,user:'x',database:'orders'});await c.connect();const r=await c.query('select name from customers where id = $1',[2]);console.log(r.rows[0].name);await c.end()})().catch(e=>{console.error(e.message);process.exit(1)})`;
    const r = await runAgent(cg('report-bot.service'), process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('Alan Turing');
    await waitForAudit(auditFile, (l) => l.event === 'query' && l.protocol === 'extended' && l.query === 'select name from customers where id = $1' && l.pid === r.pid);
  });

  it('ends the agent\'s session when the server ends it, and says so in the trail', async () => {
    const t0 = Date.now();
    const r = await psql('report-bot.service', '127.0.0.3', "select 'bye_marker', pg_terminate_backend(pg_backend_pid())");
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.stderr).toMatch(/terminating connection due to administrator command|server closed the connection/);
    const q = await waitForAudit(auditFile, (l) => l.event === 'query' && String(l.query).includes('bye_marker'));
    await waitForAudit(auditFile, (l) => l.event === 'session.end' && l.session === q.session && l.reason === 'upstream closed');
  });

  it('carries a cancel (pg_cancel via Ctrl-C) to the right backend', async () => {
    const child = spawnAgent(cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX', '-c', 'select pg_sleep(20)']);
    const done = collect(child, 25_000);
    await waitForAudit(auditFile, (l) => l.event === 'query' && l.pid === child.pid && String(l.query).includes('pg_sleep(20)'));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    child.kill('SIGINT');
    const r = await done;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.stderr).toContain('canceling statement due to user request');
    await waitForAudit(auditFile, (l) => l.event === 'cancel' && l.honoured === true);
  });

  it('closes a session that sends malformed startup bytes, and leaves the others alone', async () => {
    const survivor = collect(spawnAgent(cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX', '-c', 'select pg_sleep(1.5)', '-c', "select 'survivor'"]), 20_000);
    const garbage = `const s=require('net').connect(5432,'127.0.0.3',()=>s.write(Buffer.from([0x7f,0xff,0xff,0xff,1,2,3,4])));let b=Buffer.alloc(0);s.on('data',d=>b=Buffer.concat([b,d]));s.on('close',()=>console.log(b.toString('latin1').replace(/[^ -~]/g,'.')))`;
    const bad = await runAgent(cg('report-bot.service'), process.execPath, ['-e', garbage]);
    expect(bad.stdout).toMatch(/^E.*08P01/);
    // a well-formed login, then a message header claiming 2 GB: refused before anything is buffered
    const oversized = `const s=require('net').connect(5432,'127.0.0.3',()=>{const p=Buffer.from('user\\0x\\0database\\0orders\\0\\0');const h=Buffer.alloc(8);h.writeInt32BE(8+p.length,0);h.writeInt32BE(196608,4);s.write(Buffer.concat([h,p]))});let sent=false;s.on('data',d=>{process.stdout.write(d.toString('latin1').replace(/[^ -~]/g,'.'));if(!sent&&d.includes(Buffer.from([0x5a,0,0,0,5,0x49]))){sent=true;const q=Buffer.alloc(5);q[0]=0x51;q.writeInt32BE(0x7ffffff0,1);s.write(q)}});s.on('error',()=>{})`;
    const big = await runAgent(cg('report-bot.service'), process.execPath, ['-e', oversized]);
    expect(big.stdout).toMatch(/Z\.\.\.\.I.*SFATAL\.VFATAL\.C54000\.M[^.]*over the limit of 16777216 bytes \(limits\.maxMessageBytes\)/);
    const s = await survivor;
    expect(s.stdout.trim()).toBe('survivor');
    const again = await psql('report-bot.service', '127.0.0.3', "select 'still_serving'");
    expect(again.stdout.trim()).toBe('still_serving');
  });

  it('cuts a client that never finishes its login, but not a session that is busy or idle', async () => {
    const silent = `const s=require('net').connect(5432,'127.0.0.3');const t0=Date.now();let b='';s.on('data',d=>b+=d.toString('latin1'));s.on('close',()=>console.log(Date.now()-t0, b.replace(/[^ -~]/g,'.')))`;
    const slow = runAgent(cg('report-bot.service'), process.execPath, ['-e', silent]);
    const busy = await psql('report-bot.service', '127.0.0.3', "select pg_sleep(2.5), 'busy_ok'");
    expect(busy.stdout.trim()).toBe('|busy_ok');
    const r = await slow;
    const out = r.stdout.trim();
    const [ms, body] = [out.slice(0, out.indexOf(' ')), out.slice(out.indexOf(' ') + 1)];
    expect(Number(ms)).toBeGreaterThanOrEqual(1900);
    expect(Number(ms)).toBeLessThan(6000);
    expect(body).toMatch(/SFATAL.*C08006.*login took too long/);
  });

  it('runs pgbench through the redirect: initialise (COPY FROM STDIN) and a select-only run', async () => {
    const init = await runAgent(cg('report-bot.service'), 'pgbench', ['-h', '127.0.0.3', '-U', 'x', '-i', '-s', '1', '-q', 'orders']);
    expect(init.code, init.stderr).toBe(0);
    expect(pg.superSql('select count(*) from pgbench_accounts').trim()).toBe('100000');
    const r = await runAgent(cg('report-bot.service'), 'pgbench', ['-h', '127.0.0.3', '-U', 'x', '-n', '-S', '-t', '200', '-c', '2', 'orders']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/number of transactions actually processed: 400\/400/);
    const s = cli(['status', '--config', configFile]);
    expect(s.stdout).toMatch(/sessions: \d+/);
  });

  it('reports status over the control socket', async () => {
    const s = cli(['status', '--config', configFile]);
    expect(s.code).toBe(0);
    expect(s.stdout).toContain(`redirect: attached (${addon().links(PIN_DIR).length} programs`);
    expect(s.stdout).toMatch(/target: orders-db postgres 127\.0\.0\.3:5432/);
  });

  it('fails closed when the daemon dies, and serves again on restart with the same pinned links', async () => {
    const linksBefore = addon().links(PIN_DIR).map((l) => l.linkId).sort();
    // the optional programs (unix connect, BPF LSM) depend on the kernel; these never do
    expect(addon().links(PIN_DIR).map((l) => l.name)).toEqual(expect.arrayContaining(CORE_PROGRAMS));
    await daemon.kill9();
    const r = await psql('report-bot.service', '127.0.0.3', "select 'bypass'", [], { PGPASSWORD: pg.password });
    expect(r.stdout).not.toContain('bypass');
    expect(r.stderr).toMatch(/Connection refused/);
    daemon = await startDaemon(configFile);
    expect(addon().links(PIN_DIR).map((l) => l.linkId).sort()).toEqual(linksBefore);
    const again = await psql('report-bot.service', '127.0.0.3', "select 'back_again'");
    expect(again.stdout.trim()).toBe('back_again');
  });

  it('on SIGTERM ends sessions with a proper error, exits 0 and keeps the redirect pinned', async () => {
    const held = collect(spawnAgent(cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX', '-c', 'select pg_sleep(10)']), 20_000);
    await new Promise((r) => setTimeout(r, 800));
    expect(await daemon.stop()).toBe(0);
    const r = await held;
    expect(r.stderr).toMatch(/interlock is shutting down/);
    expect(addon().links(PIN_DIR).map((l) => l.name)).toEqual(expect.arrayContaining(CORE_PROGRAMS));
    const refused = await psql('report-bot.service', '127.0.0.3', 'select 1');
    expect(refused.stderr).toMatch(/Connection refused/);
    daemon = await startDaemon(configFile);
  });

  it('rejects a bad config with file, line and field, and a non-zero exit', () => {
    const bad = join(root, 'bad.yaml');
    writeFileSync(bad, 'agents:\n  cgroup: /agents.slice\ntargets:\n  - name: x\n    protocol: postgres\n    adress: 127.0.0.3:5432\n');
    const r = cli(['run', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}:6`);
    expect(r.stderr).toMatch(/targets\[0\]\.adress/);
  });

  it('explains what is missing when run without privileges (doctor and run)', async () => {
    const { spawnSync } = await import('node:child_process');
    const asNobody = (args: string[]) => spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, ...args], { encoding: 'utf8' });
    const doctor = asNobody(['doctor']);
    expect(doctor.status).toBe(1);
    expect(doctor.stdout).toMatch(/FAIL privileges +missing CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF \(run as root\)/);
    const run = asNobody(['run', '--config', configFile]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('interlock run needs root');
    expect(cli(['doctor', '--config', configFile]).code).toBe(0);
  });

  it('detach removes the redirect: agents then reach the server directly (and unauthenticated)', async () => {
    await daemon.stop();
    const d = cli(['detach', '--config', configFile]);
    expect(d.code).toBe(0);
    expect(addon().links(PIN_DIR)).toHaveLength(0);
    const r = await psql('report-bot.service', '127.0.0.3', 'select 1');
    expect(r.stderr).toMatch(/password authentication failed|no password supplied|fe_sendauth/);
    daemon = await startDaemon(configFile);
    const back = await psql('report-bot.service', '127.0.0.3', "select 'reattached'");
    expect(back.stdout.trim()).toBe('reattached');
  });
});
