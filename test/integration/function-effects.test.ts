/**
 * Function effects as a property, against a real PostgreSQL 15's catalog. Under a
 * read-only policy (DDL denied, SELECT on public.* for reading, writes held, SET and
 * transactions allowed), calls of functions picked at random from pg_proc, in random
 * places of a SELECT, are decided on their text with the effects read from the live
 * catalog (the statements are never run, so the arguments need not fit any overload):
 *
 *   - whatever the engine allows calls only names whose every overload is STABLE or
 *     IMMUTABLE, or that are listed as harmless volatile built-ins (HARMLESS_VOLATILE);
 *   - a name with a volatile overload that is not listed is refused, naming it;
 *   - reads stay reads: a name with no volatile overload, or a listed one, is allowed.
 *
 * The oracle is pg_proc as the superuser reads it, not the engine's own catalog query.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { PostgresTargetDef } from '../../src/config/types.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { catalogFunctionEffects, harmless as isHarmless, HARMLESS_VOLATILE } from '../../src/policy/function-effects.js';
import { RuleSet } from '../../src/policy/rules.js';
import { fetchCatalog } from '../../src/protocols/postgres/catalog-fetch.js';
import { sqlPolicies, READ_ONLY_RULES } from '../helpers/policies.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

const HOST = '127.0.0.47';



/** STABLE in pg_proc, yet each assigns a transaction id: refused all the same */
const ASSIGNS_XID = ['pg_catalog.txid_current', 'pg_catalog.pg_current_xact_id'];

/** where a call may stand in a read-only statement */
const SHAPES: ((call: string) => string)[] = [
  (c) => `SELECT ${c}`,
  (c) => `SELECT 1 FROM public.flags WHERE ${c} IS NOT NULL`,
  (c) => `SELECT * FROM (SELECT ${c} AS x) AS t`,
  (c) => `WITH w AS (SELECT ${c} AS x) SELECT x FROM w`,
  (c) => `SELECT pg_catalog.concat(${c}, 'x')`,
  (c) => `SELECT * FROM ${c} AS f`,
  (c) => `VALUES (${c})`,
];
const ARGUMENTS = ['1', "'x'", 'NULL', 'true', '2.5', 'ARRAY[1, 2]', "'{}'::jsonb", "'public.flags'"];

describe('a read-only policy runs no function that may write', () => {
  let server: TestPostgres;
  let root = '';
  let rules: RuleSet;
  let effects: ReturnType<typeof catalogFunctionEffects>;
  /** "schema.name" → the volatilities of its overloads, as pg_proc says */
  const volatility = new Map<string, Set<string>>();
  let names: string[] = [];

  beforeAll(async () => {
    await initAnalysis();
    root = mkdtempSync('/tmp/interlock-function-effects-');
    chmodSync(root, 0o755);
    server = startPostgres(join(root, 'pg'), { host: HOST });
    server.superSql(`SET ROLE app;
      CREATE TABLE flags (id int, v int);
      CREATE FUNCTION bump() RETURNS int LANGUAGE sql VOLATILE AS 'UPDATE flags SET v = v + 1 RETURNING v';
      CREATE FUNCTION peek() RETURNS int LANGUAGE sql STABLE AS 'SELECT v FROM flags';
      CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';`);
    const rows = server.superSql(`SELECT n.nspname || '.' || p.proname, p.provolatile FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('pg_catalog', 'public')`);
    for (const line of rows.trim().split('\n')) {
      const bar = line.lastIndexOf('|');
      const name = line.slice(0, bar);
      if (!volatility.has(name)) volatility.set(name, new Set());
      volatility.get(name)!.add(line.slice(bar + 1));
    }
    names = [...volatility.keys()].sort();

    const secret = join(root, 'upstream-password');
    writeFileSync(secret, server.password, { mode: 0o600 });
    const target: PostgresTargetDef = {
      name: 'db', protocol: 'postgres', address: { host: HOST, port: 5432 },
      upstream: { host: HOST, port: 5432, user: 'app', password: { file: secret }, database: 'orders' },
    };
    const catalog = await fetchCatalog(target, { database: 'orders', timeoutMs: 10_000 });
    effects = catalogFunctionEffects(catalog.lineage!);
    rules = new RuleSet(sqlPolicies(READ_ONLY_RULES, ''));
  });
  afterAll(() => {
    server?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** HARMLESS_VOLATILE (and its prefixes) lists built-ins by bare name */
  const harmless = (qualified: string) => qualified.startsWith('pg_catalog.') && isHarmless(qualified.slice('pg_catalog.'.length));
  // a function outside pg_catalog may always write: a STABLE one may call a volatile one
  const mayWrite = (qualified: string) =>
    !qualified.startsWith('pg_catalog.') || (volatility.get(qualified)!.has('v') && !harmless(qualified)) || ASSIGNS_XID.includes(qualified);

  /** the call as text: the name always quoted (every catalog name parses so), the arguments whatever was drawn */
  const callOf = (qualified: string, args: string[]) => {
    const dot = qualified.indexOf('.');
    return `${qualified.slice(0, dot)}."${qualified.slice(dot + 1).replace(/"/g, '""')}"(${args.join(', ')})`;
  };

  function check(qualified: string, sql: string): void {
    const v = rules.decideText(sql, undefined, effects);
    const name = qualified.slice(qualified.indexOf('.') + 1);
    if (mayWrite(qualified)) {
      expect(v.decision.action, `${sql} (${[...volatility.get(qualified)!].join('')}) must be refused`).not.toBe('allow');
      expect(v.decision.message, sql).toContain(name);
      if (!ASSIGNS_XID.includes(qualified)) expect(v.kinds, sql).toContain('function_write');
    } else if (name === 'set_config') {
      // a SET of its own kind, decided by the rules for SET (a setting name that is not a literal is refused)
      expect(v.kinds, sql).not.toContain('function_write');
    } else {
      expect(v.decision, `${sql} (${[...volatility.get(qualified)!].join('')}) reads only`).toMatchObject({ action: 'allow' });
    }
  }

  it('reads the catalog it judges by: both kinds of function are there', () => {
    expect(names.filter((n) => volatility.get(n)!.has('v')).length).toBeGreaterThan(100);
    expect(names.filter((n) => !volatility.get(n)!.has('v')).length).toBeGreaterThan(1000);
    for (const n of ['pg_catalog.nextval', 'pg_catalog.setval', 'pg_catalog.lo_create', 'pg_catalog.pg_advisory_lock', 'pg_catalog.pg_notify', 'public.bump']) {
      expect(mayWrite(n), n).toBe(true);
    }
    for (const n of ['pg_catalog.random', 'pg_catalog.clock_timestamp', 'pg_catalog.gen_random_uuid']) {
      expect(harmless(n), n).toBe(true);
      expect(HARMLESS_VOLATILE.has(n.slice('pg_catalog.'.length)), n).toBe(true);
    }
  });

  it('every function name, called plainly', () => {
    for (const n of names) check(n, `SELECT ${callOf(n, [])}`);
  });

  it('random names, arguments and places in the statement', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...names),
        fc.array(fc.constantFrom(...ARGUMENTS), { maxLength: 3 }),
        fc.integer({ min: 0, max: SHAPES.length - 1 }),
        (qualified, args, shape) => check(qualified, SHAPES[shape]!(callOf(qualified, args))),
      ),
      { numRuns: 3000 },
    );
  });
});
