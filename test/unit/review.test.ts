import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { PolicyDef } from '../../src/config/types.js';
import { policiesFor } from '../../src/policy/access.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { KubeRuleSet } from '../../src/policy/kube-rules.js';
import { RuleSet } from '../../src/policy/rules.js';
import { SshRuleSet, type SshChannelKind } from '../../src/policy/ssh-rules.js';
import { requestInfo } from '../../src/protocols/kubernetes/request-info.js';
import type { FileEvent, RecordedEvent, Recording, StartEvent } from '../../src/recording/events.js';
import { aggregate, fileAccesses, type KubernetesUsage, type ReviewData, type SshUsage, type TargetReview } from '../../src/review/aggregate.js';
import { renderHtml, renderMarkdown } from '../../src/review/render.js';
import { suggest, suggestedPolicyYaml, suggestPolicies } from '../../src/review/suggest.js';

beforeAll(() => initAnalysis());

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const MAR_10 = Date.UTC(2025, 2, 10, 9, 0);

// ---------------------------------------------------------------------------
// Building recordings

type Event = Exclude<RecordedEvent, StartEvent>;

const allow = (t: number, command: string): Event => ({ k: 'decision', t, command, via: 'simple', kinds: [], action: 'allow' });
const deny = (t: number, command: string, rule: string | undefined, message: string): Event =>
  ({ k: 'decision', t, command, via: 'simple', kinds: [], action: 'deny', ...(rule ? { rule } : {}), message });
const hold = (t: number, command: string): Event => ({ k: 'decision', t, command, via: 'simple', kinds: [], action: 'approve', rule: 'ops#4', message: 'approval required' });
const approval = (t: number, command: string, outcome: 'approved' | 'rejected' | 'timed out', by?: string): Event =>
  ({ k: 'approval', t, command, outcome, ...(by ? { by } : {}) });
const masked = (t: number, counts: Record<string, number>): Event => ({ k: 'masked', t, tag: 'SELECT 1', counts });

let nextId = 0;
function recording(start: Partial<StartEvent> & { at: number }, events: Event[]): Recording {
  const id = `s${++nextId}`;
  const s: StartEvent = { k: 'start', t: 0, session: id, protocol: 'postgres', node: 'node-1', ...start };
  const last = events.at(-1)?.t ?? 0;
  const end: RecordedEvent = { k: 'end', t: last + 1, reason: 'client closed', bytesIn: 0, bytesOut: 0, commands: events.length, rows: 0 };
  return { id, file: `/var/lib/interlock/${id}.rec`, start: s, end, events: [s, ...events, end], sealed: true, truncated: false, problems: [] };
}

const bot = (at: number, events: Event[], target = 'orders-db') =>
  recording({ at, workload: 'report-bot', groups: ['analysts'], target }, events);

// What report-bot did on orders-db: reads, a CTE, an insert, a mixed update, settings and a transaction
const ORDERS_BY_CUSTOMER = 'SELECT id, total FROM orders WHERE customer_id = 42';
const CUSTOMER = 'SELECT name, email FROM customers WHERE id = 42';
const WEEKLY_CTE =
  "WITH recent AS (SELECT customer_id, sum(total) AS spent FROM orders WHERE placed_at > now() - interval '7 days' GROUP BY customer_id) " +
  'SELECT c.name, r.spent FROM recent r JOIN customers c ON c.id = r.customer_id';
const INSERT_RUN = "INSERT INTO report_runs (name, ran_at) VALUES ('weekly', now())";
const UPDATE_TOTAL = 'UPDATE orders SET total = (SELECT sum(amount) FROM order_items WHERE order_id = 42) WHERE id = 42';
const SET_TIMEOUT = "SET statement_timeout = '5s'";
const PRUNE_RUNS = "DELETE FROM report_runs WHERE ran_at < now() - interval '90 days'";
const DROP = 'DROP TABLE orders';
const READ_FILE = "SELECT pg_read_file('/etc/passwd')";
// denied by a text pattern in the reviewed policy: the same shape as SELECT 1, so only its text tells them apart
const MARKUP = "SELECT '<script>alert(1)</script>'";

function reportBotRecordings(): Recording[] {
  return [
    bot(MAR_10, [
      allow(10, 'BEGIN'),
      allow(20, ORDERS_BY_CUSTOMER),
      allow(30, CUSTOMER),
      masked(31, { email: 1 }),
      allow(40, 'COMMIT'),
      allow(50, 'SELECT 1'),
      deny(60, DROP, 'ops#2', 'no schema changes'),
    ]),
    bot(MAR_10 + DAY + 2 * HOUR, [
      allow(10, SET_TIMEOUT),
      allow(20, WEEKLY_CTE),
      masked(21, { email: 2, phone: 1 }),
      allow(30, INSERT_RUN),
      allow(40, UPDATE_TOTAL),
      deny(50, READ_FILE, 'ops#1', 'dangerous function'),
      allow(60, ORDERS_BY_CUSTOMER),
      hold(70, PRUNE_RUNS),
      approval(5_000, PRUNE_RUNS, 'approved', 'alice'),
      deny(6_000, MARKUP, 'ops#3', 'looks like markup'),
      hold(7_000, 'TRUNCATE report_runs'),
      approval(9_000, 'TRUNCATE report_runs', 'rejected', 'bob'),
    ]),
    bot(MAR_10 + DAY + 3 * HOUR, [allow(10, 'SELECT number, amount FROM invoices WHERE paid = false')], 'billing-db'),
  ];
}

function allRecordings(): Recording[] {
  return [
    ...reportBotRecordings(),
    recording({ at: MAR_10 + 2 * HOUR, workload: 'etl', target: 'orders-db' }, [allow(5, 'SELECT count(*) FROM orders')]),
    // before the window: must not count
    bot(MAR_10 - 20 * DAY, [allow(5, 'SELECT * FROM customers'), deny(6, 'DROP TABLE customers', 'ops#2', 'no schema changes')]),
    // nobody matched this session
    recording({ at: MAR_10 + 3 * HOUR, target: 'orders-db' }, [allow(5, 'SELECT 1')]),
    // a damaged recording without its start: nothing to attribute it to
    { id: 'broken', file: '/var/lib/interlock/broken.rec', events: [], sealed: false, truncated: false, problems: ['chunk 0: bad hmac'] },
  ];
}

const SINCE = MAR_10 - DAY;

function target(data: ReviewData, workload: string, name: string): TargetReview {
  const t = data.workloads.find((w) => w.workload === workload)?.targets.find((x) => x.target === name);
  if (!t) throw new Error(`no ${workload} on ${name}`);
  return t;
}

// ---------------------------------------------------------------------------
// Loading suggestions back as the daemon would

const CONFIG_HEAD = `
agents: { cgroup: /agents.slice }
workloads:
  - { name: report-bot, match: { cgroup: /agents.slice/report-bot.service }, groups: [analysts] }
  - { name: etl, match: { cgroup: /agents.slice/etl.service } }
  - { name: other-bot, match: { cgroup: /agents.slice/other-bot.service } }
  - { name: deploy-bot, match: { cgroup: /agents.slice/deploy-bot.service } }
targets:
  - { name: orders-db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app } }
  - { name: billing-db, protocol: postgres, address: 127.0.0.4:5432, upstream: { user: app } }
  - name: web-1
    protocol: ssh
    address: 127.0.0.5:22
    upstream: { user: deploy, privateKey: { file: /etc/interlock/web-1.key }, knownHosts: { file: /etc/interlock/web-1.known_hosts } }
`;

function loadSuggested(yaml: string): PolicyDef[] {
  return parseConfig(CONFIG_HEAD + yaml, 'suggested.yaml').policies;
}

function rulesFor(policies: PolicyDef[], workload: string, targetName: string): RuleSet {
  return new RuleSet(policiesFor(policies, { workload, groups: [], uid: 1000 }, targetName));
}

const decide = (rs: RuleSet, sql: string) => rs.decideText(sql).decision.action;

// ---------------------------------------------------------------------------

describe('aggregate', () => {
  const data = () => aggregate(allRecordings(), { since: SINCE });

  it('groups by workload, then target, and leaves out what is outside the window or unattributable', () => {
    const d = data();
    expect(d.workloads.map((w) => w.workload)).toEqual(['etl', 'report-bot', 'unknown']);
    expect(d.workloads[1]!.targets.map((t) => t.target)).toEqual(['billing-db', 'orders-db']);
    expect(d.workloads[1]!.groups).toEqual(['analysts']);
    expect(d.unattributed).toBe(1);
    expect(d.sessions).toBe(5);
    // the session 20 days earlier, with its DROP TABLE customers, is not in the window
    expect(target(d, 'report-bot', 'orders-db').commands.map((c) => c.command)).not.toContain('DROP TABLE customers');
  });

  it('counts decisions, approvals, approvers, maskings and sessions per target', () => {
    const t = target(data(), 'report-bot', 'orders-db');
    expect(t.sessions).toBe(2);
    expect(t.counts).toEqual({ allowed: 10, denied: 3, held: 2, approved: 1, rejected: 1, timedOut: 0 });
    expect(t.approvers).toEqual([
      { by: 'alice', approved: 1, rejected: 0 },
      { by: 'bob', approved: 0, rejected: 1 },
    ]);
    expect(t.masked).toEqual({ total: 4, byRule: [{ name: 'email', count: 3 }, { name: 'phone', count: 1 }] });
    expect(t.first).toBe(MAR_10);
    expect(t.last).toBe(MAR_10 + DAY + 2 * HOUR + 9_001); // the end event after the last approval
    expect(t.commands.find((c) => c.command === ORDERS_BY_CUSTOMER)).toMatchObject({ allowed: 2, denied: 0 });
    expect(t.commands.find((c) => c.command === PRUNE_RUNS)).toMatchObject({ held: 1, approved: 1, approvedBy: ['alice'] });
  });

  it('lists distinct denied commands, most frequent first, with rule and message, up to topDenied', () => {
    const recs = [
      ...reportBotRecordings(),
      bot(MAR_10 + 5 * HOUR, [deny(1, READ_FILE, 'ops#1', 'dangerous function'), deny(2, READ_FILE, 'ops#1', 'dangerous function')]),
    ];
    const t = target(aggregate(recs, { topDenied: 2 }), 'report-bot', 'orders-db');
    expect(t.deniedDistinct).toBe(3);
    expect(t.denied).toEqual([
      { command: READ_FILE, count: 3, rule: 'ops#1', message: 'dangerous function' },
      { command: DROP, count: 1, rule: 'ops#2', message: 'no schema changes' },
    ]);
  });

  it('re-analyses what ran: statement kinds, relations with read/write, functions', () => {
    const usage = target(data(), 'report-bot', 'orders-db').usage!;
    if (usage.protocol !== 'postgres') throw new Error('expected PostgreSQL usage');
    expect(Object.fromEntries(usage.kinds.map((k) => [k.name, k.count]))).toEqual({
      select: 6, // orders ×2, customers, SELECT 1, the CTE, the UPDATE's subquery
      transaction: 2,
      set: 1,
      insert: 1,
      update: 1,
      delete: 1, // the approved prune
    });
    expect(usage.relations).toEqual([
      { relation: 'public.orders', reads: 3, writes: 1 },
      { relation: 'public.customers', reads: 2, writes: 0 },
      { relation: 'public.report_runs', reads: 0, writes: 2 },
      { relation: 'public.order_items', reads: 1, writes: 0 },
    ]);
    expect(usage.functions).toEqual([
      { name: 'now', count: 3 },
      { name: 'sum', count: 2 },
    ]);
    // the denied pg_read_file never ran, so it is not usage
    expect(usage.functions.map((f) => f.name)).not.toContain('pg_read_file');
  });

  it('buckets allowed and denied per UTC day over the whole window, empty days included', () => {
    const d = data();
    expect(d.days.map((b) => b.day)).toEqual(['2025-03-09', '2025-03-10', '2025-03-11']);
    const bot = d.workloads.find((w) => w.workload === 'report-bot')!;
    expect(bot.days).toEqual([
      { day: '2025-03-09', allowed: 0, denied: 0, held: 0 },
      { day: '2025-03-10', allowed: 5, denied: 1, held: 0 },
      { day: '2025-03-11', allowed: 6, denied: 2, held: 2 },
    ]);
    expect(d.days[1]).toEqual({ day: '2025-03-10', allowed: 7, denied: 1, held: 0 }); // + etl and the unknown session
  });
});

describe('suggested policy', () => {
  const data = () => aggregate(allRecordings(), { since: SINCE });

  it('is one policy per workload and target, for known workloads only', () => {
    const policies = suggestPolicies(data());
    expect(policies.map((p) => [p.name, p.subjects.workloads, p.targets])).toEqual([
      ['suggested-etl-orders-db', ['etl'], ['orders-db']],
      ['suggested-report-bot-billing-db', ['report-bot'], ['billing-db']],
      ['suggested-report-bot-orders-db', ['report-bot'], ['orders-db']],
    ]);
    expect(suggest(data()).skipped.join('\n')).toMatch(/unknown on orders-db.*no workload matched/);
  });

  it('loads back through parseConfig and decides every recorded command as recorded', () => {
    const policies = loadSuggested(suggestedPolicyYaml(data()));
    const rs = rulesFor(policies, 'report-bot', 'orders-db');
    const t = target(data(), 'report-bot', 'orders-db');
    for (const c of t.commands) {
      const expected = c.allowed ? 'allow' : c.approved ? 'approve' : c.denied ? 'deny' : undefined;
      if (expected) expect([c.command, decide(rs, c.command)]).toEqual([c.command, expected]);
    }
    // held and rejected: never ran, and the suggestion does not run it either
    expect(decide(rs, 'TRUNCATE report_runs')).toBe('deny');
    expect(decide(rulesFor(policies, 'report-bot', 'billing-db'), 'SELECT number, amount FROM invoices WHERE paid = false')).toBe('allow');
    expect(decide(rulesFor(policies, 'etl', 'orders-db'), 'SELECT count(*) FROM orders')).toBe('allow');
  });

  it('denies what the workload never did', () => {
    const rs = rulesFor(loadSuggested(suggestedPolicyYaml(data())), 'report-bot', 'orders-db');
    const neverSeen = [
      'SELECT * FROM payments', // another table
      'SELECT * FROM audit.orders', // the same name in another schema
      "UPDATE customers SET email = 'x@example.com' WHERE id = 1", // write to a table it only read
      "INSERT INTO customers (name) VALUES ('x')",
      'UPDATE order_items SET amount = 0 WHERE order_id IN (SELECT id FROM orders)', // only read, even in a mixed statement
      "SELECT pg_read_file('/etc/shadow') FROM orders", // a function it never called
      'SELECT other.sum(total) FROM orders', // a function it called, from another schema
      'DELETE FROM orders WHERE id = 1', // a kind it never used on this table
      'DROP TABLE customers',
      'TRUNCATE orders',
      'SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id', // a join with a table never seen
      'DO $$ BEGIN DELETE FROM orders; END $$',
      'EXPLAIN SELECT * FROM orders',
      'COPY orders TO STDOUT',
      "SELECT '<script>alert(1)</script>'", // the denied text itself, again
    ];
    for (const sql of neverSeen) expect([sql, decide(rs, sql)]).toEqual([sql, 'deny']);
    const billing = rulesFor(loadSuggested(suggestedPolicyYaml(data())), 'report-bot', 'billing-db');
    expect(decide(billing, "SELECT number, pg_read_file('/etc/passwd') FROM invoices")).toBe('deny');
    // a SET rule lets search_path change, but names are then read under the new path
    expect(decide(rs, 'SET search_path = evil, public; SELECT * FROM orders')).toBe('deny');
    // what did run still runs, with other literals
    expect(decide(rs, 'SELECT id, total FROM orders WHERE customer_id = 7')).toBe('allow');
    expect(decide(rs, 'SELECT 2')).toBe('allow');
  });

  it('denies a function call to a workload that only ran SELECT 1', () => {
    const rs = rulesFor(loadSuggested(suggestedPolicyYaml(aggregate([bot(MAR_10, [allow(1, 'SELECT 1')])], {}))), 'report-bot', 'orders-db');
    expect(decide(rs, 'SELECT 1')).toBe('allow');
    expect(decide(rs, "SELECT pg_read_file('/etc/passwd')")).toBe('deny');
    expect(decide(rs, 'SELECT now()')).toBe('deny');
    expect(decide(rs, 'SELECT * FROM orders')).toBe('deny');
  });

  it('writes explicit lists, access modes and approvers on the rules', () => {
    const policy = suggestPolicies(data()).find((p) => p.name === 'suggested-report-bot-orders-db')!;
    const byKinds = (kinds: string[]) => policy.rules.find((r) => r.action === 'allow' && r.match.statements?.join() === kinds.join());
    expect(byKinds(['select'])?.match).toEqual({
      statements: ['select'],
      relations: ['public.customers', 'public.orders'],
      access: 'read',
      functions: ['pg_catalog.now', 'public.now', 'pg_catalog.sum', 'public.sum'],
    });
    expect(byKinds(['transaction'])?.match).toEqual({ statements: ['transaction'], relations: [], functions: [] });
    expect(byKinds(['set'])?.match).toEqual({ statements: ['set'], relations: [], functions: [] });
    expect(byKinds(['insert'])?.match).toMatchObject({ relations: ['public.report_runs'], access: 'write' });
    // the mixed UPDATE … (SELECT …) cannot carry an access mode: a deny on writes to what was only read guards it
    expect(byKinds(['update', 'select'])?.match).toEqual({
      statements: ['update', 'select'],
      relations: ['public.order_items', 'public.orders'],
      functions: ['pg_catalog.sum', 'public.sum'],
    });
    expect(policy.rules.find((r) => r.action === 'deny' && r.match.access === 'write')?.match).toEqual({
      relations: ['public.order_items'], // customers was only read too, but only by a rule with access: read
      access: 'write',
    });
    // denies come before every allow, so they apply to what the allows list
    const firstAllow = policy.rules.findIndex((r) => r.action === 'allow');
    expect(policy.rules.slice(0, firstAllow).every((r) => r.action === 'deny')).toBe(true);
    expect(policy.rules.find((r) => r.action === 'approve')).toEqual({
      action: 'approve',
      match: { statements: ['delete'], relations: ['public.report_runs'], access: 'write' },
      approvers: ['alice'],
    });
    // the most used rule first among the allows
    expect(policy.rules.find((r) => r.action === 'allow')?.match.statements).toEqual(['select']);
  });

  it('keeps a denied statement that looks like one that ran denied, by its exact text', () => {
    const policy = suggestPolicies(data()).find((p) => p.name === 'suggested-report-bot-orders-db')!;
    const textDeny = policy.rules.find((r) => r.match.pattern !== undefined);
    expect(textDeny).toMatchObject({ action: 'deny', message: 'looks like markup' });
    expect(new RegExp(textDeny!.match.pattern!).test(MARKUP)).toBe(true);
  });

  it('merges selects on different tables into one rule, which allows joining them', () => {
    const recs = [bot(MAR_10, [allow(1, 'SELECT * FROM a'), allow(2, 'SELECT * FROM b')])];
    const policies = loadSuggested(suggestedPolicyYaml(aggregate(recs, {})));
    const rs = rulesFor(policies, 'report-bot', 'orders-db');
    expect(policies[0]!.rules).toHaveLength(1);
    expect(decide(rs, 'SELECT * FROM a JOIN b USING (id)')).toBe('allow');
    expect(decide(rs, 'SELECT * FROM a JOIN c USING (id)')).toBe('deny');
  });

  it('splits a merged rule when a recorded denial shows the combination was refused', () => {
    const recs = [
      bot(MAR_10, [
        allow(1, 'SELECT * FROM a'),
        allow(2, 'SELECT * FROM b'),
        deny(3, 'SELECT * FROM a JOIN b USING (id)', 'ops#9', 'no joins of a and b'),
      ]),
    ];
    const data = aggregate(recs, {});
    const rs = rulesFor(loadSuggested(suggestedPolicyYaml(data)), 'report-bot', 'orders-db');
    expect(decide(rs, 'SELECT * FROM a')).toBe('allow');
    expect(decide(rs, 'SELECT * FROM b')).toBe('allow');
    expect(decide(rs, 'SELECT * FROM a JOIN b USING (id)')).toBe('deny');
    expect(suggest(data).suggestions[0]!.policy.rules.filter((r) => r.action === 'allow')).toHaveLength(2);
    expect(suggest(data).suggestions[0]!.warnings).toEqual([]);
  });

  it('allows an opaque statement only when it ran, by its kind', () => {
    const withDo = aggregate([bot(MAR_10, [allow(1, 'DO $$ BEGIN PERFORM 1; END $$'), allow(2, 'SELECT 1')])], {});
    const rsDo = rulesFor(loadSuggested(suggestedPolicyYaml(withDo)), 'report-bot', 'orders-db');
    expect(decide(rsDo, 'DO $$ BEGIN PERFORM 2; END $$')).toBe('allow');
    expect(decide(rsDo, 'CALL app.refresh()')).toBe('deny');

    const deniedDo = aggregate([bot(MAR_10, [deny(1, 'DO $$ BEGIN PERFORM 1; END $$', undefined, 'no rule allows this DO statement'), allow(2, 'SELECT 1')])], {});
    const rs = rulesFor(loadSuggested(suggestedPolicyYaml(deniedDo)), 'report-bot', 'orders-db');
    expect(decide(rs, 'DO $$ BEGIN PERFORM 1; END $$')).toBe('deny');
  });

  it('warns about a command both allowed and denied in the period instead of guessing silently', () => {
    const recs = [bot(MAR_10, [allow(1, 'SELECT * FROM a'), deny(2, 'SELECT * FROM a', 'ops#1', 'tightened')])];
    const s = suggest(aggregate(recs, {})).suggestions[0]!;
    expect(s.warnings.join('\n')).toMatch(/both ran and was denied.*SELECT \* FROM a/);
    expect(suggestedPolicyYaml(aggregate(recs, {}))).toMatch(/# warning: both ran and was denied/);
  });

  it('comes out the same whatever order the recordings are read in', () => {
    const recs = allRecordings();
    const forward = suggestedPolicyYaml(aggregate(recs, { since: SINCE }));
    expect(suggestedPolicyYaml(aggregate([...recs].reverse(), { since: SINCE }))).toBe(forward);
  });

  it('suggests nothing for a workload that ran nothing, and says so', () => {
    const recs = [recording({ at: MAR_10, workload: 'other-bot', target: 'orders-db' }, [deny(1, DROP, 'ops#2', 'no')])];
    const yaml = suggestedPolicyYaml(aggregate(recs, {}));
    expect(loadSuggested(yaml)).toEqual([]);
    expect(yaml).toMatch(/not suggested: other-bot on orders-db \(postgres\): nothing ran/);
  });
});

describe('render', () => {
  const data = () => aggregate(allRecordings(), { since: SINCE });

  it('markdown names each workload and target with its counts, and embeds the suggested YAML', () => {
    const yaml = suggestedPolicyYaml(data());
    const md = renderMarkdown(data(), yaml);
    expect(md).toContain('## Workload report-bot');
    expect(md).toContain('### Target orders-db (postgres)');
    expect(md).toContain('| report-bot | 3 | 11 | 3 | 2 | 1 | 4 |');
    expect(md).toContain('10 allowed, 3 denied, 2 held for approval (1 approved, 1 rejected, 0 timed out)');
    expect(md).toContain('| `public.order_items` | 1 | 0 |');
    expect(md).toContain(`| 1 | \`${DROP}\` | \`ops#2\` | no schema changes |`);
    expect(md).toContain('```yaml\n' + yaml.trimEnd() + '\n```');
  });

  it('markdown keeps untrusted text from breaking out of its table cell', () => {
    const recs = [bot(MAR_10, [deny(1, "SELECT 'a|b', '`x`'", 'ops#1', 'no <b>pipes</b> | here')])];
    const md = renderMarkdown(aggregate(recs, {}), '');
    const row = md.split('\n').find((l) => l.startsWith('| 1 |'))!;
    expect(row).toBe("| 1 | ``SELECT 'a\\|b', '`x`'`` | `ops#1` | no \\<b\\>pipes\\</b\\> \\| here |");
  });

  it('HTML escapes everything, charts days as SVG bars and stays well-formed', () => {
    const html = renderHtml(data(), suggestedPolicyYaml(data()));
    expect(html).not.toContain('<script');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).toContain('<svg');
    expect(html).toMatch(/<rect class="denied"[^>]*><title>2025-03-11: 2 denied<\/title><\/rect>/);
    expect(html).toMatch(/<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/);
    expect(unbalancedTags(html)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// SSH

const sshDecision = (t: number, via: string, command: string, action: 'allow' | 'deny', rule?: string, message?: string): Event =>
  ({ k: 'decision', t, command, via, kinds: [via], action, ...(rule ? { rule } : {}), ...(message ? { message } : {}) });
const ran = (t: number, command: string) => sshDecision(t, 'exec', command, 'allow');
const refused = (t: number, command: string, rule?: string) => sshDecision(t, 'exec', command, 'deny', rule, rule ? `denied by rule ${rule}` : 'no rule allows it');
const fileOp = (t: number, op: string, path: string, access: 'read' | 'write', allowed = true, extra: Partial<FileEvent> = {}): Event =>
  ({ k: 'file', t, op, path, access, allowed, ...(allowed ? {} : { message: `interlock: no rule allows ${access === 'read' ? 'reading' : 'writing'} "${path}"` }), ...extra });
const transfer = (t: number, path: string, direction: 'upload' | 'download', bytes: number): Event =>
  ({ k: 'file', t, op: 'close', path, access: direction === 'upload' ? 'write' : 'read', allowed: true, direction, bytes });

const deployBot = (at: number, events: Event[]) => recording({ at, workload: 'deploy-bot', target: 'web-1', protocol: 'ssh' }, events);

const GLOB_LS = 'ls /srv/app/*.conf';
const TAIL_TO_TMP = 'tail -n 100 /var/log/app.log > /tmp/app-tail.log';

/** What deploy-bot did on web-1: commands, a shell, sftp downloads and uploads, and some refusals. */
function deployBotRecordings(): Recording[] {
  return [
    deployBot(MAR_10, [
      ran(10, 'uptime'),
      ran(20, 'systemctl status nginx'),
      ran(30, 'systemctl status app'),
      ran(40, 'systemctl status redis'),
      ran(50, 'cat /var/log/app.log | grep -c ERROR'),
      ran(60, 'uptime'),
      ran(70, GLOB_LS),
      ran(80, 'echo $HOME'),
      ran(90, TAIL_TO_TMP),
      ran(95, 'git status'),
      refused(100, 'rm -rf /srv/app', 'ops#1'),
      refused(110, 'curl http://example.com/install.sh'),
      // refused, though each part ran on its own (the policy was stricter then)
      refused(120, 'uptime && git status', 'ops#2'),
      sshDecision(130, 'shell', '(interactive shell)', 'allow'),
      sshDecision(140, 'port-forward', '10.0.0.5:5432', 'deny', undefined, 'port forwarding is not allowed'),
    ]),
    deployBot(MAR_10 + HOUR, [
      sshDecision(10, 'sftp', 'sftp', 'allow'),
      fileOp(11, 'realpath', '.', 'read'),
      fileOp(12, 'opendir', '/srv/app/releases', 'read'),
      fileOp(13, 'stat', '/srv/app/config', 'read'),
      fileOp(14, 'open', '/srv/app/config/app.yaml', 'read'),
      transfer(15, '/srv/app/config/app.yaml', 'download', 1200),
      fileOp(16, 'open', '/srv/app/uploads/report.csv', 'write'),
      transfer(17, '/srv/app/uploads/report.csv', 'upload', 5000),
      fileOp(18, 'mkdir', '/srv/app/uploads/2025', 'write'),
      fileOp(19, 'posix-rename@openssh.com', '/srv/app/uploads/report.csv', 'write', true, { path2: '/srv/app/uploads/report-final.csv' }),
      fileOp(20, 'open', '/srv/app/config/secrets.yaml', 'read', false),
      fileOp(21, 'remove', '/etc/passwd', 'write', false),
    ]),
  ];
}

function sshUsage(t: TargetReview): SshUsage {
  if (t.usage?.protocol !== 'ssh') throw new Error(`no SSH usage on ${t.target}`);
  return t.usage;
}

function sshRulesFor(policies: PolicyDef[], workload: string, targetName: string): SshRuleSet {
  return new SshRuleSet(policiesFor(policies, { workload, groups: [], uid: 1000 }, targetName));
}

const execAction = (rs: SshRuleSet, command: string) => rs.decideExec(command).decision.action;
const pathAction = (rs: SshRuleSet, access: 'read' | 'write', path: string) => rs.decidePath(access, path).action;
const ALL_CHANNELS: SshChannelKind[] = ['shell', 'sftp', 'port-forward', 'remote-forward', 'agent-forward', 'x11'];

describe('SSH review', () => {
  const data = () => aggregate(deployBotRecordings(), {});
  const suggestedRules = (d: ReviewData = data()) => sshRulesFor(loadSuggested(suggestedPolicyYaml(d)), 'deploy-bot', 'web-1');

  it('aggregates exec commands, programs, channels and files', () => {
    const t = target(data(), 'deploy-bot', 'web-1');
    const u = sshUsage(t);
    expect(t.protocol).toBe('ssh');
    expect(t.counts).toMatchObject({ allowed: 12, denied: 4 });
    expect(u.commands.every((c) => c.via === 'exec')).toBe(true);
    expect(u.commands[0]).toMatchObject({ command: 'uptime', allowed: 2, denied: 0 });
    expect(u.commands.find((c) => c.command === 'rm -rf /srv/app')).toMatchObject({ allowed: 0, denied: 1, rule: 'ops#1' });
    expect(Object.fromEntries(u.programs.map((p) => [p.name, p.count]))).toEqual({
      uptime: 2, systemctl: 3, cat: 1, grep: 1, ls: 1, echo: 1, tail: 1, '>': 1, git: 1,
    });
    expect(u.unanalysed).toBe(0);
    expect(u.channels.map((c) => [c.kind, c.allowed, c.denied])).toEqual([
      ['port-forward', 0, 1],
      ['sftp', 1, 0],
      ['shell', 1, 0],
    ]);
    expect(u.channels[0]!.requests).toEqual([{ name: '10.0.0.5:5432', count: 1 }]);
    expect(u.files.find((f) => f.path === '/srv/app/config/app.yaml')).toEqual({
      path: '/srv/app/config/app.yaml', reads: 1, writes: 0, downloads: 1, downloadedBytes: 1200, uploads: 0, uploadedBytes: 0,
    });
    expect(u.files.find((f) => f.path === '/srv/app/uploads/report.csv')).toMatchObject({ writes: 2, uploads: 1, uploadedBytes: 5000 });
    expect(u.files.find((f) => f.path === '/srv/app/uploads/report-final.csv')).toMatchObject({ writes: 1 });
    // realpath reads nothing, and refused operations touched nothing
    expect(u.files.map((f) => f.path)).not.toContain('.');
    expect(u.files.map((f) => f.path)).not.toContain('/etc/passwd');
    expect(u.fileOperations.filter((o) => !o.allowed).map((o) => [o.op, o.path, o.access])).toEqual([
      ['remove', '/etc/passwd', 'write'],
      ['open', '/srv/app/config/secrets.yaml', 'read'],
    ]);
    // denials name what they were about
    expect(t.denied.map((d) => [d.via, d.command])).toContainEqual(['port-forward', '10.0.0.5:5432']);
  });

  it('keeps an exec of "sftp" apart from the sftp channel', () => {
    const t = target(aggregate([deployBot(MAR_10, [ran(1, 'sftp'), sshDecision(2, 'sftp', 'sftp', 'allow')])], {}), 'deploy-bot', 'web-1');
    expect(t.commands.map((c) => [c.via, c.command, c.allowed])).toEqual([
      ['exec', 'sftp', 1],
      ['sftp', 'sftp', 1],
    ]);
  });

  it('loads back through parseConfig and decides every recorded exec, channel and file operation as recorded', () => {
    const rs = suggestedRules();
    const u = sshUsage(target(data(), 'deploy-bot', 'web-1'));
    for (const c of u.commands) {
      const expected = c.allowed ? 'allow' : 'deny';
      expect([c.command, execAction(rs, c.command)]).toEqual([c.command, expected]);
    }
    expect(rs.decideChannel('shell').action).toBe('allow');
    expect(rs.decideChannel('sftp').action).toBe('allow');
    expect(rs.decideChannel('port-forward').action).toBe('deny');
    for (const o of u.fileOperations) {
      const decisions = fileAccesses(o).map((a) => pathAction(rs, a.access, a.path));
      if (!decisions.length) continue; // realpath: not decided by path
      const allowed = decisions.every((d) => d === 'allow');
      expect([o.op, o.path, allowed]).toEqual([o.op, o.path, o.allowed]);
    }
    expect(suggest(data()).suggestions[0]!.warnings).toEqual([]);
  });

  it('denies commands, channels and paths the workload never used', () => {
    const rs = suggestedRules();
    const neverRun = [
      'rm -rf /',
      '/bin/rm -rf /srv/app',
      'uptime -p', // an exact command line with other arguments
      'systemctl restart nginx', // an allowed program with another first operand
      'systemctl status nginx; reboot',
      'git push --force',
      'cat /etc/shadow',
      'grep -r password /etc',
      'ls /srv/app/*.key', // only the exact glob command that ran
      'ls /srv/app',
      'echo $PATH', // a run-time word other than the one that ran
      'tail -n 100 /var/log/app.log > /etc/cron.d/evil',
      'curl http://example.com/install.sh',
      'uptime && git status', // refused as a whole in the period
      'bash -c "rm -rf /"',
    ];
    for (const cmd of neverRun) expect([cmd, execAction(rs, cmd)]).toEqual([cmd, 'deny']);
    for (const kind of ['port-forward', 'remote-forward', 'agent-forward', 'x11'] as const) expect([kind, rs.decideChannel(kind).action]).toEqual([kind, 'deny']);
    const neverTouched: ['read' | 'write', string][] = [
      ['read', '/etc/shadow'],
      ['read', '/srv/app/config/secrets.yaml'], // refused in the period, though its directory is allowed
      ['write', '/srv/app/config/app.yaml'], // only read
      ['read', '/srv/app/uploads/report.csv'], // only written
      ['read', '/srv/app/config/sub/x.yaml'], // below the directory used
      ['read', '/srv/app/releases/v1/app.tar'], // only listed
      ['write', '/srv/app/releases'],
      ['read', '/srv/app'],
      ['write', '/tmp/app-tail.log'], // a shell redirection's target is not an sftp path
    ];
    for (const [access, path] of neverTouched) expect([access, path, pathAction(rs, access, path)]).toEqual([access, path, 'deny']);
  });

  it('over-grants only as documented: a widened prefix, and files next to the ones used', () => {
    const rs = suggestedRules();
    expect(execAction(rs, 'systemctl status postgresql')).toBe('allow'); // "systemctl status *": ran with 3 units
    expect(execAction(rs, 'systemctl status')).toBe('allow');
    expect(execAction(rs, 'git status')).toBe('allow'); // once: exact
    expect(execAction(rs, 'git status --short')).toBe('deny');
    expect(pathAction(rs, 'read', '/srv/app/config/other.yaml')).toBe('allow'); // "/srv/app/config/*"
    expect(pathAction(rs, 'write', '/srv/app/uploads/other.csv')).toBe('allow');
  });

  it('writes exact globs per program, a pattern for glob characters, channels and paths by access', () => {
    const { suggestions } = suggest(data());
    expect(suggestions.map((s) => s.policy.name)).toEqual(['suggested-deploy-bot-web-1']);
    const rules = suggestions[0]!.policy.rules;
    const commands = (program: string) => rules.find((r) => r.action === 'allow' && r.match.commands?.some((c) => c.startsWith(`${program} `) || c === program))?.match;
    expect(commands('systemctl')).toEqual({ commands: ['systemctl status *'] });
    expect(commands('uptime')).toEqual({ commands: ['uptime'] });
    expect(commands('git')).toEqual({ commands: ['git status'] });
    expect(commands('echo')).toEqual({ commands: ['echo $HOME'] });
    expect(commands('>')).toEqual({ commands: ['> /tmp/app-tail.log'] });
    const byPattern = rules.find((r) => r.action === 'allow' && r.match.pattern !== undefined)!;
    expect(byPattern.match).toEqual({ channels: ['exec'], pattern: '^ls \\/srv\\/app\\/\\*\\.conf$' });
    expect(rules.find((r) => r.match.channels?.includes('shell'))?.match).toEqual({ channels: ['shell'] });
    expect(rules.find((r) => r.action === 'allow' && r.match.access === 'read')?.match).toEqual({
      channels: ['sftp'],
      paths: ['/srv/app/config', '/srv/app/config/*', '/srv/app/releases'],
      access: 'read',
    });
    expect(rules.find((r) => r.action === 'allow' && r.match.access === 'write')?.match).toEqual({
      channels: ['sftp'],
      paths: ['/srv/app/uploads/*'], // mkdir of uploads/2025 is covered by the directory
      access: 'write',
    });
    // denies first: the refused composite by its text, the refused file by its exact path
    const firstAllow = rules.findIndex((r) => r.action === 'allow');
    expect(rules.slice(0, firstAllow)).toEqual([
      { action: 'deny', match: { channels: ['exec'], pattern: '^uptime && git status$' }, message: 'refused in the reviewed period' },
      { action: 'deny', match: { channels: ['sftp'], paths: ['/srv/app/config/secrets.yaml'], access: 'read' }, message: 'refused in the reviewed period' },
    ]);
    expect(rules.some((r) => r.match.channels?.includes('port-forward'))).toBe(false);
    expect(suggestedPolicyYaml(data())).toMatch(/# interactive shell, allowed once: whatever is typed in it runs/);
  });

  it('narrows a widened prefix back to exact command lines when a refused command would pass', () => {
    const recs = [
      deployBot(MAR_10, [
        ran(1, 'git log -1'),
        ran(2, 'git log --oneline -5'),
        ran(3, 'git log -n 3'),
        refused(4, 'git log --output=/etc/cron.d/x'),
      ]),
    ];
    const d = aggregate(recs, {});
    const rs = suggestedRules(d);
    expect(execAction(rs, 'git log -1')).toBe('allow');
    expect(execAction(rs, 'git log --oneline -5')).toBe('allow');
    expect(execAction(rs, 'git log --output=/etc/cron.d/x')).toBe('deny');
    expect(execAction(rs, 'git log -2')).toBe('deny'); // no longer widened
    const s = suggest(d).suggestions[0]!;
    expect(s.policy.rules).toEqual([{ action: 'allow', match: { commands: ['git log --oneline -5', 'git log -1', 'git log -n 3'] } }]);
    expect(s.warnings).toEqual([]);
  });

  it('widens when nothing refused stands in the way, and keeps other first operands out', () => {
    const rs = suggestedRules(aggregate([deployBot(MAR_10, [ran(1, 'git log -1'), ran(2, 'git log --oneline -5'), ran(3, 'git log -n 3')])], {}));
    expect(execAction(rs, 'git log -2')).toBe('allow');
    expect(execAction(rs, 'git push')).toBe('deny');
    expect(execAction(rs, 'git')).toBe('deny');
  });

  it('never allows a shell, sftp or a forwarding that was not used and allowed', () => {
    const rs = suggestedRules(aggregate([deployBot(MAR_10, [ran(1, 'uptime'), sshDecision(2, 'shell', '(interactive shell)', 'deny')])], {}));
    for (const kind of ALL_CHANNELS) expect([kind, rs.decideChannel(kind).action]).toEqual([kind, 'deny']);
    expect(pathAction(rs, 'read', '/etc/hostname')).toBe('deny');
    expect(execAction(rs, 'uptime')).toBe('allow');
    expect(execAction(rs, 'scp -f /etc/passwd')).toBe('deny');
  });

  it('allows a path holding glob characters by an anchored expression, not as a glob', () => {
    const recs = [deployBot(MAR_10, [sshDecision(1, 'sftp', 'sftp', 'allow'), fileOp(2, 'open', '/data/we*rd/a.txt', 'read'), fileOp(3, 'stat', '/data/why?', 'read')])];
    const rs = suggestedRules(aggregate(recs, {}));
    expect(pathAction(rs, 'read', '/data/we*rd/a.txt')).toBe('allow');
    expect(pathAction(rs, 'read', '/data/we*rd/b.txt')).toBe('allow');
    expect(pathAction(rs, 'read', '/data/weird/a.txt')).toBe('deny');
    expect(pathAction(rs, 'read', '/data/why?')).toBe('allow');
    expect(pathAction(rs, 'read', '/data/whyX')).toBe('deny');
  });

  it('grants a directory crowded with exact paths as the directory, one level deep', () => {
    const stats = Array.from({ length: 9 }, (_, i) => fileOp(i + 2, 'lstat', `/srv/logs/app-${i}.log`, 'read'));
    const recs = [deployBot(MAR_10, [sshDecision(1, 'sftp', 'sftp', 'allow'), ...stats, fileOp(20, 'stat', '/srv/other/one', 'read')])];
    const policy = suggest(aggregate(recs, {})).suggestions[0]!.policy;
    expect(policy.rules).toEqual([{ action: 'allow', match: { channels: ['sftp'], paths: ['/srv/logs/*', '/srv/other/one'], access: 'read' } }]);
    const rs = suggestedRules(aggregate(recs, {}));
    expect(pathAction(rs, 'read', '/srv/logs/app-42.log')).toBe('allow');
    expect(pathAction(rs, 'read', '/srv/logs/old/app.log')).toBe('deny');
    expect(pathAction(rs, 'read', '/srv/other/two')).toBe('deny');
  });

  it('skips an SSH workload whose only allowed use cannot be named by a rule, and says why', () => {
    const recs = [deployBot(MAR_10, [sshDecision(1, 'sftp', 'sftp', 'allow'), fileOp(2, 'realpath', '.', 'read')])];
    const { suggestions, skipped } = suggest(aggregate(recs, {}));
    expect(suggestions).toEqual([]);
    expect(skipped.join('\n')).toMatch(/deploy-bot on web-1 \(ssh\): nothing it was allowed can be named by a rule \(sftp was opened/);
  });

  it('comes out the same whatever order the recordings are read in', () => {
    const recs = deployBotRecordings();
    expect(suggestedPolicyYaml(aggregate([...recs].reverse(), {}))).toBe(suggestedPolicyYaml(aggregate(recs, {})));
  });

  it('renders commands, channels and files in markdown and HTML, escaping what agents sent', () => {
    const recs = [...deployBotRecordings(), deployBot(MAR_10 + 2 * HOUR, [refused(1, "echo '<script>alert(1)</script>' | tee a|b")])];
    const d = aggregate(recs, {});
    const yaml = suggestedPolicyYaml(d);
    const md = renderMarkdown(d, yaml);
    expect(md).toContain('### Target web-1 (ssh)');
    expect(md).toMatch(/Programs: `systemctl` 3, `uptime` 2, /);
    expect(md).toContain('| 2 | 0 | 0 | `uptime` |');
    expect(md).toContain('| port-forward | 0 | 1 | 0 | `10.0.0.5:5432` 1 |');
    expect(md).toContain('| `/srv/app/config/app.yaml` | 1 | 0 | 1 (1200 bytes) |  |');
    expect(md).toContain('| 1 | open | read | `/srv/app/config/secrets.yaml` |');
    expect(md).toContain("| 0 | 1 | 0 | `echo '<script>alert(1)</script>' \\| tee a\\|b` |");
    expect(md).toContain('| 1 | port-forward | `10.0.0.5:5432` |');
    const html = renderHtml(d, yaml);
    expect(html).not.toContain('<script');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).toContain('<td>port-forward</td>');
    expect(html).toContain('<code>/srv/app/uploads/report.csv</code>');
    expect(unbalancedTags(html)).toEqual([]);
  });
});

/** Open/close tag mismatches, ignoring void elements and self-closed SVG elements. */
function unbalancedTags(html: string): string[] {
  const VOID = new Set(['meta', 'br', 'hr', 'img', 'link', 'input']);
  const stack: string[] = [];
  const problems: string[] = [];
  for (const m of html.matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosed] = m;
    if (VOID.has(name!) || selfClosed) continue;
    if (!closing) stack.push(name!);
    else if (stack.pop() !== name) problems.push(`unexpected </${name}>`);
  }
  return [...problems, ...stack.map((n) => `unclosed <${n}>`)];
}

// ---------------------------------------------------------------------------
// Kubernetes

const kubeDecision = (t: number, command: string, action: 'allow' | 'deny' | 'approve' = 'allow', rule?: string, message?: string): Event => ({
  k: 'decision', t, command, via: 'http', kinds: [command.split(' ')[0]!.toLowerCase()], action,
  ...(rule ? { rule } : {}), ...(action === 'allow' ? {} : { message: message ?? (rule ? `denied by rule ${rule}` : 'no rule allows it') }),
});
const request = (t: number, command: string) => kubeDecision(t, command);
const refusedRequest = (t: number, command: string, rule?: string) => kubeDecision(t, command, 'deny', rule);

/** An exec URL as kubectl writes it: one `command` parameter per argument. */
const execUrl = (namespace: string, pod: string, argv: string[]) =>
  `/api/v1/namespaces/${namespace}/pods/${pod}/exec?${argv.map((a) => `command=${encodeURIComponent(a)}`).join('&')}&container=app&stdout=true&stderr=true`;

const kubeBot = (at: number, events: Event[]) => recording({ at, workload: 'kube-bot', target: 'prod', protocol: 'kubernetes' }, events);

/** What kube-bot did on the prod cluster: reads in two namespaces, a patch, logs, exec, and refusals. */
function kubeBotRecordings(): Recording[] {
  return [
    kubeBot(MAR_10, [
      request(1, 'GET /api?timeout=32s'),
      request(2, 'GET /apis?timeout=32s'),
      request(10, 'GET /api/v1/namespaces/shop/pods?limit=500'),
      request(11, 'GET /api/v1/namespaces/shop/pods?limit=500'),
      request(12, 'GET /api/v1/namespaces/shop/pods/web-0'),
      request(13, 'GET /api/v1/namespaces/shop/pods?watch=true&resourceVersion=10'),
      request(14, 'GET /apis/apps/v1/namespaces/shop/deployments?limit=500'),
      request(15, 'PATCH /apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl-patch'),
      request(16, 'GET /api/v1/namespaces/staging/pods?limit=500'),
      request(17, 'GET /api/v1/namespaces/shop/pods/web-0/log?container=app'),
      request(18, 'GET /api/v1/nodes?limit=500'),
      request(19, 'GET /api/v1/namespaces/shop/secrets/app-config'),
      refusedRequest(20, 'DELETE /apis/apps/v1/namespaces/shop/deployments/web', 'ops#2'),
      refusedRequest(21, 'GET /api/v1/namespaces/kube-system/secrets'),
      // refused by a rule on the name, though another secret of shop could be read
      refusedRequest(22, 'GET /api/v1/namespaces/shop/secrets/db-password', 'ops#3'),
      refusedRequest(23, 'GET /metrics'),
      refusedRequest(24, 'GET /api/v1/namespaces/shop/pods/../secrets'),
    ]),
    kubeBot(MAR_10 + HOUR, [
      // kubectl exec opens a WebSocket with GET; older clients POST: both are a create of pods/exec
      request(1, `GET ${execUrl('shop', 'web-0', ['ls', '-l'])}`),
      request(2, `POST ${execUrl('shop', 'web-1', ['cat', '/etc/hostname'])}`),
      request(3, `GET ${execUrl('shop', 'web-1', ['ls', '-l'])}`),
      request(4, `GET ${execUrl('shop', 'web-0', ['ls', '/srv/*.conf'])}`),
      request(5, `GET ${execUrl('staging', 'api-0', ['env'])}`),
      refusedRequest(6, `GET ${execUrl('shop', 'web-0', ['rm', '-rf', '/'])}`, 'ops#4'),
      // refused as a whole in the period, though each of its parts ran on its own
      refusedRequest(7, `GET ${execUrl('shop', 'web-0', ['sh', '-c', 'ls -l; cat /etc/hostname'])}`, 'ops#5'),
    ]),
  ];
}

const KUBE_CONFIG_HEAD = `
agents: { cgroup: /agents.slice }
workloads:
  - { name: kube-bot, match: { cgroup: /agents.slice/kube-bot.service } }
targets:
  - name: prod
    protocol: kubernetes
    address: 127.0.0.6:6443
    upstream: { token: { file: /etc/interlock/prod.token }, ca: { file: /etc/interlock/prod-ca.crt } }
`;

function kubeRulesFor(yaml: string): KubeRuleSet {
  const policies = parseConfig(KUBE_CONFIG_HEAD + yaml, 'suggested.yaml').policies;
  return new KubeRuleSet(policiesFor(policies, { workload: 'kube-bot', groups: [], uid: 1000 }, 'prod'));
}

const kubeAction = (rs: KubeRuleSet, command: string) => {
  const space = command.indexOf(' ');
  return rs.decide(requestInfo(command.slice(0, space), command.slice(space + 1))).action;
};

function kubeUsage(t: TargetReview): KubernetesUsage {
  if (t.usage?.protocol !== 'kubernetes') throw new Error(`no Kubernetes usage on ${t.target}`);
  return t.usage;
}

describe('Kubernetes review', () => {
  const data = () => aggregate(kubeBotRecordings(), {});
  const suggestedRules = (d: ReviewData = data()) => kubeRulesFor(suggestedPolicyYaml(d));

  it('aggregates requests by verb, group, resource and namespace, exec commands and other URLs', () => {
    const t = target(data(), 'kube-bot', 'prod');
    const u = kubeUsage(t);
    expect(t.protocol).toBe('kubernetes');
    expect(t.counts).toMatchObject({ allowed: 17, denied: 7 });
    const row = (verb: string, apiGroup: string, resource: string, namespace: string) =>
      u.requests.find((r) => r.verb === verb && r.apiGroup === apiGroup && r.resource === resource && r.namespace === namespace);
    expect(row('list', '', 'pods', 'shop')).toMatchObject({ allowed: 2, denied: 0 });
    expect(row('watch', '', 'pods', 'shop')).toMatchObject({ allowed: 1 });
    expect(row('patch', 'apps', 'deployments', 'shop')).toMatchObject({ allowed: 1 });
    expect(row('delete', 'apps', 'deployments', 'shop')).toMatchObject({ allowed: 0, denied: 1 });
    expect(row('list', '', 'nodes', '')).toMatchObject({ allowed: 1 });
    expect(row('get', '', 'secrets', 'shop')).toMatchObject({ allowed: 1, denied: 1 });
    // exec over GET or POST is a create of pods/exec, as the rules read it
    expect(row('create', '', 'pods/exec', 'shop')).toMatchObject({ allowed: 4, denied: 2 });
    expect(u.requests.some((r) => r.verb === 'get' && r.resource === 'pods/exec')).toBe(false);
    expect(u.exec.map((e) => [e.namespace, e.command, e.allowed, e.denied, e.pods])).toEqual([
      ['shop', 'ls -l', 2, 0, ['web-0', 'web-1']],
      ['shop', 'cat /etc/hostname', 1, 0, ['web-1']],
      ['shop', "ls '/srv/*.conf'", 1, 0, ['web-0']],
      ['shop', 'rm -rf /', 0, 1, ['web-0']],
      ['shop', "sh -c 'ls -l; cat /etc/hostname'", 0, 1, ['web-0']],
      ['staging', 'env', 1, 0, ['api-0']],
    ]);
    expect(u.exec.find((e) => e.command === 'rm -rf /')).toMatchObject({ rule: 'ops#4' });
    expect(u.nonResource.map((p) => [p.method, p.path, p.allowed, p.denied])).toEqual([
      ['GET', '/api', 1, 0],
      ['GET', '/apis', 1, 0],
      ['GET', '/metrics', 0, 1],
    ]);
    expect(u.invalid).toBe(1);
  });

  it('loads back through parseConfig and decides every recorded request as recorded', () => {
    const rs = suggestedRules();
    const t = target(data(), 'kube-bot', 'prod');
    for (const c of t.commands) {
      const expected = c.allowed ? 'allow' : 'deny';
      expect([c.command, kubeAction(rs, c.command)]).toEqual([c.command, expected]);
    }
    expect(suggest(data()).suggestions[0]!.warnings).toEqual([]);
  });

  it('denies requests the workload never made', () => {
    const rs = suggestedRules();
    const neverMade = [
      'DELETE /api/v1/namespaces/shop/pods/web-0', // a verb never used
      'DELETE /api/v1/namespaces/shop/pods', // deletecollection
      'POST /apis/apps/v1/namespaces/shop/deployments', // create: only list and patch ran
      'GET /apis/apps/v1/namespaces/shop/deployments/web', // get: only list and patch ran
      'PATCH /apis/apps/v1/namespaces/staging/deployments/web', // another namespace
      'GET /api/v1/namespaces/kube-system/pods', // another namespace
      'GET /api/v1/pods?limit=500', // every namespace at once
      'GET /api/v1/namespaces/shop/configmaps', // another resource
      'GET /api/v1/namespaces/shop/secrets', // a list of what was only read by name
      'GET /api/v1/namespaces/staging/pods/api-0', // get: only list ran in staging
      'GET /api/v1/namespaces/staging/pods/api-0/log', // a subresource used in another namespace
      'GET /api/v1/namespaces/shop/pods/web-0/attach?stdout=true', // another subresource
      'GET /api/v1/namespaces/shop/pods/web-0/portforward?ports=5432',
      'GET /api/v1/nodes/node-1', // get: only list ran
      'GET /apis/rbac.authorization.k8s.io/v1/clusterroles', // another group
      'GET /api/v1/namespaces/shop/secrets/db-password', // refused in the period
      'GET /metrics',
      `GET ${execUrl('shop', 'web-0', ['cat', '/etc/shadow'])}`, // another command
      `GET ${execUrl('shop', 'web-0', ['ls', '-la'])}`,
      `GET ${execUrl('shop', 'web-0', ['sh', '-c', 'rm -rf /'])}`,
      `GET ${execUrl('shop', 'web-0', ['ls', '/srv/other.conf'])}`, // only the exact glob command
      `GET ${execUrl('shop', 'web-0', ['env'])}`, // ran in staging only
      `GET ${execUrl('staging', 'api-0', ['ls', '-l'])}`, // ran in shop only
      `GET ${execUrl('kube-system', 'etcd-0', ['ls', '-l'])}`,
      `GET ${execUrl('shop', 'web-0', ['sh', '-c', 'ls -l; cat /etc/hostname'])}`, // refused in the period
      `GET ${execUrl('shop', 'web-0', []).replace('?&', '?')}`, // no command: whatever the container's shell does
    ];
    for (const command of neverMade) expect([command, kubeAction(rs, command)]).toEqual([command, 'deny']);
  });

  it('over-grants only as documented: any object name, and parts of commands together', () => {
    const rs = suggestedRules();
    expect(kubeAction(rs, 'GET /api/v1/namespaces/shop/pods/web-7')).toBe('allow');
    expect(kubeAction(rs, 'GET /api/v1/namespaces/shop/secrets/other')).toBe('allow');
    expect(kubeAction(rs, 'PATCH /apis/apps/v1/namespaces/shop/deployments/api')).toBe('allow');
    expect(kubeAction(rs, `GET ${execUrl('shop', 'web-9', ['ls', '-l'])}`)).toBe('allow');
    expect(kubeAction(rs, `GET ${execUrl('shop', 'web-0', ['sh', '-c', 'cat /etc/hostname && ls -l'])}`)).toBe('allow');
    // discovery needs no rule
    expect(kubeAction(rs, 'GET /apis/apps/v1')).toBe('allow');
    expect(kubeAction(rs, 'GET /version')).toBe('allow');
  });

  it('writes exact grants per group, verbs and namespaces, exec parts as globs, and denies first', () => {
    const rules = suggest(data()).suggestions[0]!.policy.rules;
    const allows = rules.filter((r) => r.action === 'allow').map((r) => r.match);
    expect(allows).toEqual([
      { verbs: ['get', 'list', 'watch'], apiGroups: [''], resources: ['pods'], namespaces: ['shop'] },
      { verbs: ['get'], apiGroups: [''], resources: ['pods/log', 'secrets'], namespaces: ['shop'] },
      { verbs: ['list', 'patch'], apiGroups: ['apps'], resources: ['deployments'], namespaces: ['shop'] },
      { verbs: ['list'], apiGroups: [''], resources: ['nodes'], namespaces: [''] },
      { verbs: ['list'], apiGroups: [''], resources: ['pods'], namespaces: ['staging'] },
      { verbs: ['create'], apiGroups: [''], resources: ['pods/exec'], namespaces: ['shop'], commands: ['cat /etc/hostname', 'ls -l'] },
      { verbs: ['create'], apiGroups: [''], resources: ['pods/exec'], namespaces: ['staging'], commands: ['env'] },
      { verbs: ['create'], apiGroups: [''], resources: ['pods/exec'], namespaces: ['shop'], pattern: "^(?:ls '\\/srv\\/\\*\\.conf')$" },
    ]);
    const firstAllow = rules.findIndex((r) => r.action === 'allow');
    expect(rules.slice(0, firstAllow)).toEqual([
      {
        action: 'deny',
        match: { verbs: ['create'], apiGroups: [''], resources: ['pods/exec'], namespaces: ['shop'], pattern: "^sh -c 'ls -l; cat \\/etc\\/hostname'$" },
        message: 'refused in the reviewed period',
      },
      {
        action: 'deny',
        match: { verbs: ['get'], apiGroups: [''], resources: ['secrets'], pattern: '^\\/api\\/v1\\/namespaces\\/shop\\/secrets\\/db-password$' },
        message: 'refused in the reviewed period',
      },
    ]);
    const yaml = suggestedPolicyYaml(data());
    expect(yaml).toContain('# get, list, watch of pods (the core group) in shop: 4 requests, any object name');
    expect(yaml).toContain('namespaces: [""]');
    expect(yaml).not.toMatch(/[&*]a\d/); // no YAML anchors: every rule reads on its own
  });

  it('keeps one pod apart when the same command ran in another', () => {
    const recs = [
      kubeBot(MAR_10, [
        request(1, `GET ${execUrl('shop', 'web-0', ['ls'])}`),
        refusedRequest(2, `GET ${execUrl('shop', 'db-0', ['ls'])}`, 'ops#1'),
        request(3, 'GET /api/v1/namespaces/shop/pods/web-0/attach?stdout=true'),
        refusedRequest(4, 'GET /api/v1/namespaces/shop/pods/db-0/attach?stdout=true', 'ops#1'),
      ]),
    ];
    const d = aggregate(recs, {});
    const rs = suggestedRules(d);
    expect(kubeAction(rs, `GET ${execUrl('shop', 'web-0', ['ls'])}`)).toBe('allow');
    expect(kubeAction(rs, `GET ${execUrl('shop', 'db-0', ['ls'])}`)).toBe('deny');
    expect(kubeAction(rs, 'GET /api/v1/namespaces/shop/pods/web-0/attach?stdout=true')).toBe('allow');
    expect(kubeAction(rs, 'GET /api/v1/namespaces/shop/pods/db-0/attach?stdout=true')).toBe('deny');
    expect(suggest(d).suggestions[0]!.warnings).toEqual([]);
  });

  it('warns about a refusal nothing tells apart from what ran, and about an exec without a command', () => {
    const recs = [
      kubeBot(MAR_10, [
        request(1, 'GET /api/v1/namespaces/shop/pods?limit=500'),
        // the same path and verb: only the query differs, and rules do not read the query
        refusedRequest(2, 'GET /api/v1/namespaces/shop/pods?labelSelector=app%3Ddb', 'ops#1'),
        request(3, 'GET /api/v1/namespaces/shop/pods/web-0/exec?container=app&stdin=true&tty=true'),
      ]),
    ];
    const warnings = suggest(aggregate(recs, {})).suggestions[0]!.warnings.join('\n');
    expect(warnings).toMatch(/refused in the period, but no rule tells it apart from requests that ran, so allowed here: GET \/api\/v1\/namespaces\/shop\/pods\?labelSelector/);
    expect(warnings).toMatch(/ran, but an exec without a command, which no command rule allows, so no rule allows it/);
  });

  it('keeps what only ran once approved held for approval, with its approvers', () => {
    const DELETE_POD = 'DELETE /api/v1/namespaces/shop/pods/web-0';
    const DELETE_DEPLOYMENT = 'DELETE /apis/apps/v1/namespaces/shop/deployments/web';
    const recs = [
      kubeBot(MAR_10, [
        request(1, 'GET /api/v1/namespaces/shop/pods'),
        kubeDecision(2, DELETE_POD, 'approve', 'ops#6', 'needs approval'),
        approval(3, DELETE_POD, 'approved', 'alice'),
        kubeDecision(4, DELETE_DEPLOYMENT, 'approve', 'ops#6', 'needs approval'),
        approval(5, DELETE_DEPLOYMENT, 'rejected', 'bob'),
      ]),
    ];
    const d = aggregate(recs, {});
    const s = suggest(d).suggestions[0]!;
    expect(s.policy.rules).toEqual([
      { action: 'allow', match: { verbs: ['list'], apiGroups: [''], resources: ['pods'], namespaces: ['shop'] } },
      { action: 'approve', match: { verbs: ['delete'], apiGroups: [''], resources: ['pods'], namespaces: ['shop'] }, approvers: ['alice'] },
    ]);
    expect(s.warnings).toEqual([]);
    const rs = suggestedRules(d);
    expect(kubeAction(rs, DELETE_POD)).toBe('approve');
    expect(kubeAction(rs, 'DELETE /api/v1/namespaces/shop/pods/web-1')).toBe('approve');
    expect(kubeAction(rs, DELETE_DEPLOYMENT)).toBe('deny'); // rejected: never ran
    expect(kubeAction(rs, 'DELETE /api/v1/namespaces/staging/pods/web-0')).toBe('deny');
    expect(suggestedPolicyYaml(d)).toContain('# delete of pods (the core group) in shop: 1 request approved, any object name');
  });

  it('skips a workload that only read discovery, and says why', () => {
    const recs = [kubeBot(MAR_10, [request(1, 'GET /api'), request(2, 'GET /apis'), refusedRequest(3, 'GET /api/v1/namespaces/shop/pods')])];
    const { suggestions, skipped } = suggest(aggregate(recs, {}));
    expect(suggestions).toEqual([]);
    expect(skipped.join('\n')).toMatch(/kube-bot on prod \(kubernetes\): nothing it was allowed needs a rule \(only discovery ran\)/);
  });

  it('comes out the same whatever order the recordings are read in', () => {
    const recs = kubeBotRecordings();
    expect(suggestedPolicyYaml(aggregate([...recs].reverse(), {}))).toBe(suggestedPolicyYaml(aggregate(recs, {})));
  });

  it('renders requests, exec commands and other URLs in markdown and HTML, escaping what agents sent', () => {
    const recs = [...kubeBotRecordings(), kubeBot(MAR_10 + 2 * HOUR, [refusedRequest(1, `GET ${execUrl('shop', 'web-0', ['echo', '<script>alert(1)</script>|x'])}`)])];
    const d = aggregate(recs, {});
    const yaml = suggestedPolicyYaml(d);
    const md = renderMarkdown(d, yaml);
    expect(md).toContain('### Target prod (kubernetes)');
    expect(md).toContain('| verb | group | resource | namespace | allowed | denied | held |');
    expect(md).toContain('| list | core | `pods` | shop | 2 | 0 | 0 |');
    expect(md).toContain('| list | core | `nodes` | (cluster-wide) | 1 | 0 | 0 |');
    expect(md).toContain('| patch | apps | `deployments` | shop | 1 | 0 | 0 |');
    expect(md).toContain('| shop | 2 | 0 | 0 | `ls -l` | web-0, web-1 |');
    expect(md).toContain("| shop | 0 | 1 | 0 | `echo '<script>alert(1)</script>\\|x'` | web-0 |");
    expect(md).toContain('Other URLs (discovery is allowed without a rule): `GET /api` 1 allowed, `GET /apis` 1 allowed, `GET /metrics` 1 denied');
    expect(md).toContain('1 request refused as unreadable.');
    const html = renderHtml(d, yaml);
    expect(html).not.toContain('<script');
    expect(html).toContain('<td>patch</td><td>apps</td><td><code>deployments</code></td><td>shop</td>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(unbalancedTags(html)).toEqual([]);
  });
});
