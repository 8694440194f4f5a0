/**
 * Masking as a property: random statements over a small schema with a masked column
 * (nested aliases, subqueries, CTEs, views, expressions, functions, aggregates, windows,
 * predicates, set operations, whole-row values, cursors, SQL PREPARE) run through the real
 * PostgresSession against a real PostgreSQL 15, with node-postgres over the simple,
 * extended and named-statement paths.
 *
 * The oracle is non-interference: two databases identical but for the masked values
 * (different text, lengths, order, castability) must give the agent the very same answers
 * (rows, errors with every field, notices) for every statement; and no raw masked value
 * (or a long piece of it, its hex, base64 or md5) may appear in any answer. A statement
 * that never touches the masked column must answer byte-identically to a direct connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { RuleSet } from '../../src/policy/rules.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { compileMasking } from '../../src/masking/plan.js';
import type { PostgresTargetDef } from '../../src/config/types.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';
import { sqlPolicies } from '../helpers/policies.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

const HOST = '127.0.0.44';
const RULES = '      - { action: allow, match: { statements: [select, set, transaction, other] } }';
const MASKING = '      - { columns: [secret], strategy: redact }';

/** the masked values of each database: unlike in text, length, order and whether they cast to int */
const SECRETS = {
  orders: ['Qz7kWv-PLUM-4411', 'Jx3mTr-FIG-9027', 'Hb8nYc-KIWI-5163'],
  orders_twin: ['0000042', 'zz', 'Aq9-Vx7-Lm3-Rt5-Wz1-Ky'],
} as const;
type Db = keyof typeof SECRETS;

function schema(secrets: readonly string[]): string {
  const names = ['Ada Lovelace', 'Alan Turing', 'Grace Hopper'];
  const notes = ['vip', 'prefers post', 'none'];
  return `
    CREATE TABLE t (id int primary key, name text, secret text, note text);
    INSERT INTO t VALUES ${secrets.map((s, i) => `(${i + 1}, '${names[i]}', '${s}', '${notes[i]}')`).join(', ')};
    CREATE TABLE u (id int primary key, t_id int, label text);
    INSERT INTO u VALUES (1, 1, 'alpha'), (2, 3, 'beta'), (3, 3, 'gamma');
    CREATE VIEW v AS SELECT id, secret AS hidden, name FROM t;
    CREATE FUNCTION peek(int) RETURNS text LANGUAGE sql STABLE AS 'SELECT secret FROM t WHERE id = $1';`;
}

/** everything that would show a secret: long pieces of it (any case, reversed), its hex, base64 and md5 */
function leakForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const s of secrets) {
    for (const v of [s, [...s].reverse().join('')]) {
      if (v.length < 6) continue;
      for (let i = 0; i + 6 <= v.length; i++) forms.add(v.slice(i, i + 6).toLowerCase());
    }
    forms.add(Buffer.from(s).toString('hex'));
    if (s.length >= 6) forms.add(Buffer.from(s).toString('base64').replace(/=+$/, '').toLowerCase());
    forms.add(createHash('md5').update(s).digest('hex'));
  }
  return [...forms];
}
const leaksIn = (db: Db, answer: string) => {
  const a = answer.toLowerCase();
  return leakForms(SECRETS[db].filter((s) => s.length >= 6)).filter((f) => a.includes(f));
};

// ---------------------------------------------------------------------------------------
// Statements, built from a list of choices (shrinking the list simplifies the statement)

class Choices {
  private i = 0;
  constructor(private readonly xs: readonly number[]) {}
  pick<T>(options: readonly T[]): T {
    return options[(this.xs[this.i++] ?? 0) % options.length]!;
  }
  chance(outOf: number): boolean {
    return this.pick(Array.from({ length: outOf }, (_, k) => k === outOf - 1));
  }
}

/** a FROM item: its text, the columns it offers (qualified), and whether its whole row may be named */
interface Source { sql: string; cols: string[]; rows: string[] }
interface Query { sql: string; outs: string[] }

class Gen {
  private n = 0;
  /** clean: nothing may come from the masked column (no secret, no whole row of t or v, no peek) */
  constructor(private readonly c: Choices, private readonly clean: boolean) {}

  private alias(prefix: string): string {
    return `${prefix}${++this.n}`;
  }

  base(): Source {
    const a = this.alias('a');
    const t = this.clean ? ['id', 'name', 'note'] : ['id', 'name', 'secret', 'note'];
    const v = this.clean ? ['id', 'name'] : ['id', 'hidden', 'name'];
    const [rel, cols, wholeRowOk] = this.c.pick([['t', t, !this.clean], ['v', v, !this.clean], ['u', ['id', 't_id', 'label'], true], ['t', t, !this.clean]] as const);
    return { sql: `${rel} ${a}`, cols: cols.map((x) => `${a}.${x}`), rows: wholeRowOk ? [a] : [] };
  }

  from(depth: number): Source {
    const kind = depth > 0 ? this.c.pick(['base', 'sub', 'join', 'base', 'sub']) : 'base';
    if (kind === 'sub') {
      const q = this.query(depth - 1);
      const s = this.alias('s');
      return { sql: `(${q.sql}) ${s}`, cols: q.outs.map((o) => `${s}.${o}`), rows: [s] };
    }
    if (kind === 'join') {
      const [l, r] = [this.from(depth - 1), this.from(depth - 1)];
      const on = this.c.pick([`${this.col(l)} = ${this.col(r)}`, 'true', `${this.col(l)}::text = ${this.col(r)}::text`]);
      const join = this.c.pick(['JOIN', 'LEFT JOIN', 'CROSS JOIN']);
      return { sql: `${l.sql} ${join} ${r.sql}${join === 'CROSS JOIN' ? '' : ` ON ${on}`}`, cols: [...l.cols, ...r.cols], rows: [...l.rows, ...r.rows] };
    }
    return this.base();
  }

  col(s: Source): string {
    return s.cols.length ? this.c.pick(s.cols) : "'lit'";
  }

  /** a column for text functions: ids only now and then (a type error says nothing) */
  textCol(s: Source): string {
    const text = s.cols.filter((c) => !/\.(t_)?id$/.test(c));
    return text.length && !this.c.chance(5) ? this.c.pick(text) : this.col(s);
  }

  expr(s: Source, depth: number): string {
    const leaf = () => this.c.pick([this.textCol(s), this.textCol(s), this.textCol(s), "'lit'", '42', ...(this.clean ? [] : ['peek(1)'])]);
    if (depth <= 0) return leaf();
    const e = () => this.expr(s, depth - 1);
    const wrap = this.c.pick([
      () => leaf(), () => leaf(),
      () => `${e()} || 'x'`, () => `upper(${e()})`, () => `lower(${e()})`, () => `reverse(${e()})`, () => `md5(${e()})`,
      () => `length(${e()})`, () => `substr(${e()}, 2, 8)`, () => `(${e()})::bytea`, () => `encode(convert_to(${e()}, 'UTF8'), 'base64')`,
      () => `(${e()})::int`, () => `coalesce(${e()}, 'z')`, () => `case when ${this.pred(s, depth - 1)} then 'yes' else 'no' end`,
      () => `format('%s!', ${e()})`, () => `concat(${e()}, '')`, () => `quote_literal(${e()})`, () => `translate(${e()}, 'abcQz', 'xyz01')`,
      () => `replace(${e()}, '-', '')`, () => `left(${e()}, 7)`, () => `to_jsonb(${e()})::text`, () => `array[${e()}]::text`,
      () => `row(${e()}, 1)::text`, () => `json_build_object('k', ${e()})::text`, () => `(${e()})::varchar`, () => `nullif(${e()}, 'q')`,
      () => `greatest(${e()}, 'A')`, () => `(${e()})::date`, () => `(${e()})::numeric`, () => `split_part(${e()}, '-', 2)`,
      () => `(select max(z.${this.clean ? 'name' : 'secret'}) from t z)`,
      () => `(select z.${this.clean ? 'note' : 'secret'} from t z where z.id = 2)`,
      ...s.rows.map((r) => () => this.c.pick([`row_to_json(${r})::text`, `${r}::text`, `to_jsonb(${r}) ->> 'secret'`])),
    ]);
    return wrap();
  }

  pred(s: Source, depth: number): string {
    const e = () => this.expr(s, depth);
    return this.c.pick([
      () => `${e()} = 'lit'`, () => `${e()}::text like 'Q%'`, () => `${e()}::text > 'M'`, () => `${e()} is not null`,
      () => `${e()}::text in ('zz', 'lit')`, () => `starts_with(${e()}::text, 'H')`, () => `${e()}::text ~ '^[0-9]'`,
      () => `length(${e()}::text) > 10`, () => `exists (select 1 from t z where z.${this.clean ? 'name' : 'secret'} like 'J%')`,
      () => `${this.col(s)}::text <> ''`,
    ])();
  }

  item(s: Source, depth: number, k: number): string {
    const out = `o${k}`;
    return this.c.pick([
      () => `${this.expr(s, depth)} AS ${out}`, () => `${this.expr(s, depth)} AS ${out}`, () => `${this.col(s)} AS ${out}`,
      () => `${this.c.pick(['max', 'min'])}(${this.expr(s, depth)}) AS ${out}`, () => `string_agg((${this.expr(s, depth)})::text, ',') AS ${out}`,
      () => `array_agg(${this.expr(s, depth)})::text AS ${out}`, () => `json_agg(${this.expr(s, depth)})::text AS ${out}`,
      () => `count(distinct ${this.expr(s, depth)}) AS ${out}`,
      () => `row_number() over (order by ${this.expr(s, depth)}) AS ${out}`, () => `lag(${this.expr(s, depth)}) over (order by 1) AS ${out}`,
      ...s.rows.map((r) => () => `${this.c.pick([`row_to_json(${r})::text`, `${r}::text`, r])} AS ${out}`),
    ])();
  }

  select(depth: number): Query {
    const s = this.from(depth);
    const star = this.c.chance(6) && (s.rows.length > 0);
    const outs = star ? [] : ['o1', ...(this.c.chance(2) ? ['o2'] : []), ...(this.c.chance(3) ? ['o3'] : [])];
    const items = star ? `${this.c.pick(s.rows)}.*` : outs.map((_, k) => this.item(s, depth, k + 1)).join(', ');
    // a star's columns are not named here: the outer query can only use its whole row
    const distinct = this.c.chance(8) ? 'DISTINCT ' : '';
    let sql = `SELECT ${distinct}${items} FROM ${s.sql}`;
    if (this.c.chance(3)) sql += ` WHERE ${this.pred(s, depth)}`;
    if (this.c.chance(6)) sql += ` GROUP BY ${this.expr(s, 0)}`;
    if (this.c.chance(4)) sql += ` ORDER BY ${this.expr(s, depth)}`;
    if (this.c.chance(6)) sql += ' LIMIT 2';
    return { sql, outs };
  }

  query(depth: number): Query {
    const kind = this.c.pick(['select', 'select', 'select', 'cte', 'union']);
    if (kind === 'cte') {
      const inner = this.query(Math.max(0, depth - 1));
      const w = this.alias('w');
      const s: Source = { sql: w, cols: inner.outs.map((o) => `${w}.${o}`), rows: [w] };
      const outs = ['o1'];
      return { sql: `WITH ${w} AS (${inner.sql}) SELECT ${this.item(s, depth, 1)} FROM ${s.sql}`, outs };
    }
    if (kind === 'union') {
      const one = () => {
        const s = this.from(Math.max(0, depth - 1));
        return `SELECT (${this.expr(s, depth)})::text AS o1 FROM ${s.sql}`;
      };
      return { sql: `${one()} ${this.c.pick(['UNION ALL', 'UNION', 'INTERSECT', 'EXCEPT'])} ${one()}`, outs: ['o1'] };
    }
    return this.select(depth);
  }

  /** one thing the agent sends: a query, or a cursor / SQL PREPARE around one */
  statement(): { sql: string; wrapped: boolean } {
    const q = this.query(this.c.pick([0, 1, 2, 1, 3])).sql;
    return this.c.pick([
      () => ({ sql: q, wrapped: false }), () => ({ sql: q, wrapped: false }), () => ({ sql: q, wrapped: false }),
      () => ({ sql: `BEGIN; DECLARE k CURSOR FOR ${q}; FETCH ALL FROM k; COMMIT`, wrapped: true }),
      () => ({ sql: `PREPARE pq AS ${q}; EXECUTE pq; DEALLOCATE pq`, wrapped: true }),
    ])();
  }
}

const choices = fc.array(fc.nat({ max: 1000 }), { minLength: 0, maxLength: 200, size: 'max' });
const path = fc.constantFrom('simple', 'extended', 'named') as fc.Arbitrary<Path>;
type Path = 'simple' | 'extended' | 'named';

// ---------------------------------------------------------------------------------------
// The session under test, and what the agent gets back

const raw = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

/** What came back for one statement, every field that could carry data, as one string. */
async function answer(client: pg.Client, sql: string, p: Path, notices: string[]): Promise<string> {
  notices.length = 0;
  let out: unknown;
  try {
    // a named statement is named after its text: the same name prepares once, then is reused
    const name = `p${createHash('md5').update(sql).digest('hex').slice(0, 16)}`;
    const q: pg.QueryConfig & { queryMode?: string } = p === 'simple' ? { text: sql } : p === 'extended' ? { text: sql, queryMode: 'extended' } : { text: sql, name };
    const r = (await client.query({ ...q, rowMode: 'array', types: raw } as pg.QueryArrayConfig)) as unknown as pg.QueryArrayResult | pg.QueryArrayResult[];
    out = [r].flat().map((x) => ({ fields: x.fields?.map((f) => f.name), rows: x.rows, command: x.command, count: x.rowCount }));
  } catch (e) {
    const { code, message, detail, hint, where, position, internalQuery, column, table, dataType, constraint } = e as pg.DatabaseError;
    out = { error: { code, message, detail, hint, where, position, internalQuery, column, table, dataType, constraint } };
  }
  return JSON.stringify({ out, notices });
}

interface Agent { client: pg.Client; notices: string[] }

describe('masking as a property: random statements through the real session and a real PostgreSQL 15', () => {
  let root = '';
  let pgServer: TestPostgres;
  const servers: Server[] = [];
  const ports: Record<Db, number> = { orders: 0, orders_twin: 0 };
  const agents = new Map<string, Agent>();

  async function connect(port: number, database: string, user = 'agent', password?: string): Promise<Agent> {
    const client = new pg.Client({ host: HOST, port, user, database, password });
    const a: Agent = { client, notices: [] };
    client.on('notice', (n) => a.notices.push(JSON.stringify({ message: n.message, detail: n.detail, hint: n.hint })));
    client.on('error', () => {});
    await client.connect();
    await client.query("SET statement_timeout = '3s'");
    return a;
  }

  /** one connection per database and side, made again when the last one ended */
  async function agent(key: string, make: () => Promise<Agent>): Promise<Agent> {
    let a = agents.get(key);
    if (!a || (a.client as unknown as { _ending?: boolean; _queryable?: boolean })._queryable === false) {
      a = await make();
      agents.set(key, a);
    }
    return a;
  }
  const viaProxy = (db: Db) => agent(`proxy:${db}`, () => connect(ports[db], db));
  const direct = (db: Db) => agent(`direct:${db}`, () => connect(5432, db, 'app', pgServer.password));

  /** the statement's answer on one connection (a named statement runs twice: prepared, then reused) */
  async function run(a: Agent, sql: string, p: Path, wrapped: boolean): Promise<string> {
    const path: Path = wrapped ? 'simple' : p; // several statements go by the simple protocol only
    const answers = [await answer(a.client, sql, path, a.notices)];
    if (path === 'named') answers.push(await answer(a.client, sql, path, a.notices));
    if (wrapped) {
      await a.client.query('ROLLBACK').catch(() => {});
      await a.client.query('DEALLOCATE pq').catch(() => {});
    }
    return answers.join('\n');
  }

  beforeAll(async () => {
    await initAnalysis();
    root = mkdtempSync('/tmp/interlock-masking-property-');
    chmodSync(root, 0o755);
    pgServer = startPostgres(join(root, 'pg'), { host: HOST });
    pgServer.superSql('CREATE DATABASE orders_twin OWNER app;');
    const secretFile = join(root, 'upstream-password');
    writeFileSync(secretFile, pgServer.password, { mode: 0o600 });
    const policies = sqlPolicies(RULES, MASKING);
    for (const db of Object.keys(SECRETS) as Db[]) {
      const owner = new pg.Client({ host: HOST, port: 5432, user: 'app', password: pgServer.password, database: db });
      await owner.connect();
      await owner.query('DROP TABLE IF EXISTS customers');
      await owner.query(schema(SECRETS[db]));
      await owner.end();
      const target: PostgresTargetDef = {
        name: db, protocol: 'postgres', address: { host: HOST, port: 5432 },
        upstream: { host: HOST, port: 5432, user: 'app', password: { file: secretFile }, database: db },
      };
      const server = createServer((client) => {
        client.on('error', () => {});
        new PostgresSession({
          client, target, judge: new RuleSet(policies), masker: compileMasking(policies.flatMap((p) => p.masking)),
          hooks: {
            audit: () => {}, auditSerialized: () => {}, startRecording: () => NOT_RECORDED, cancel: () => {},
            registerCancelKey: () => ({ processId: 1, secretKey: 2 }), closed: () => {},
          },
        });
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, HOST, r));
      ports[db] = (server.address() as AddressInfo).port;
    }
  });

  afterAll(async () => {
    for (const a of agents.values()) await a.client.end().catch(() => {});
    for (const s of servers) s.close();
    pgServer?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('the two databases differ directly, so the oracle can see a leak', async () => {
    const sql = 'SELECT secret FROM t ORDER BY id';
    const [a, b] = [await run(await direct('orders'), sql, 'simple', false), await run(await direct('orders_twin'), sql, 'simple', false)];
    expect(a).not.toBe(b);
    expect(leaksIn('orders', a)).not.toEqual([]);
    // and through the proxy a plain read is masked in both
    const [pa, pb] = [await run(await viaProxy('orders'), sql, 'simple', false), await run(await viaProxy('orders_twin'), sql, 'simple', false)];
    expect(leaksIn('orders', pa)).toEqual([]);
    expect(pa).toBe(pb);
  });

  it('no statement tells the masked values apart, or shows them', async () => {
    await fc.assert(
      fc.asyncProperty(choices, path, async (xs, p) => {
        const { sql, wrapped } = new Gen(new Choices(xs), false).statement();
        const a = await run(await viaProxy('orders'), sql, p, wrapped);
        const b = await run(await viaProxy('orders_twin'), sql, p, wrapped);
        expect(leaksIn('orders', a), `${p}: ${sql}\n=> ${a}`).toEqual([]);
        expect(leaksIn('orders_twin', b), `${p}: ${sql}\n=> ${b}`).toEqual([]);
        expect(a, `${p}: ${sql}\n(the twin database answered otherwise)`).toBe(b);
      }),
      { numRuns: 300, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: false },
    );
  }, 300_000);

  it('a statement that never touches the masked column answers byte-identically to a direct connection', async () => {
    await fc.assert(
      fc.asyncProperty(choices, path, async (xs, p) => {
        const { sql, wrapped } = new Gen(new Choices(xs), true).statement();
        const proxied = await run(await viaProxy('orders'), sql, p, wrapped);
        const plain = await run(await direct('orders'), sql, p, wrapped);
        expect(proxied, `${p}: ${sql}`).toBe(plain);
      }),
      { numRuns: 200, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: false },
    );
  }, 300_000);
});
