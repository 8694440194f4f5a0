/**
 * search_path through a real PostgresSession (no redirect, no BPF) to a real PostgreSQL 15 on
 * 127.0.0.42: psql changing the path and the policy reading names under it, and the real
 * pg_dump, which empties the path first, dumping a table and the whole database with a
 * masked column masked in its COPY data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { compileMasking } from '../../src/masking/plan.js';
import type { PostgresTargetDef } from '../../src/config/types.js';
import type { RuleSet } from '../../src/policy/rules.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { sqlRules } from '../helpers/policies.js';

const HOST = '127.0.0.42';
const PG_BIN = ['/usr/lib/postgresql/15/bin', '/usr/bin'].find((d) => existsSync(join(d, 'pg_dump')))!;
const SSNS = ['078-05-1120', '219-09-9999'];
/** the server runs as user postgres */
const canRun = process.getuid?.() === 0;

let dir: string;
let pg: TestPostgres;
const servers: Server[] = [];

/** A proxy on 127.0.0.42 whose sessions are judged by `rules` and masked by `ssn: redact`. */
async function proxy(rules: RuleSet): Promise<number> {
  const target: PostgresTargetDef = {
    name: 'orders', protocol: 'postgres', address: { host: HOST, port: 5432 },
    upstream: { host: pg.host, port: pg.port, user: pg.user, database: pg.database, password: { file: join(dir, 'app.pw') } },
  };
  const masker = compileMasking([{ columns: ['ssn'], strategy: 'redact' }]);
  const server = createServer((client) => {
    new PostgresSession({
      client, target, judge: rules, masker,
      hooks: {
        audit: () => {}, auditSerialized: () => {}, startRecording: () => NOT_RECORDED,
        cancel: () => {}, registerCancelKey: () => ({ processId: 1, secretKey: 2 }), closed: () => {},
      },
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return (server.address() as AddressInfo).port;
}

/** Runs a client binary to completion (asynchronously: the proxy runs in this process). */
function run(bin: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(PG_BIN, bin), args, { env: { ...process.env, PGCONNECT_TIMEOUT: '10' }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as NodeJS.ErrnoException).code ?? 1) || 1 : 0, stdout, stderr });
    });
  });
}

/** psql, one -c (one simple Query) per statement, going on after an error */
const psql = (port: number, statements: string[]) =>
  run('psql', ['-h', HOST, '-p', String(port), '-U', 'agent', '-d', 'orders', '-X', '-At', ...statements.flatMap((s) => ['-c', s])]);

beforeAll(async () => {
  await initAnalysis();
  if (!canRun) return;
  dir = mkdtempSync('/tmp/interlock-searchpath-');
  chmodSync(dir, 0o755); // the server runs as postgres
  pg = startPostgres(join(dir, 'pg'), { host: HOST });
  writeFileSync(join(dir, 'app.pw'), pg.password);
  pg.superSql(`SET ROLE app;
    ALTER TABLE customers ADD COLUMN ssn text;
    UPDATE customers SET ssn = CASE id WHEN 1 THEN '${SSNS[0]}' ELSE '${SSNS[1]}' END;
    CREATE SCHEMA private;
    CREATE TABLE private.secrets (id int, secret text);
    INSERT INTO private.secrets VALUES (1, 'private-secret-value');
    CREATE TABLE public.secrets (id int, secret text);
    INSERT INTO public.secrets VALUES (1, 'public-secret-value');`);
}, 120_000);

afterAll(() => {
  for (const s of servers) s.close();
  pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const SESSION_RULES = `
      - { action: allow, match: { statements: [set, transaction, other] } }`;

describe.skipIf(!canRun)('search_path through interlock', () => {
  it('a SET search_path is followed: an unqualified name is read in the schema it now resolves to', async () => {
    const publicOnly = await proxy(sqlRules(`${SESSION_RULES}
      - { action: allow, match: { statements: [select], relations: ["public.*"] } }`));
    const r = await psql(publicOnly, ['set search_path = private', 'show search_path', 'select secret from secrets', 'select secret from public.secrets']);
    expect(r.stdout).toContain('private');
    expect(r.stdout).not.toContain('private-secret-value');
    expect(r.stderr).toContain('interlock: no rule allows this SELECT statement');
    expect(r.stdout).toContain('public-secret-value'); // qualified names are unaffected

    const privateOnly = await proxy(sqlRules(`${SESSION_RULES}
      - { action: allow, match: { statements: [select], relations: ["private.*"] } }`));
    const p = await psql(privateOnly, ['set search_path = private', 'select secret from secrets']);
    expect(p.stderr).toBe('');
    expect(p.stdout).toContain('private-secret-value');
    // the same in one query: the SET runs before the SELECT
    const one = await psql(privateOnly, ['set search_path = private; select secret from secrets']);
    expect(one.stdout).toContain('private-secret-value');
    // without the SET, the name is public.secrets
    const none = await psql(privateOnly, ['select secret from secrets']);
    expect(none.stderr).toContain('interlock: no rule allows this SELECT statement');
  });

  it('RESET, DISCARD ALL and a rolled-back SET return to public', async () => {
    const privateOnly = await proxy(sqlRules(`${SESSION_RULES}
      - { action: allow, match: { statements: [select], relations: ["private.*"] } }
      - { action: allow, match: { statements: [select], relations: [], functions: ["pg_catalog.*"] } }`));
    for (const back of ['reset search_path', 'discard all', 'reset all', 'set search_path to default']) {
      const r = await psql(privateOnly, ['set search_path = private', back, "select current_setting('search_path')", 'select secret from secrets']);
      expect(r.stdout, back).toContain('public');
      expect(r.stdout, back).not.toContain('secret-value');
      expect(r.stderr, back).toContain('interlock: no rule allows this SELECT statement');
    }
    const rolledBack = await psql(privateOnly, ['begin', 'set search_path = private', 'select secret from secrets', 'rollback', 'select secret from secrets']);
    expect(rolledBack.stdout).toContain('private-secret-value'); // inside the transaction
    expect(rolledBack.stderr).toContain('interlock: no rule allows this SELECT statement'); // after the rollback: public.secrets
    const local = await psql(privateOnly, ['begin', 'set local search_path = private', 'select secret from secrets', 'commit', 'select secret from secrets']);
    expect(local.stdout).toContain('private-secret-value');
    expect(local.stderr).toContain('interlock: no rule allows this SELECT statement');
  });

  it('a change whose value is not a literal is refused', async () => {
    const port = await proxy(sqlRules(`${SESSION_RULES}
      - { action: allow, match: { statements: [select, set] } }`));
    const r = await psql(port, [
      "select set_config('search_path', current_user, false)",
      "select set_config('search_path', 'private', false) from customers",
      "select current_setting('search_path')",
    ]);
    expect(r.stderr).toContain("interlock: set_config('search_path', …) needs a string literal value");
    expect(r.stderr).toContain('is followed only as a statement of its own');
    expect(r.stdout.trim()).toBe('public');
  });
});

describe.skipIf(!canRun)('pg_dump through interlock', () => {
  // what pg_dump needs: catalog reads, its SETs and set_config(), a transaction, LOCK TABLE
  // and PREPARE/EXECUTE (kind other), COPY … TO stdout; unqualified functions only from
  // pg_catalog, since it empties search_path first
  const PG_DUMP_RULES = `
      - { action: allow, match: { statements: [select, set, transaction, other, copy_to], relations: ["pg_catalog.*", "public.*", "private.*"], functions: ["pg_catalog.*"] } }`;

  it('dumps one table, its masked column masked', async () => {
    const port = await proxy(sqlRules(PG_DUMP_RULES));
    const r = await run('pg_dump', ['-h', HOST, '-p', String(port), '-U', 'agent', '-t', 'customers', 'orders']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('COPY public.customers (id, name, email, ssn) FROM stdin;');
    expect(r.stdout).toContain('Ada Lovelace\tada@example.com\t[redacted]');
    for (const ssn of SSNS) expect(r.stdout).not.toContain(ssn);
  });

  it('dumps the whole database', async () => {
    const port = await proxy(sqlRules(PG_DUMP_RULES));
    const r = await run('pg_dump', ['-h', HOST, '-p', String(port), '-U', 'agent', 'orders']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('CREATE TABLE private.secrets');
    expect(r.stdout).toContain('private-secret-value');
    expect(r.stdout).toContain('Alan Turing\talan@example.org\t[redacted]');
    for (const ssn of SSNS) expect(r.stdout).not.toContain(ssn);
  });

  it('is refused where the policy does not cover a schema it dumps', async () => {
    const port = await proxy(sqlRules(PG_DUMP_RULES.replace(', "private.*"', '')));
    const r = await run('pg_dump', ['-h', HOST, '-p', String(port), '-U', 'agent', 'orders']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('interlock:');
    for (const ssn of SSNS) expect(r.stdout).not.toContain(ssn);
  });
});
