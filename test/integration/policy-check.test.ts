/**
 * `interlock policy check` (the built CLI) against a real PostgreSQL: the catalog is read
 * from the live target with the vaulted credential, so lineage follows a view to the masked
 * column it renames; an unreachable target is said so, and the policy decision still shown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from '../helpers/daemon.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import type { PolicyCheckReport } from '../../src/cli/policy-report.js';

const canRun = process.getuid?.() === 0;
if (!canRun && process.env.INTERLOCK_REQUIRE_BPF === '1') throw new Error('integration tests need root (they start PostgreSQL as user postgres)');

const HOST = '127.0.0.45';

describe.skipIf(!canRun)('interlock policy check against a real PostgreSQL', () => {
  let root: string;
  let pg: TestPostgres;
  let config: string;

  const check = (sql: string, ...extra: string[]) =>
    cli(['policy', 'check', '--config', config, '--workload', 'report-bot', '--target', 'orders-db', ...extra, sql]);

  beforeAll(() => {
    root = mkdtempSync('/tmp/interlock-policy-check-');
    chmodSync(root, 0o755);
    pg = startPostgres(join(root, 'pg'), { host: HOST });
    pg.superSql(`SET ROLE app;
      ALTER TABLE customers ADD COLUMN ssn text;
      UPDATE customers SET ssn = '078-05-1120';
      CREATE VIEW contacts AS SELECT id, ssn AS tax_id, email FROM customers;`);
    const secret = join(root, 'orders-db.pw');
    writeFileSync(secret, `${pg.password}\n`, { mode: 0o600 });
    config = join(root, 'interlock.yaml');
    writeFileSync(config, `
agents:
  cgroup: /interlock-policy-check.slice
workloads:
  - name: report-bot
    match: { cgroup: /interlock-policy-check.slice/report-bot.service }
    groups: [analysts]
targets:
  - name: orders-db
    protocol: postgres
    address: ${HOST}:5432
    upstream: { user: app, password: { file: ${secret} }, database: orders }
  - name: closed-db
    protocol: postgres
    address: ${HOST}:5433
    upstream: { user: app, password: { file: ${secret} }, database: orders }
policies:
  - name: analysts
    subjects: { groups: [analysts] }
    targets: [orders-db, closed-db]
    rules:
      - { action: deny, match: { statements: [delete] }, message: "agents do not delete" }
      - { action: approve, match: { statements: [update] }, approvers: [dba] }
      - { action: allow, match: { statements: [select] } }
    masking:
      - { columns: [customers.ssn], strategy: partial }
      - { detectors: [email], strategy: redact }
`);
  });

  afterAll(() => {
    pg?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('follows a renamed masked column to customers.ssn and names its rule and strategy', () => {
    const r = check('select ssn as x, email from customers');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`catalog: read from orders-db (${HOST}:5432, database orders)`);
    expect(r.stdout).toMatch(/decision: allow \(by rule analysts#3\)/);
    expect(r.stdout).toMatch(/ 1 {2}x +← public\.customers\.ssn {2}masked whole: partial \(analysts masking#1\)/);
    expect(r.stdout).toMatch(/ 2 {2}email +scanned by email → redact \(analysts masking#2\)/);
  });

  it('refuses a masked column computed on, as the proxy does (42501, naming customers.ssn)', () => {
    const r = check('select upper(ssn) from customers');
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/policy +allow \(by rule analysts#3\)/);
    expect(r.stdout).toMatch(/decision: deny by column masking: customers\.ssn is masked: it can be selected, not computed on or filtered/);
    expect(r.stdout).toMatch(/the agent sees: ERROR 42501 interlock: customers\.ssn is masked/);
  });

  it('reads a view through its definition from the live catalog', () => {
    const r = check('select tax_id from contacts');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ 1 {2}tax_id +← public\.customers\.ssn {2}masked whole: partial/);
  });

  it('shows the deny rule of a DELETE and its message', () => {
    const r = check('delete from customers where id = 1');
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('decision: deny by rule analysts#1: agents do not delete');
    expect(r.stdout).toMatch(/kinds +delete/);
    expect(r.stdout).toMatch(/relations +customers \(write\)/);
  });

  it('exits 4 for a statement held for approval', () => {
    const r = check('update customers set name = $$x$$ where id = 1');
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/decision: approve by rule analysts#2/);
  });

  it('--json is the same report, machine-readable', () => {
    const r = check('select ssn as x from customers; select upper(ssn) from customers', '--json');
    const report = JSON.parse(r.stdout) as PolicyCheckReport;
    expect(r.code).toBe(3);
    expect(report.catalog.read).toBe(true);
    expect(report.decision).toMatchObject({ action: 'deny', by: 'column masking' });
    expect(report.statements).toHaveLength(2);
    expect(report.statements[0]!.decision).toMatchObject({ action: 'allow', rule: 'analysts#3', by: 'policy' });
    expect(report.statements[0]!.outputs).toEqual([
      { position: 1, name: 'x', sources: ['public.customers.ssn'], masking: [{ kind: 'whole', rule: 'analysts masking#1', strategy: 'partial' }] },
    ]);
    expect(report.statements[1]!.decision.message).toContain('customers.ssn is masked');
  });

  it('says when the catalog cannot be read, and still shows the policy decision and kinds', () => {
    const r = cli(['policy', 'check', '--config', config, '--workload', 'report-bot', '--target', 'closed-db', 'select name from customers']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(new RegExp(`catalog: not read \\(cannot read it from closed-db \\(${HOST.replace(/\./g, '\\.')}:5433, database orders\\): ECONNREFUSED\\)`));
    expect(r.stdout).toMatch(/policy +allow \(by rule analysts#3\)/);
    expect(r.stdout).toMatch(/kinds +select/);
    expect(r.stdout).toContain('its catalog could not be read');
  });

  it('a wrong workload is a usage error (exit 2) that lists the workloads', () => {
    const r = cli(['policy', 'check', '--config', config, '--workload', 'nobody', '--target', 'orders-db', 'select 1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('one of: report-bot');
  });
});
