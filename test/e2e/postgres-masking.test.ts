/**
 * Masking end to end: real psql / node-postgres in the agents' cgroup, the real
 * redirect, a real PostgreSQL holding PII. Nothing masked may reach the client in
 * DataRow or COPY output; what is not masked must be byte-identical to a direct read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { runAgent } from '../helpers/agent.js';
import { waitForAudit } from '../helpers/daemon.js';
import { ALLOW_ORDINARY, E2EEnv } from '../helpers/e2e-env.js';

const enabled = bpfGate();

const PII = {
  emails: ['ada@example.com', 'alan@example.org', 'grace@example.net'],
  ssns: ['078-05-1120', '219-09-9999', '457-55-5462'],
  cards: ['4111111111111111', '5500005555555559', '340000000000009'],
};

describe.skipIf(!enabled)('masking through the redirect', () => {
  const env = new E2EEnv({
    name: 'masking',
    proxyPort: 15436,
    rules: ALLOW_ORDINARY,
    masking: [
      '      - { columns: ["people.ssn"], strategy: redact }',
      '      - { columns: [email], strategy: partial }',
      '      - { detectors: [credit_card, email], strategy: redact }',
    ].join('\n'),
    workloads: '  - name: copy-bot\n    match: { cgroup: /interlock-masking.slice/copy-bot.service }\n    groups: [exporters]',
    policies: [
      '  - name: exporters',
      '    subjects: { groups: [exporters] }',
      '    targets: [orders-db]',
      '    rules:',
      ALLOW_ORDINARY,
      '    masking:',
      '      - { detectors: [credit_card, email], strategy: redact }',
    ].join('\n'),
  });

  const direct = (sql: string) =>
    execFileSync('psql', ['-h', '127.0.0.3', '-U', 'app', '-d', 'orders', '-w', '-qAtX', '-c', sql], {
      env: { ...process.env, PGPASSWORD: env.pg.password }, encoding: 'utf8', maxBuffer: 64 << 20,
    });
  const leaks = (out: string) => [...PII.emails, ...PII.ssns, ...PII.cards].filter((v) => out.includes(v));

  beforeAll(async () => {
    await env.start();
    env.pg.superSql(`SET ROLE app;
      CREATE TABLE people (id int primary key, name text, email text, ssn text, card text, note text);
      INSERT INTO people VALUES
        (1, 'Ada Lovelace', '${PII.emails[0]}', '${PII.ssns[0]}', '${PII.cards[0]}', 'vip'),
        (2, 'Alan Turing', '${PII.emails[1]}', '${PII.ssns[1]}', '${PII.cards[1]}', 'call ${PII.emails[1]}'),
        (3, 'Grace Hopper', '${PII.emails[2]}', '${PII.ssns[2]}', '${PII.cards[2]}', 'card ${PII.cards[2]} on file');
      CREATE TABLE vendors (id int, ssn text);
      INSERT INTO vendors VALUES (1, 'V-0042');`);
  });
  afterAll(() => env.stop());

  it('masks columns by rule and values by detector, and nothing sensitive reaches psql', async () => {
    const r = await env.psql('select id, name, email, ssn, card, note from people order by id');
    expect(r.stderr).toBe('');
    expect(leaks(r.stdout)).toEqual([]);
    const rows = r.stdout.trim().split('\n').map((l) => l.split('|'));
    expect(rows).toHaveLength(3);
    expect(rows[0]).toEqual(['1', 'Ada Lovelace', '***@*******.com', '[redacted]', '[redacted]', 'vip']);
    expect(rows[1][5]).toBe('call [redacted]');
    expect(rows[2][5]).toBe('card [redacted] on file');
  });

  it('resolves table names: people.ssn is masked, vendors.ssn is not', async () => {
    const r = await env.psql('select ssn from vendors');
    expect(r.stdout.trim()).toBe('V-0042');
  });

  it('counts masked values per statement in the audit trail', async () => {
    await env.psql("select email, note from people where id = 2 -- count_me");
    const line = await waitForAudit(env.auditFile, (l) => l.event === 'masked' && l.tag === 'SELECT 1');
    expect(line.counts).toEqual({ 'column:email': 1, email: 1 });
    expect(line.workload).toBe('report-bot');
  });

  it('leaves unmasked data byte-identical to a direct connection, across many network chunks', async () => {
    const sql = "select g, md5(g::text), repeat('x', g % 50) from generate_series(1, 40000) g";
    const viaProxy = await runAgent(env.cg('report-bot.service'), 'sh', ['-c', `psql -h 127.0.0.3 -U x -d orders -w -qAtX -c "$0" | sha256sum`, sql]);
    const expected = createHash('sha256').update(direct(sql)).digest('hex');
    expect(viaProxy.stdout.split(' ')[0]).toBe(expected);
  });

  it('masks the extended protocol too (node-postgres, parameters)', async () => {
    const pgModule = join(import.meta.dirname, '../../node_modules/pg');
    const script = `const {Client}=require(${JSON.stringify(pgModule)});(async()=>{const c=new Client({host:'127.0.0.3',port:5432,user:'x',database:'orders'});await c.connect();const r=await c.query('select email, ssn, card from people where id = $1',[3]);console.log(JSON.stringify(r.rows[0]));await c.end()})().catch(e=>{console.error(e.message);process.exit(1)})`;
    const r = await runAgent(env.cg('report-bot.service'), process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ email: '*****@*******.net', ssn: '[redacted]', card: '[redacted]' });
  });

  it('masks COPY TO output in text and CSV for a detector-only policy', async () => {
    const copy = (sql: string) => runAgent(env.cg('copy-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX', '-c', sql]);
    const text = await copy('COPY people TO STDOUT');
    expect(text.stderr).toBe('');
    expect(leaks(text.stdout).filter((v) => !PII.ssns.includes(v))).toEqual([]);
    expect(text.stdout).toContain('1\tAda Lovelace\t[redacted]\t078-05-1120\t[redacted]\tvip');
    const csv = await copy('COPY (SELECT id, note FROM people ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)');
    expect(csv.stdout.trim().split('\n')).toEqual(['id,note', '1,vip', '2,call [redacted]', '3,card [redacted] on file']);
    const binary = await copy('COPY people TO STDOUT (FORMAT binary)');
    expect(binary.stderr).toContain('interlock: binary COPY output cannot be masked');
    expect(leaks(binary.stdout)).toEqual([]);
    const after = await copy("select 'session fine'");
    expect(after.stdout.trim()).toBe('session fine');
  });

  it('applies column rules to COPY of a table (columns from the statement or the catalog), refuses COPY of a query', async () => {
    const whole = await env.psql('COPY people TO STDOUT');
    expect(whole.stderr).toBe('');
    expect(leaks(whole.stdout)).toEqual([]);
    expect(whole.stdout.split('\n')[0]).toBe('1\tAda Lovelace\t***@*******.com\t[redacted]\t[redacted]\tvip');
    const listed = await env.psql('COPY people (name, ssn) TO STDOUT WITH (FORMAT csv)');
    expect(listed.stdout.trim().split('\n')).toEqual(['Ada Lovelace,[redacted]', 'Alan Turing,[redacted]', 'Grace Hopper,[redacted]']);
    const vendors = await env.psql('COPY vendors TO STDOUT');
    expect(vendors.stdout.trim()).toBe('1\tV-0042'); // vendors.ssn is not people.ssn
    const query = await env.psql('COPY (SELECT ssn FROM people) TO STDOUT');
    expect(query.stderr).toContain('interlock: COPY TO of a query, or of a table whose columns are unknown, is not allowed while column masking applies');
    expect(leaks(query.stdout)).toEqual([]);
    await waitForAudit(env.auditFile, (l) => l.event === 'query' && l.query === 'COPY (SELECT ssn FROM people) TO STDOUT' && l.decision === 'deny');
  });
});
