/**
 * Read-only means read-only: under a policy that allows only reads (DDL denied, SELECT on
 * public.* for reading, writes held for an approval nobody can give, SET and transactions
 * allowed), an agent must not change the database, whatever the statement calls. A SELECT
 * that calls a function with side effects (a sequence, a large object, an advisory lock,
 * a notification, a user function whose body writes) is a write and is refused with
 * SQLSTATE 42501 naming the function; STABLE and IMMUTABLE functions, and volatile
 * built-ins that change nothing (random, now, gen_random_uuid …), still run.
 *
 * Through the real redirect, with unmodified psql and node-postgres in the agents' cgroup.
 * Every attempt is judged on the database itself, read directly as the owner afterwards:
 * the rows, the sequence, large objects, relations, temporary schemas, comments,
 * statistics, locks held and notifications delivered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { bpfGate } from '../helpers/bpf-gate.js';
import { READ_ONLY_RULES } from '../helpers/policies.js';
import { runAgent, type AgentResult } from '../helpers/agent.js';
import { waitForAudit } from '../helpers/daemon.js';
import { E2EEnv } from '../helpers/e2e-env.js';

const enabled = bpfGate();

const PG_HOST = '127.0.0.46';




/** the ERROR lines psql printed (VERBOSITY=verbose puts the SQLSTATE first) */
const errors = (r: AgentResult) => r.stderr.split('\n').filter((l) => /^(psql:.*?)?ERROR:/.test(l));

function expectRefused(r: AgentResult, what: RegExp = /./): void {
  const e = errors(r);
  expect(e, `expected a refusal, got stdout ${JSON.stringify(r.stdout)} stderr ${JSON.stringify(r.stderr)}`).not.toEqual([]);
  expect(e[0]).toMatch(/ERROR:\s+42501:\s+interlock: /);
  expect(e[0]).toMatch(what);
}

describe.skipIf(!enabled)('a read-only policy changes nothing, whatever a SELECT calls', () => {
  const env = new E2EEnv({
    name: 'readonly',
    proxyPort: 15520,
    pgHost: PG_HOST,
    rules: READ_ONLY_RULES,
    workloads: '  - name: bump-bot\n    match: { cgroup: /interlock-readonly.slice/bump-bot.service }\n    groups: [bumpers]',
    policies: [
      '  - name: bumpers',
      '    subjects: { groups: [bumpers] }',
      '    targets: [orders-db]',
      '    rules:',
      `      - { action: allow, match: { statements: [select, function_write], functions: [public.bump] } }`,
      READ_ONLY_RULES,
    ].join('\n'),
  });

  /** psql as the read-only agent (or another unit), errors with their SQLSTATE */
  const agent = (sql: string | string[], unit?: string) => env.psql(sql, { unit, extra: ['-v', 'VERBOSITY=verbose'] });

  /** everything an agent's write could have changed, read directly by the superuser */
  const database = () => JSON.parse(env.pg.superSql(`SELECT pg_catalog.json_build_object(
      'flags', (SELECT pg_catalog.json_agg(f ORDER BY id) FROM public.flags f),
      'sequence', (SELECT pg_catalog.json_build_object('last_value', last_value, 'is_called', is_called) FROM public.s),
      'largeObjects', (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata),
      'relations', (SELECT pg_catalog.json_agg(relname ORDER BY relname) FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace),
      'tempSchemas', (SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname ~ '^pg_temp_'),
      'comment', pg_catalog.obj_description('public.flags'::regclass, 'pg_class'),
      'reltuples', (SELECT reltuples FROM pg_catalog.pg_class WHERE oid = 'public.flags'::regclass),
      'statistics', (SELECT count(*) FROM pg_catalog.pg_statistic WHERE starelid = 'public.flags'::regclass))`));
  const flagValue = () => Number(env.pg.superSql('SELECT v FROM public.flags WHERE id = 1').trim());

  /** runs `sql` as the read-only agent: the database must read the same afterwards, the agent get 42501 */
  async function unchanged(sql: string | string[], what?: RegExp): Promise<AgentResult> {
    const before = database();
    const r = await agent(sql);
    expect(database(), `the database after ${JSON.stringify(sql)} (agent saw ${JSON.stringify(r.stdout)})`).toEqual(before);
    expectRefused(r, what);
    return r;
  }

  /** what a LISTEN on `channel` (made directly as the owner) receives while `run` runs, up to a control NOTIFY sent after it */
  async function notificationsDuring(channel: string, run: () => Promise<AgentResult>): Promise<{ r: AgentResult; payloads: string[] }> {
    const c = new pg.Client({ host: PG_HOST, port: 5432, user: 'app', password: env.pg.password, database: 'orders' });
    await c.connect();
    const payloads: string[] = [];
    c.on('notification', (n) => payloads.push(n.payload ?? ''));
    try {
      await c.query(`LISTEN ${channel}`);
      const r = await run();
      env.pg.superSql(`NOTIFY ${channel}, 'control'`);
      for (let i = 0; i < 100 && !payloads.includes('control'); i++) await sleep(50);
      return { r, payloads };
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    await env.start();
    env.pg.superSql(`SET ROLE app;
      CREATE SEQUENCE s;
      CREATE TABLE flags (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
      INSERT INTO flags VALUES (1, 0);
      CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'UPDATE flags SET v = v + 1 WHERE id = 1 RETURNING v';
      CREATE FUNCTION peek() RETURNS int LANGUAGE sql STABLE AS 'SELECT v FROM flags WHERE id = 1';
      CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql STABLE AS 'SELECT bump()';
      CREATE VIEW flags_v AS SELECT id, v FROM flags;
      CREATE VIEW bumping AS SELECT bump() AS b;`);
  });
  afterAll(() => env.stop());

  describe('volatile functions called from a SELECT are writes, refused naming the function', () => {
    it("setval: select setval('s', 999)", async () => {
      await unchanged("select setval('s', 999)", /\bsetval\b/);
      const line = await waitForAudit(env.auditFile, (l) => l.event === 'query' && String(l.query).includes("setval('s', 999)"));
      expect(line).toMatchObject({ decision: 'deny', workload: 'report-bot' });
      expect(line.kinds).toEqual(expect.arrayContaining(['function_write']));
    });

    it("nextval: select nextval('s')", () => unchanged("select nextval('s')", /\bnextval\b/));

    it('a user function whose body is an UPDATE: select bump()', () => unchanged('select bump()', /\bbump\b/));

    it('the same function in a WHERE clause: select 1 from flags where bump() > 0', () =>
      unchanged('select 1 from flags where bump() > 0', /\bbump\b/));

    it('a large object: select lo_create(0)', () => unchanged('select lo_create(0)', /\blo_create\b/));

    it("a large object from bytes: select lo_from_bytea(0, 'x')", () => unchanged("select lo_from_bytea(0, 'x')", /\blo_from_bytea\b/));

    it('the extended protocol (node-postgres, a parameter): select nextval($1)', async () => {
      const script = `
        const { Client } = require(${JSON.stringify(join(import.meta.dirname, '../../node_modules/pg'))});
        (async () => {
          const c = new Client({ host: '${PG_HOST}', port: 5432, user: 'x', database: 'orders' });
          await c.connect();
          const out = [];
          try { out.push((await c.query('select nextval($1) as n', ['s'])).rows[0].n); }
          catch (e) { out.push(e.code + ' ' + e.message); }
          out.push((await c.query('select 1 as one')).rows[0].one);
          console.log(JSON.stringify(out));
          await c.end();
        })().catch((e) => { console.error(e.message); process.exit(1); });`;
      const before = database();
      const r = await runAgent(env.cg('report-bot.service'), process.execPath, ['-e', script]);
      expect(database(), `the database after the agent saw ${r.stdout}`).toEqual(before);
      expect(r.stderr).toBe('');
      const [refusal, next] = JSON.parse(r.stdout) as [string, number];
      expect(refusal).toMatch(/^42501 interlock: .*\bnextval\b/);
      expect(next).toBe(1); // the session goes on
    });

    it('an advisory lock: select pg_advisory_lock(4242), held while the session lives', async () => {
      const before = database();
      const locks = () => env.pg.superSql("SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND objid = 4242").trim();
      let done = false;
      const run = agent(['select pg_advisory_lock(4242)', 'select pg_sleep(1.5)']).finally(() => (done = true));
      const seen = new Set<string>();
      while (!done) {
        seen.add(locks());
        await sleep(100);
      }
      const r = await run;
      expect([...seen], 'advisory locks on 4242 seen while the agent ran').toEqual(['0']);
      expect(database()).toEqual(before);
      expectRefused(r, /\bpg_advisory_lock\b/);
      expect(errors(r), 'only the lock is refused: pg_sleep kept the session open').toHaveLength(1);
    });

    it("a notification: select pg_notify('interlock_ro', …) reaches no listener", async () => {
      const { r, payloads } = await notificationsDuring('interlock_ro', () => agent("select pg_notify('interlock_ro', 'from the agent')"));
      expect(payloads, 'what a listener received').toEqual(['control']);
      expectRefused(r, /\bpg_notify\b/);
    });

    it('a STABLE-declared function that calls a volatile one: select sneaky()', () => unchanged('select sneaky()'));

    it('a view whose definition calls a volatile function: select * from bumping', () => unchanged('select * from bumping'));
  });

  describe('writes that were always held stay held', () => {
    it('SELECT INTO', () => unchanged('select * into flags_copy from flags'));
    it('CREATE TABLE AS', () => unchanged('create table flags_copy as select * from flags'));
    it('temporary tables', () => unchanged(['create temp table scratch as select * from flags', 'create temp table scratch2 (id int)', 'insert into scratch values (2, 2)']));
    it('PREPARE / EXECUTE of a write', () => unchanged(['prepare w as update flags set v = v + 100', 'execute w']));
    it('PREPARE of a volatile call, then EXECUTE', () => unchanged(['prepare p as select bump()', 'execute p']));
    it('a data-modifying CTE', () => unchanged('with u as (update flags set v = v + 100 returning v) select * from u'));
    it('EXPLAIN ANALYZE of a write', () => unchanged('explain analyze update flags set v = v + 100'));
    it('a write through a view', () => unchanged('update flags_v set v = v + 100'));
    it('DO', () => unchanged('do $$begin update flags set v = v + 100; end$$'));
    it('a write hidden in a multi-statement query', () => unchanged('select 1; update flags set v = v + 100'));
    it('MERGE', () => unchanged('merge into flags f using (select 1 as id) s on f.id = s.id when matched then update set v = f.v + 100'));
    it('COMMENT', () => unchanged("comment on table flags is 'the agent was here'"));
    it('ANALYZE', () => unchanged('analyze flags'));
    it('SET ROLE, then a write', () => unchanged(['set role app', 'update flags set v = v + 100']));
    it('SET SESSION AUTHORIZATION, then a write (one message)', () => unchanged('set session authorization app; update flags set v = v + 100'));

    it('COPY FROM STDIN with rows to load', async () => {
      const before = database();
      const r = await runAgent(env.cg('report-bot.service'), 'sh', ['-c',
        'printf "2\\t200\\n3\\t300\\n" | psql -h "$1" -p 5432 -U x -d orders -w -qAtX -v VERBOSITY=verbose -c "$0"', 'copy flags from stdin', PG_HOST]);
      expect(database()).toEqual(before);
      expectRefused(r);
    });

    it('NOTIFY reaches no listener', async () => {
      const { r, payloads } = await notificationsDuring('interlock_ro', () => agent("notify interlock_ro, 'from the agent'"));
      expect(payloads, 'what a listener received').toEqual(['control']);
      expectRefused(r);
    });
  });

  describe('reads still read', () => {
    it('a STABLE user function is refused too (a STABLE wrapper may call a volatile one): select peek()', async () => {
      const before = database();
      const r = await agent('select peek()');
      expectRefused(r);
      expect(r.stderr).toContain('peek()');
      expect(database()).toEqual(before);
    });

    it('volatile built-ins that change nothing: random, now, clock_timestamp, gen_random_uuid, pg_sleep', async () => {
      const before = database();
      const r = await agent(['select random()', 'select now()', 'select clock_timestamp()', 'select gen_random_uuid()', "select pg_sleep(0), 'slept'"]);
      expect(r.stderr).toBe('');
      const [random, now, clock, uuid, slept] = r.stdout.trim().split('\n');
      expect(Number(random)).toBeGreaterThanOrEqual(0);
      expect(Number(random)).toBeLessThan(1);
      for (const t of [now, clock]) expect(Math.abs(Date.parse(t!.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00')) - Date.now())).toBeLessThan(60_000);
      expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(slept).toBe('|slept');
      expect(database()).toEqual(before);
    });

    it('a plain read of the table and of the view', async () => {
      const r = await agent(['select v from flags where id = 1', 'select v from flags_v where id = 1']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim().split('\n')).toEqual([String(flagValue()), String(flagValue())]);
    });
  });

  describe('a rule can allow one volatile function by name', () => {
    it('bump-bot may run select public.bump(): the row changes by one', async () => {
      const v = flagValue();
      const r = await agent('select public.bump()', 'bump-bot.service');
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(String(v + 1));
      expect(flagValue()).toBe(v + 1);
    });

    it('and nothing else volatile beside it: select public.bump(), nextval(\'s\') is refused', async () => {
      const before = database();
      const r = await agent("select public.bump(), nextval('s')", 'bump-bot.service');
      expect(database()).toEqual(before);
      expectRefused(r, /\bnextval\b/);
    });
  });
});
