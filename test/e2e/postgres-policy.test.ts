/**
 * Per-statement policy end to end: unmodified psql, node-postgres and pgbench in the
 * agents' cgroup, the real redirect, a real PostgreSQL. Denials must come back as
 * SQLSTATE 42501 with the rule's message, leave the data untouched (checked on the
 * server) and leave the session usable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { runAgent } from '../helpers/agent.js';
import { readAudit, waitForAudit } from '../helpers/daemon.js';
import { E2EEnv } from '../helpers/e2e-env.js';

const enabled = bpfGate();

const RULES = `
      - { action: deny, match: { functions: [pg_read_file, pg_read_binary_file, lo_export, lo_import, "dblink*", pg_terminate_backend] }, message: "dangerous function" }
      - { action: deny, match: { statements: [drop, truncate, alter] }, message: "no schema changes" }
      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }
      - { action: allow, match: { statements: [insert], relations: [public.notes] } }
      - { action: approve, match: { statements: [update, delete, merge] }, approvers: [dba] }
      - { action: allow, match: { statements: [set, transaction] } }`.slice(1);

describe.skipIf(!enabled)('per-statement policy through the redirect', () => {
  const env = new E2EEnv({ name: 'policy', proxyPort: 15435, rules: RULES });
  const count = (table: string) => env.pg.superSql(`select count(*) from ${table}`).trim();

  beforeAll(async () => {
    await env.start();
    env.pg.superSql('SET ROLE app; CREATE TABLE notes (id serial primary key, body text);');
  });
  afterAll(() => env.stop());

  it('allows what a rule allows, and audits the decision', async () => {
    const r = await env.psql("select name from customers order by id limit 1");
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('Ada Lovelace');
    const line = await waitForAudit(env.auditFile, (l) => l.event === 'query' && String(l.query).includes('order by id limit 1'));
    expect(line).toMatchObject({ decision: 'allow', rule: 'analysts#3', kinds: ['select'], workload: 'report-bot' });
  });

  it('denies a dangerous function inside a SELECT with 42501, and the session goes on', async () => {
    const r = await env.psql(["select pg_read_file('/etc/hostname')", "select 'next_ok'"], { extra: ['-v', 'VERBOSITY=verbose'] });
    expect(r.stderr).toMatch(/ERROR: {2}42501: interlock: dangerous function\nDETAIL: {2}rule analysts#1\n/);
    expect(r.stderr).not.toMatch(/CONTEXT|inline_code_block|LOCATION/); // how the denial is raised is our business
    expect(r.stdout.trim()).toBe('next_ok');
    await waitForAudit(env.auditFile, (l) => l.decision === 'deny' && l.rule === 'analysts#1' && String(l.query).includes('pg_read_file'));
  });

  it('treats a DELETE hidden in a CTE, EXPLAIN ANALYZE DELETE and SELECT FOR UPDATE as the writes they are', async () => {
    for (const sql of [
      'WITH d AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM d',
      'EXPLAIN ANALYZE DELETE FROM customers',
      'SELECT * FROM customers FOR UPDATE',
    ]) {
      const r = await env.psql(sql);
      expect(r.stderr, sql).toMatch(/interlock: approval required \(rule analysts#5, approvers: dba\)/);
      expect(r.stdout, sql).toBe('');
    }
    expect(count('customers')).toBe('2');
    await waitForAudit(env.auditFile, (l) => l.decision === 'approve' && String(l.query).includes('FOR UPDATE'));
    const approvals = readAudit(env.auditFile).filter((l) => l.decision === 'approve');
    expect(approvals.map((l) => l.kinds)).toEqual(expect.arrayContaining([['delete', 'select'], ['delete', 'explain'], ['update', 'select']]));
  });

  it('denies a whole multi-statement query when one statement is denied: none of it runs', async () => {
    const r = await env.psql("insert into notes (body) values ('should not land'); drop table customers");
    expect(r.stderr).toContain('interlock: no schema changes');
    expect(count('notes')).toBe('0');
    expect(count('customers')).toBe('2');
  });

  it('denies unparsable SQL with the parser\'s message, and what no rule allows', async () => {
    const bad = await env.psql('selec 1');
    expect(bad.stderr).toContain('interlock: statement could not be parsed: syntax error at or near "selec"');
    for (const sql of ['select * from pg_catalog.pg_authid', 'select rolpassword from pg_authid']) {
      const unlisted = await env.psql(sql);
      expect(unlisted.stderr, sql).toContain('interlock: no rule allows this SELECT statement');
    }
    const opaque = await env.psql("DO $$BEGIN PERFORM 1; END$$");
    expect(opaque.stderr).toContain('interlock: no rule allows this DO statement');
  });

  it('follows search_path, so unqualified names are read where they now resolve', async () => {
    const r = await env.psql(["select current_setting('search_path')", 'set search_path = audit, public', 'select count(*) from customers', 'reset search_path', 'select count(*) from customers']);
    expect(r.stdout.trim().split('\n')[0]).toBe('public');
    // audit.customers or public.customers: the rule covers only public.*
    expect(r.stderr).toContain('interlock: no rule allows this SELECT statement');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('2'); // after the reset: public.customers
  });

  it('keeps a transaction consistent: a denial aborts it like any error, ROLLBACK recovers', async () => {
    const script = [
      'BEGIN;',
      "INSERT INTO notes (body) VALUES ('in tx');",
      'DROP TABLE customers;',
      "SELECT 'after denial';",
      'ROLLBACK;',
      "SELECT 'recovered';",
    ].join('\n');
    const r = await runAgent(env.cg('report-bot.service'), 'sh', ['-c', `printf '%s\\n' "$0" | psql -h 127.0.0.3 -U x -d orders -w -qAtX`, script]);
    expect(r.stderr).toContain('interlock: no schema changes');
    expect(r.stderr).toContain('current transaction is aborted');
    expect(r.stdout.trim()).toBe('recovered');
    expect(count('notes')).toBe('0');
  });

  it('decides the extended protocol at Parse: a denied statement errors, the same connection goes on', async () => {
    const pgModule = join(import.meta.dirname, '../../node_modules/pg');
    const script = `
      const { Client } = require(${JSON.stringify(pgModule)});
      (async () => {
        const c = new Client({ host: '127.0.0.3', port: 5432, user: 'x', database: 'orders' });
        await c.connect();
        const out = [];
        out.push((await c.query('select name from customers where id = $1', [1])).rows[0].name);
        try { await c.query('delete from customers where id = $1', [1]); out.push('deleted?!'); }
        catch (e) { out.push(e.code + ' ' + e.message); }
        try { await c.query({ name: 'bad', text: 'select pg_read_file($1)', values: ['/etc/hostname'] }); out.push('read?!'); }
        catch (e) { out.push(e.code + ' ' + e.message); }
        out.push((await c.query('insert into notes (body) values ($1) returning id', ['via extended'])).rows.length);
        out.push((await c.query('select $1::text as v', ['still in sync'])).rows[0].v);
        console.log(JSON.stringify(out));
        await c.end();
      })().catch((e) => { console.error(e.message); process.exit(1); });`;
    const r = await runAgent(env.cg('report-bot.service'), process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([
      'Ada Lovelace',
      '42501 interlock: approval required (rule analysts#5, approvers: dba) for this DELETE statement',
      '42501 interlock: dangerous function',
      1,
      'still in sync',
    ]);
    expect(count('customers')).toBe('2');
    expect(env.pg.superSql("select body from notes where body = 'via extended'").trim()).toBe('via extended');
  });

  it('keeps a pipeline in step: a denial mid-batch skips to Sync, the next batch runs', async () => {
    // one write: [P B E allowed] [P B E denied] [P B E allowed] Sync, then [P B E allowed] Sync
    const script = `
      const { serialize } = require(${JSON.stringify(join(import.meta.dirname, '../../node_modules/pg-protocol'))});
      const net = require('net');
      const step = (text) => [serialize.parse({ text }), serialize.bind({}), serialize.execute({})];
      const s = net.connect(5432, '127.0.0.3', () => {
        s.write(serialize.startup({ user: 'x', database: 'orders' }));
      });
      let buf = Buffer.alloc(0), ready = 0, seen = [];
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
          const type = String.fromCharCode(buf[0]), body = buf.subarray(5, 1 + buf.readInt32BE(1));
          buf = buf.subarray(1 + buf.readInt32BE(1));
          if (ready > 0) seen.push(type === 'E' ? 'E:' + body.toString('latin1').match(/C(\\w+)/)[1] : type === 'Z' ? 'Z:' + String.fromCharCode(body[0]) : type);
          if (type === 'Z' && ++ready === 1) s.write(Buffer.concat([
            ...step("select 'one'"), ...step('delete from customers'), ...step("select 'three'"), serialize.sync(),
            ...step("select 'four'"), serialize.sync(),
          ]));
          if (type === 'Z' && ready === 3) { console.log(seen.join(' ')); s.end(); }
        }
      });`;
    const r = await runAgent(env.cg('report-bot.service'), process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1 2 D C E:42501 Z:I 1 2 D C Z:I');
    expect(count('customers')).toBe('2');
  });

  it('refuses fastpath function calls (libpq large objects) and whatever they would have read', async () => {
    const r = await env.psql('\\lo_import /etc/hostname');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/interlock: /);
    expect(env.pg.superSql('select count(*) from pg_largeobject_metadata').trim()).toBe('0');
  });

  it('runs pgbench select-only in simple, extended and prepared modes under the policy', async () => {
    // tables created outside the agents' cgroup: the policy gives the agent no DDL
    const { execFileSync } = await import('node:child_process');
    execFileSync('pgbench', ['-h', '127.0.0.3', '-U', 'app', '-i', '-s', '1', '-q', 'orders'], { env: { ...process.env, PGPASSWORD: env.pg.password }, stdio: 'ignore' });
    for (const mode of ['simple', 'extended', 'prepared']) {
      const r = await runAgent(env.cg('report-bot.service'), 'pgbench', ['-h', '127.0.0.3', '-U', 'x', '-n', '-S', '-M', mode, '-t', '100', '-c', '2', 'orders']);
      expect(r.code, `${mode}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/number of transactions actually processed: 200\/200/);
    }
    // a write through pgbench's TPC-B script needs approval: the clients abort with 42501
    const tpcb = await runAgent(env.cg('report-bot.service'), 'pgbench', ['-h', '127.0.0.3', '-U', 'x', '-n', '-t', '5', '-c', '1', 'orders']);
    expect(tpcb.code).not.toBe(0);
    expect(tpcb.stderr).toMatch(/interlock: approval required/);
  });
});
