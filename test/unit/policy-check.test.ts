/**
 * `interlock policy check`'s report, assembled from the daemon's own pieces on a hand-built
 * catalog: policy and column masking decide as in a session, lineage names the masked
 * sources of each output, the masking rule and strategy are named per policy, and the
 * text and exit status say the same.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { PolicyDef } from '../../src/config/types.js';
import { compileEnforcement, maskingRuleNames } from '../../src/daemon/enforcement.js';
import type { LineageCatalog } from '../../src/masking/lineage-context.js';
import { compileMasking, type ResultColumn } from '../../src/masking/plan.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import type { Catalog } from '../../src/protocols/postgres/catalog.js';
import { decideWithMasking } from '../../src/protocols/postgres/query-decision.js';
import { checkReport, type CatalogOutcome, type CheckSubject } from '../../src/cli/policy-report.js';
import { renderReport } from '../../src/cli/policy-report-text.js';

const TABLES: [string, string[], string?][] = [
  ['public.customers', ['id', 'name', 'email', 'ssn']],
  ['public.orders', ['id', 'customer_id', 'total']],
  ['public.contacts', ['id', 'tax_id'], ' SELECT customers.id,\n    customers.ssn AS tax_id\n   FROM customers;'],
];

const lineage: LineageCatalog = {
  relations: new Map(TABLES.map(([key, columns, definition]) => {
    const [schema, name] = key.split('.') as [string, string];
    return [key, definition ? { schema, name, columns, definition } : { schema, name, columns }];
  })),
  builtinFunctions: new Set(['upper', 'count', 'nextval']),
  otherFunctions: new Set(),
  volatileBuiltins: new Set(['nextval']),
  volatileOthers: new Set(),
};
const CATALOG: Catalog = { byOid: new Map(), byName: new Map(TABLES.map(([key, columns]) => [key, { name: key, columns }])), lineage };

/** Two policies: the masking rules' names must follow the policy each comes from. */
function policies(masking = true, extra = ''): PolicyDef[] {
  return parseConfig(`
agents: { cgroup: /agents.slice }
workloads: [ { name: bot, match: { cgroup: /agents.slice/bot }, groups: [g] } ]
targets: [ { name: db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app } } ]
policies:
  - name: readers
    subjects: { groups: [g] }
    targets: [db]
    rules:
      - { action: deny, match: { statements: [delete] }, message: "no deletes" }
      - { action: approve, match: { statements: [update] }, approvers: [dba], timeout: 10m }
      - { action: allow, match: { statements: [select, copy_to] } }
    masking:
      - { detectors: [email], strategy: redact }
${masking ? `  - name: pii
    subjects: { groups: [g] }
    targets: [db]
    masking:
      - { columns: [customers.ssn], strategy: partial }
${extra}` : ''}`, 'test.yaml').policies;
}

function subject(opts: { catalog?: CatalogOutcome; masking?: boolean; approvals?: boolean; none?: boolean } = {}): CheckSubject {
  const ps = opts.none ? [] : policies(opts.masking ?? true);
  return {
    workload: 'bot', target: 'db', address: '127.0.0.3:5432', policies: ps.map((p) => p.name),
    enforcement: compileEnforcement(ps, Buffer.from('k')), maskingRuleNames: maskingRuleNames(ps),
    catalog: opts.catalog ?? { catalog: CATALOG, from: 'db (127.0.0.3:5432, database orders)' },
    approvals: opts.approvals ?? false, notes: [],
  };
}

beforeAll(() => initAnalysis());

describe('policy check report', () => {
  it('names the masked source of a renamed output, its rule (by policy) and strategy', () => {
    const r = checkReport('select ssn as x, name from customers', subject());
    expect(r.decision).toMatchObject({ action: 'allow', rule: 'readers#3', by: 'policy' });
    expect(r.statements[0]!.outputs).toEqual([
      { position: 1, name: 'x', sources: ['public.customers.ssn'], masking: [{ kind: 'whole', rule: 'pii masking#1', strategy: 'partial' }] },
      { position: 2, name: 'name', sources: [], masking: [{ kind: 'scan', detectors: [{ detector: 'email', rule: 'readers masking#1', strategy: 'redact' }] }] },
    ]);
    expect(r.catalog).toEqual({ read: true, detail: 'read from db (127.0.0.3:5432, database orders): 3 relations' });
  });

  it('follows a view to the masked column it renames', () => {
    const r = checkReport('select tax_id from contacts', subject());
    expect(r.statements[0]!.outputs?.[0]?.sources).toEqual(['public.customers.ssn']);
  });

  it('a masked column computed on is refused by column masking though policy allows it', () => {
    const r = checkReport('select upper(ssn) from customers', subject());
    const s = r.statements[0]!;
    expect(s.kinds).toEqual(['select']);
    expect(s.functions).toEqual(['upper']);
    expect(s.policy).toMatchObject({ action: 'allow', rule: 'readers#3' });
    expect(s.decision).toMatchObject({ action: 'deny', by: 'column masking' });
    expect(r.decision.agentSees?.sqlstate).toBe('42501');
    expect(r.decision.agentSees?.message).toMatch(/^interlock: customers\.ssn is masked/);
  });

  it('without a catalog, column rules refuse every statement; policy and kinds are still shown', () => {
    const r = checkReport('select name from customers', subject({ catalog: { missing: '--offline' } }));
    expect(r.catalog.read).toBe(false);
    expect(r.catalog.detail).toContain('--offline');
    expect(r.catalog.detail).toContain('refuses every statement');
    expect(r.decision).toMatchObject({ action: 'deny', by: 'column masking' });
    expect(r.decision.message).toContain('catalog could not be read');
    expect(r.statements[0]).toMatchObject({ kinds: ['select'], relations: [{ name: 'customers', access: 'read' }], policy: { action: 'allow', rule: 'readers#3' } });
    expect(r.statements[0]!.outputs).toBeUndefined();
  });

  it('a deny rule decides before masking is asked', () => {
    const r = checkReport('delete from customers where ssn = $1', subject());
    expect(r.decision).toMatchObject({ action: 'deny', rule: 'readers#1', message: 'no deletes', by: 'policy' });
    expect(r.statements[0]!.relations).toEqual([{ name: 'customers', access: 'write' }]);
  });

  it('the whole text is decided as the proxy decides a simple Query: the worst statement wins', () => {
    const r = checkReport('select id from orders; delete from orders', subject());
    expect(r.statements.map((s) => s.decision.action)).toEqual(['allow', 'deny']);
    expect(r.decision).toMatchObject({ action: 'deny', rule: 'readers#1' });
  });

  it('an approval rule holds the statement, or refuses it when approvals are not configured', () => {
    const held = checkReport('update orders set total = 0', subject({ approvals: true }));
    expect(held.decision).toMatchObject({ action: 'approve', rule: 'readers#2', approvers: ['dba'], timeout: '10m' });
    expect(held.decision.agentSees).toBeUndefined();
    expect(renderReport(held)).toContain('(held until a human approves)');
    const refused = checkReport('update orders set total = 0', subject({ approvals: false }));
    expect(refused.decision.agentSees?.sqlstate).toBe('42501');
    expect(renderReport(refused)).toContain('approvals are not configured: it is refused');
  });

  it('no policy for the target: the connection is refused as admission refuses it', () => {
    const r = checkReport('select 1', subject({ none: true }));
    expect(r.decision).toMatchObject({ action: 'deny', agentSees: { sqlstate: '28000', message: 'interlock: workload bot has no policy for target db (127.0.0.3:5432)' } });
  });

  it('without column rules the catalog still judges function calls, and the detectors that scan every column are named', () => {
    const r = checkReport('select upper(name) from customers', subject({ masking: false }));
    expect(r.columnRules).toBe(false);
    expect(r.decision.action).toBe('allow');
    expect(r.everyColumn).toEqual({ kind: 'scan', detectors: [{ detector: 'email', rule: 'readers masking#1', strategy: 'redact' }] });
    expect(r.statements[0]!.outputs).toBeUndefined();
    expect(r.catalog.read).toBe(true);
    const write = checkReport("select nextval('s')", subject({ masking: false }));
    expect(write.decision.action).toBe('deny');
    expect(write.decision.message).toContain('nextval()');
  });

  it('a statement that does not parse is denied, and says why', () => {
    const r = checkReport('selec 1', subject());
    expect(r.parseError).toMatch(/syntax error/);
    expect(r.decision.action).toBe('deny');
    expect(r.statements).toEqual([]);
  });

  it('renders outputs, decisions and the refusal as text', () => {
    const text = renderReport(checkReport('select ssn as x from customers; select upper(ssn) from customers', subject()));
    expect(text).toContain('workload bot on target db: policies readers, pii');
    expect(text).toMatch(/^decision: deny by column masking: customers\.ssn is masked/m);
    expect(text).toMatch(/^ {2}the agent sees: ERROR 42501 interlock: customers\.ssn is masked/m);
    expect(text).toMatch(/^statement 1: select ssn as x from customers$/m);
    expect(text).toMatch(/^ {5}1 {2}x {2}← public\.customers\.ssn {2}masked whole: partial \(pii masking#1\)$/m);
    expect(text).toMatch(/^statement 2: .*\n(?:.*\n)*? {2}masking {4}refused: customers\.ssn is masked/m);
  });
});

describe('the pieces the check shares with the daemon', () => {
  it('explain names the rules behind exactly the plan forColumns makes', () => {
    const masker = compileMasking([
      { columns: ['customers.ssn'], strategy: 'partial' },
      { columns: ['notes'], detectors: ['email', 'ssn'], strategy: 'hash' },
      { detectors: ['email'], strategy: 'redact' },
    ], { hashKey: 'k' });
    const cols: ResultColumn[] = [
      { name: 'ssn', tableName: 'public.customers', typeOid: 25, format: 0 },
      { name: 'notes', tableName: 'public.orders', typeOid: 25, format: 0 },
      { name: 'name', typeOid: 25, format: 0 },
      { name: 'id', typeOid: 23, format: 0 },
    ];
    const plan = masker.forColumns(cols).columns;
    const explained = masker.explain(cols);
    expect(explained.map((e) => e.kind)).toEqual(plan.map((p) => p?.kind ?? 'none'));
    expect(explained[0]).toEqual({ kind: 'whole', rule: 0, strategy: 'partial' });
    // the first rule naming a detector gives it its strategy: email from rule 1 (hash), not rule 2
    expect(explained[1]).toEqual({ kind: 'scan', detectors: [{ detector: 'email', rule: 1, strategy: 'hash' }, { detector: 'ssn', rule: 1, strategy: 'hash' }] });
    expect(plan[1]?.kind === 'scan' && plan[1].scanners.map((s) => s.detector.name)).toEqual(['email', 'ssn']);
    expect(explained[2]).toEqual({ kind: 'scan', detectors: [{ detector: 'email', rule: 2, strategy: 'redact' }] });
  });

  it('masking rules are named in the order the masker applies them', () => {
    expect(maskingRuleNames(policies())).toEqual(['readers masking#1', 'pii masking#1']);
  });

  it('a COPY whose columns masking cannot know is refused; a table COPY carries its catalog columns', () => {
    const { masker } = compileEnforcement(policies(), Buffer.from('k'));
    const verdict = { decision: { action: 'allow' as const, message: 'allowed' }, kinds: ['copy_to'], auditJson: '' };
    const query = decideWithMasking('copy (select 1) to stdout', verdict, { masker, catalog: CATALOG });
    expect(query).toMatchObject({ byMasking: true, decision: { action: 'deny' } });
    const table = decideWithMasking('copy customers to stdout', verdict, { masker, catalog: CATALOG });
    expect(table.byMasking).toBe(false);
    expect(table.copies?.[0]?.columns).toEqual({ names: ['id', 'name', 'email', 'ssn'], tableName: 'public.customers' });
  });
});
