/**
 * Masked values never reach an agent in the clear, whatever the statement, protocol path
 * or client library: through the real redirect, with psql and four real client libraries
 * (node-postgres, postgres.js, asyncpg, psycopg 3) running unmodified in the agents'
 * cgroup as an unprivileged user. A direct output of a masked column (aliases,
 * subqueries, CTEs, views, unions, `*`) comes back masked in place; any other use of it
 * (expressions, functions, aggregates, whole-row values, predicates, ordering, grouping,
 * windows, functions outside pg_catalog) is refused with SQLSTATE 42501 naming the column.
 * Every statement here is first run directly against the server, to show it would leak.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import type { AgentResult } from '../helpers/agent.js';
import { CLIENT_LIBS, clientScripts, type ClientAnswer, type ClientLib, type ClientRun, type ClientStatement } from '../helpers/pg-clients.js';

const enabled = bpfGate();

const ROWS = [
  { id: 1, name: 'Ada Lovelace', email: 'ada@example.com', ssn: '078-05-1120', card: '4111111111111111', note: 'vip' },
  { id: 2, name: 'Alan Turing', email: 'alan@example.org', ssn: '219-09-9999', card: '5500005555555559', note: 'prefers post' },
  { id: 3, name: 'Grace Hopper', email: 'grace@example.net', ssn: '457-55-5462', card: '340000000000009', note: 'none' },
];
const RAW = ROWS.flatMap((r) => [r.email, r.ssn, r.card]);
const REDACTED = '[redacted]';
const PG_HOST = '127.0.0.43';

/** every raw value found in what the agent saw: as written, in any case, hex (bytea) or base64 */
function leaks(seen: string): string[] {
  const s = seen.toLowerCase();
  const forms = (v: string) => [v, Buffer.from(v).toString('hex'), Buffer.from(v).toString('base64').replace(/=+$/, '')];
  return RAW.filter((v) => forms(v).some((f) => s.includes(f.toLowerCase())));
}

/** a direct read's output with every covered value masked in place: what the agent should see */
function maskedInPlace(out: string): string {
  return RAW.reduce((s, v) => s.split(v).join(REDACTED), out);
}

/** the ERROR lines psql printed (VERBOSITY=verbose puts the SQLSTATE first) */
const errors = (r: AgentResult) => r.stderr.split('\n').filter((l) => /^(psql:.*?)?ERROR:/.test(l));

function expectRefused(r: AgentResult, column: RegExp): void {
  const e = errors(r);
  expect(e, `expected a refusal, got stdout ${JSON.stringify(r.stdout)} stderr ${JSON.stringify(r.stderr)}`).not.toEqual([]);
  expect(e[0]).toMatch(/ERROR:\s+42501:/);
  expect(e[0]).toMatch(column);
}

describe.skipIf(!enabled)('masking against every statement shape and client library', () => {
  const env = new E2EEnv({
    name: 'masking-clients',
    proxyPort: 15490,
    pgHost: PG_HOST,
    // copy_to and other (FETCH, EXECUTE) are allowed so that those paths meet masking, not the policy
    rules: '      - { action: allow, match: { statements: [select, set, transaction, copy_to, other] } }',
    masking: [
      '      - { columns: [ssn, "customers.email"], strategy: redact }',
      '      - { detectors: [credit_card], strategy: redact }',
      '      - { columns: ["members.email"], strategy: redact }',
    ].join('\n'),
  });
  let runClient!: ReturnType<typeof clientScripts>;

  /** psql straight to the server as the upstream owner (stdout, then any errors): what the agent must not get */
  const direct = (sql: string | string[]) => {
    const r = spawnSync('psql', ['-h', PG_HOST, '-U', 'app', '-d', 'orders', '-w', '-qAtX', ...[sql].flat().flatMap((c) => ['-c', c])], {
      env: { ...process.env, PGPASSWORD: env.pg.password }, encoding: 'utf8', maxBuffer: 64 << 20,
    });
    return r.stdout + r.stderr;
  };
  /** psql as the agent, errors with their SQLSTATE */
  const agent = (sql: string | string[]) => env.psql(sql, { extra: ['-v', 'VERBOSITY=verbose'] });
  const client = (lib: ClientLib, statements: ClientStatement[]): Promise<ClientRun> =>
    runClient(lib, env.cg('report-bot.service'), PG_HOST, statements);

  beforeAll(async () => {
    await env.start();
    const values = ROWS.map((r) => `(${r.id}, '${r.name}', '${r.email}', '${r.ssn}', '${r.card}', '${r.note}')`).join(',\n');
    env.pg.superSql(`SET ROLE app;
      DROP TABLE customers;
      CREATE TABLE customers (id int primary key, name text, email text, ssn text, card text, note text);
      INSERT INTO customers VALUES ${values};
      CREATE VIEW contacts AS SELECT id, ssn AS tax_id, email FROM customers;
      CREATE FUNCTION lookup(int) RETURNS text LANGUAGE sql STABLE AS 'SELECT ssn FROM customers WHERE id = $1';
      CREATE TABLE members (id int, email text) PARTITION BY RANGE (id);
      CREATE TABLE members_low PARTITION OF members FOR VALUES FROM (0) TO (100);
      INSERT INTO members VALUES (1, '${ROWS[0].email}'), (2, '${ROWS[1].email}');
      RESET ROLE;
      ANALYZE customers;`);
    runClient = clientScripts(join(env.root, 'clients'));
  });
  afterAll(() => env.stop());

  it('leaves unmasked data byte-identical to a direct connection', async () => {
    const sql = 'select id, name, note from customers order by id';
    const r = await agent(sql);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(direct(sql));
    expect(r.stdout).toContain('Grace Hopper');
  });

  describe('a direct output of a masked column is masked in place, the rest intact', () => {
    const cases: [string, string][] = [
      ['aliases', 'select ssn as x, email as y from customers'],
      ['aliases beside an unmasked column', 'select name, ssn as x, email as y from customers order by id'],
      ['select *', 'select * from customers order by id'],
      ['select c.*', 'select c.* from customers c order by id'],
      ['a subquery alias', 'select s from (select ssn as s from customers) t'],
      ['a CTE alias', 'with w as (select id, ssn as s, email as e from customers) select s, e, id from w order by id'],
      ['a view that renames the column', 'select tax_id from contacts order by id'],
      ['select * from a view', 'select * from contacts order by id'],
      ['a UNION of masked columns', 'select email from customers union all select ssn from customers'],
    ];
    it.each(cases)('%s: %s', async (_what, sql) => {
      const want = direct(sql);
      expect(leaks(want), 'the statement reads covered values').not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(maskedInPlace(want));
    });

    it('a UNION of a masked column with a literal: the masked rows masked, ids intact', async () => {
      const sql = "select id, ssn from customers union all select 9, 'none' order by 1";
      expect(leaks(direct(sql))).not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n');
      expect(lines.slice(0, 3)).toEqual(['1|[redacted]', '2|[redacted]', '3|[redacted]']);
      expect(lines[3]).toMatch(/^9\|/);
    });
  });

  describe('a partition holds its parent\'s rows: the parent\'s column rule covers it', () => {
    it.each([
      ['selected from the partition', 'select id, email from members_low order by id'],
      ['copied from the partition', 'copy members_low to stdout'],
      ['selected from the parent', 'select * from members order by id'],
    ])('%s is masked in place', async (_what, sql) => {
      const want = direct(sql);
      expect(leaks(want)).not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expect(r.stdout).toBe(maskedInPlace(want));
    });
    it('computing on the partition\'s column is refused', async () => {
      const r = await agent("select lower(email) from members_low");
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expectRefused(r, /members\.email/);
    });
  });

  describe('any other use of a masked column is refused, naming it', () => {
    const ssn = /\bssn\b/, email = /\bemail\b/, either = /\b(ssn|email)\b/;
    const cases: [string, string, RegExp][] = [
      ['a concatenation', "select ssn || '' from customers", ssn],
      ['upper()', 'select upper(email) from customers', email],
      ['lower()', 'select lower(ssn) from customers', ssn],
      ['a cast to bytea', 'select ssn::bytea from customers', ssn],
      ['base64 of the bytes', "select encode(convert_to(ssn, 'UTF8'), 'base64') from customers", ssn],
      ['translate()', "select translate(ssn, '0123456789', 'abcdefghij'), translate(email, 'ae', 'AE') from customers", either],
      ['a cast whose error quotes the value', 'select ssn::int from customers', ssn],
      ['a failing cast in WHERE', 'select id from customers where email::date is not null', email],
      ['row_to_json of the row', 'select row_to_json(c) from customers c', either],
      ['the row value', 'select c from customers c', either],
      ['the row value as text', 'select c::text from customers c', either],
      ['array_agg', 'select array_agg(ssn) from customers', ssn],
      ['string_agg', "select string_agg(email, ',') from customers", email],
      ['json_agg', 'select json_agg(email) from customers', email],
      ['max', 'select max(ssn) from customers', ssn],
      ['an expression in a subquery', "select s from (select ssn || '' as s from customers) t", ssn],
      ['DISTINCT', 'select distinct ssn from customers', ssn],
      ['GROUP BY', 'select ssn, count(*) from customers group by ssn', ssn],
    ];
    it.each(cases)('%s: %s', async (_what, sql, column) => {
      expect(leaks(direct(sql)), 'the statement reads covered values').not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expectRefused(r, column);
    });

    // these show nothing raw even directly: what they give away is order, grouping or equality
    const silent: [string, string, RegExp][] = [
      ['ORDER BY', 'select name from customers order by ssn', ssn],
      ['ORDER BY desc', 'select id from customers order by email desc', email],
      ['GROUP BY without output', 'select count(*) from customers group by ssn', ssn],
      ['count(DISTINCT)', 'select count(distinct ssn) from customers', ssn],
      ['JOIN USING', 'select a.name from customers a join customers b using (ssn)', ssn],
      ['JOIN ON', 'select a.name from customers a join customers b on a.email = b.email', email],
      ['a window ordered by it', 'select name, row_number() over (order by ssn) from customers', ssn],
      ['a window partitioned by it', 'select name, count(*) over (partition by email) from customers', email],
    ];
    it.each(silent)('%s: %s', async (_what, sql, column) => {
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      expectRefused(r, column);
    });

    it('a SQL function outside pg_catalog that returns the value: select lookup(1)', async () => {
      expect(leaks(direct('select lookup(1)'))).toEqual([ROWS[0].ssn]);
      for (const sql of ['select lookup(1)', 'select x from lookup(2) as x']) {
        const r = await agent(sql);
        expect(leaks(r.stdout + r.stderr)).toEqual([]);
        expect(errors(r)[0] ?? `no error: ${r.stdout}`).toMatch(/ERROR:\s+42501:/);
      }
    });
  });

  describe('a question about a masked value answers the same for a true and a false guess', () => {
    const cases: [string, string, string, string][] = [
      ['LIKE a prefix', "select count(*) from customers where ssn like '{}%'", '078', '999'],
      ['equality', "select count(*) from customers where ssn = '{}'", ROWS[0].ssn, '000-00-0000'],
      ['equality on email', "select name from customers where email = '{}'", ROWS[1].email, 'nobody@example.com'],
      ['EXISTS', "select exists (select 1 from customers where ssn = '{}')", ROWS[2].ssn, '111-11-1111'],
      ['CASE in the select list', "select sum(case when ssn = '{}' then 1 else 0 end) from customers", ROWS[0].ssn, '000-00-0000'],
      ['starts_with()', "select count(*) from customers where starts_with(email, '{}')", 'ada', 'zed'],
      ['HAVING', "select count(*) from customers having max(ssn) = '{}'", ROWS[2].ssn, '999-99-9999'],
      ['a join condition', "select count(*) from customers a join customers b on a.id = b.id and b.ssn = '{}'", ROWS[1].ssn, '000-00-0000'],
      ['a comparison', "select count(*) from customers where ssn < '{}'", '~', '!'],
    ];
    it.each(cases)('%s: %s', async (_what, template, yes, no) => {
      const [t, f] = [template.replace('{}', yes), template.replace('{}', no)];
      expect(direct(t), 'directly, the guesses are told apart').not.toBe(direct(f));
      const [rt, rf] = [await agent(t), await agent(f)];
      // a message may quote the statement, and so the guess: that tells nothing
      const answer = (r: AgentResult, guess: string) => `${r.stdout}\n${r.stderr.split(guess).join('<guess>')}`;
      expect(answer(rt, yes)).toBe(answer(rf, no));
      expectRefused(rt, /\b(ssn|email)\b/);
    });
  });

  describe('every other path: masked or refused, never raw', () => {
    /** refused (any ERROR), or exactly the direct output masked in place */
    async function maskedOrRefused(sql: string | string[]): Promise<void> {
      const want = direct(sql);
      expect(leaks(want), 'the statement reads covered values').not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      if (errors(r).length) expect(errors(r)[0]).toMatch(/ERROR:\s+42501:/);
      else expect(r.stdout).toBe(maskedInPlace(want));
    }
    it('DECLARE CURSOR + FETCH', () =>
      maskedOrRefused(['BEGIN', 'DECLARE cur CURSOR FOR SELECT id, name, ssn, email FROM customers ORDER BY id', 'FETCH ALL FROM cur', 'COMMIT']));
    it('DECLARE CURSOR of an expression + FETCH', () =>
      maskedOrRefused(['BEGIN', "DECLARE cur CURSOR FOR SELECT ssn || '' FROM customers", 'FETCH ALL FROM cur', 'COMMIT']));
    it('PREPARE + EXECUTE in SQL', () =>
      maskedOrRefused(['PREPARE p AS SELECT id, name, ssn, email FROM customers ORDER BY id', 'EXECUTE p', 'EXECUTE p']));
    it('PREPARE + EXECUTE in SQL of an expression', () =>
      maskedOrRefused(['PREPARE p(text) AS SELECT ssn || $1 FROM customers', "EXECUTE p('')"]));
    it('a field of the row value', () => maskedOrRefused('select (c).ssn, name from customers c order by id'));
    it('COPY (query) TO STDOUT', () => maskedOrRefused('COPY (SELECT id, name, ssn, email FROM customers ORDER BY id) TO STDOUT'));
    it('COPY (query with an alias) TO STDOUT', () => maskedOrRefused('COPY (SELECT ssn AS x FROM customers) TO STDOUT (FORMAT csv)'));
    it('COPY customers TO STDOUT', () => maskedOrRefused('COPY customers TO STDOUT'));
    it('COPY customers (columns) TO STDOUT csv', () => maskedOrRefused('COPY customers (id, ssn, email) TO STDOUT (FORMAT csv)'));

    it('pg_stats after ANALYZE shows no raw value', async () => {
      for (const sql of [
        "select most_common_vals::text, histogram_bounds::text from pg_stats where tablename = 'customers' and attname = 'ssn'",
        "select * from pg_stats where attname in ('ssn', 'email')",
      ]) {
        expect(leaks(direct(sql)), `directly, ${sql} shows the values`).not.toEqual([]);
        const r = await agent(sql);
        expect(leaks(r.stdout + r.stderr)).toEqual([]);
      }
    });
  });

  describe('a card number inside a row value or an array is caught by the detector or refused', () => {
    const cases = [
      'select row_to_json(t) from (select id, card from customers) t',
      'select t from (select id, name, card from customers) t',
      'select t::text from (select id, card from customers) t',
      'select array_agg(card) from customers',
      'select json_agg(card) from customers',
      'select array[card, name] from customers',
      "select string_agg(card, ';') from customers",
    ];
    it.each(cases)('%s', async (sql) => {
      expect(leaks(direct(sql))).not.toEqual([]);
      const r = await agent(sql);
      expect(leaks(r.stdout + r.stderr)).toEqual([]);
      if (errors(r).length) expect(errors(r)[0]).toMatch(/ERROR:\s+42501:/);
      else expect(r.stdout).toContain(REDACTED);
    });
  });

  describe('client libraries executing the same prepared statement again and again', () => {
    const ids = [1, 2, 3, 1, 2, 3];
    const row = (id: number) => ROWS[id - 1];
    const expectNoLeak = (r: ClientRun) => {
      const leakedAt = r.answers.flatMap((a, i) => (leaks(JSON.stringify(a)).length ? [i + 1] : []));
      expect(leaks(r.seen), `raw values in executions ${leakedAt.join(', ')} of ${r.answers.length}`).toEqual([]);
      expect(r.stderr, 'the client ran to the end').toBe('');
      expect(r.answers).toHaveLength(ids.length);
    };
    const refused = (a: ClientAnswer, column: RegExp) => {
      expect(a.error?.code, JSON.stringify(a)).toBe('42501');
      expect(a.error?.message).toMatch(column);
    };

    it.each(CLIENT_LIBS)('%s: a plain select is masked every time, unmasked columns exact', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: 'select id, name, email, ssn, card, note from customers where id = $1', params: [id] })));
      expectNoLeak(r);
      r.answers.forEach((a, i) => {
        const c = row(ids[i]);
        expect(a).toEqual({ rows: [[String(c.id), c.name, REDACTED, REDACTED, REDACTED, c.note]] });
      });
    });

    it.each(CLIENT_LIBS)('%s: aliases are masked every time', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: 'select ssn as x, email as y, name as z from customers where id = $1', params: [id] })));
      expectNoLeak(r);
      r.answers.forEach((a, i) => expect(a).toEqual({ rows: [[REDACTED, REDACTED, row(ids[i]).name]] }));
    });

    it.each(CLIENT_LIBS)('%s: a subquery over the whole table is masked every time', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: 'select s, n from (select ssn as s, name as n, id from customers) t where id <= $1 order by id', params: [id] })));
      expectNoLeak(r);
      r.answers.forEach((a, i) => expect(a).toEqual({ rows: ROWS.slice(0, ids[i]).map((c) => [REDACTED, c.name]) }));
    });

    it.each(CLIENT_LIBS)('%s: an expression is refused every time', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: "select upper(email) || '' as e, name from customers where id = $1", params: [id] })));
      expectNoLeak(r);
      for (const a of r.answers) refused(a, /\bemail\b/);
    });

    it.each(CLIENT_LIBS)('%s: a whole-row value is refused every time', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: 'select row_to_json(c) from customers c where id = $1', params: [id] })));
      expectNoLeak(r);
      for (const a of r.answers) refused(a, /\b(ssn|email)\b/);
    });

    it.each(CLIENT_LIBS)('%s: a cast whose error would quote the value is refused every time', async (lib) => {
      const r = await client(lib, ids.map((id) => ({ sql: 'select ssn::int from customers where id = $1', params: [id] })));
      expectNoLeak(r);
      for (const a of r.answers) refused(a, /\bssn\b/);
    });

    it.each(CLIENT_LIBS)('%s: a parameterised guess answers the same when true and when false', async (lib) => {
      const guesses = [ROWS[0].ssn, '000-00-0000', ROWS[1].ssn, '111-11-1111', ROWS[2].ssn, '222-22-2222'];
      const r = await client(lib, guesses.map((g) => ({ sql: 'select count(*) from customers where ssn = $1', params: [g] })));
      expectNoLeak(r);
      for (const a of r.answers) expect(a).toEqual(r.answers[0]);
      refused(r.answers[0], /\bssn\b/);
    });

    it.each(CLIENT_LIBS)('%s: masked, refused and unmasked statements interleaved on one connection', async (lib) => {
      const plain = 'select id, name, ssn from customers where id = $1';
      const expr = 'select lower(ssn) from customers where id = $1';
      const names = 'select name, note from customers where id = $1';
      const statements = ids.flatMap((id) => [{ sql: plain, params: [id] }, { sql: expr, params: [id] }, { sql: names, params: [id] }]);
      const r = await client(lib, statements);
      const leakedAt = r.answers.flatMap((a, i) => (leaks(JSON.stringify(a)).length ? [i + 1] : []));
      expect(leaks(r.seen), `raw values in statements ${leakedAt.join(', ')} of ${r.answers.length}`).toEqual([]);
      expect(r.answers).toHaveLength(statements.length);
      ids.forEach((id, i) => {
        const c = row(id);
        expect(r.answers[3 * i]).toEqual({ rows: [[String(id), c.name, REDACTED]] });
        refused(r.answers[3 * i + 1], /\bssn\b/);
        expect(r.answers[3 * i + 2]).toEqual({ rows: [[c.name, c.note]] });
      });
    });
  });
});
