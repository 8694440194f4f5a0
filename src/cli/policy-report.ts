/**
 * What interlock does with one SQL text for a workload on a PostgreSQL target, for people
 * writing policies: each statement's kinds, relations and functions, policy's decision and
 * rule, column masking's say, and where each output column's values come from and how they
 * are masked. Pure: it decides through the very functions a session decides through.
 */
import type { RuleAction } from '../config/types.js';
import { noPolicyRefusal } from '../daemon/admission.js';
import type { Enforcement } from '../daemon/enforcement.js';
import { LineageJudge } from '../masking/lineage-judge.js';
import { catalogFunctionEffects, UNKNOWN_EFFECTS } from '../policy/function-effects.js';
import type { OutputColumn, SourceColumn } from '../masking/lineage.js';
import type { ColumnMasking, ResultColumn } from '../masking/plan.js';
import { analyzeQuery, type StatementAnalysis } from '../policy/analysis.js';
import type { Decision } from '../policy/rules.js';
import type { Catalog } from '../protocols/postgres/catalog.js';
import { DENIED_SQLSTATE } from '../protocols/postgres/denial.js';
import { decideWithMasking, type MaskingState } from '../protocols/postgres/query-decision.js';

/** The catalog the check ran with, or why it ran without one. */
export type CatalogOutcome = { catalog: Catalog; from: string } | { missing: string } | { notNeeded: true };

export interface CheckSubject {
  workload: string;
  target: string;
  /** the address agents dial for it ("ip:port") */
  address: string;
  /** names of the policies that govern the workload on the target, in order */
  policies: string[];
  enforcement: Enforcement;
  /** the masking rules' names, by masker index */
  maskingRuleNames: string[];
  catalog: CatalogOutcome;
  /** approvals are configured: an `approve` decision holds the statement (else it is refused) */
  approvals: boolean;
  /** what the check could not take into account */
  notes: string[];
}

export interface DecisionReport {
  action: RuleAction;
  /** "policy#n" of the deciding rule; undefined for a refusal by column masking or when no rule matched */
  rule?: string;
  message: string;
  by: 'policy' | 'column masking';
  approvers?: string[];
  timeout?: string;
  /** what the agent gets when it is not run: SQLSTATE and message */
  agentSees?: { sqlstate: string; message: string };
}

export type OutputMasking =
  | { kind: 'whole'; rule: string; strategy: string }
  | { kind: 'scan'; detectors: { detector: string; rule: string; strategy: string }[] }
  | { kind: 'none' };

export interface OutputReport {
  /** 1-based, as the result's columns are counted */
  position: number;
  name: string;
  /** masked table columns ("schema.table.column") whose values this output returns unchanged */
  sources: string[];
  /** per source (or, with none, by the output's name): the rule that masks it */
  masking: OutputMasking[];
  /** a `*` over something of unknown width: this position and those after it are not known */
  unknownWidth?: boolean;
}

export interface StatementReport {
  text: string;
  kinds: string[];
  relations: { name: string; access: 'read' | 'write' }[];
  functions: string[];
  /** policy's decision alone */
  policy: DecisionReport;
  /** what runs: policy's decision, unless column masking refuses */
  decision: DecisionReport;
  /** lineage of the rows it returns (column rules apply and the catalog was read); undefined when unknown */
  outputs?: OutputReport[];
}

export interface PolicyCheckReport {
  workload: string;
  target: string;
  policies: string[];
  catalog: { read: boolean; detail: string };
  /** some masking rule names columns: every statement is checked by lineage */
  columnRules: boolean;
  /** detectors that scan every column of every result (when no column rule needs lineage to say where) */
  everyColumn?: OutputMasking;
  notes: string[];
  sql: string;
  parseError?: string;
  /** the whole text, as the proxy decides a simple Query */
  decision: DecisionReport;
  statements: StatementReport[];
}

export function checkReport(sql: string, s: CheckSubject): PolicyCheckReport {
  const { judge, masker } = s.enforcement;
  const catalog = 'catalog' in s.catalog ? s.catalog.catalog : undefined;
  // as a session: lineage only while column rules apply, and without a catalog it refuses everything
  const lineage = () => (masker.hasColumnRules ? new LineageJudge(catalog?.lineage, masker.lineageRules) : undefined);
  const masking = (): MaskingState => ({ masker, catalog, lineage: lineage() });
  // which calls may write, from the catalog; none read: every call but the harmless built-ins, as the proxy does
  const effects = judge.judgesFunctions ? (catalog?.lineage ? catalogFunctionEffects(catalog.lineage) : UNKNOWN_EFFECTS) : undefined;
  const name = (i: number) => s.maskingRuleNames[i] ?? `masking rule ${i + 1}`;
  const named = (m: ColumnMasking): OutputMasking =>
    m.kind === 'whole' ? { kind: 'whole', rule: name(m.rule), strategy: m.strategy }
      : m.kind === 'scan' ? { kind: 'scan', detectors: m.detectors.map((d) => ({ ...d, rule: name(d.rule) })) }
        : m;

  const whole = decideWithMasking(sql, judge.decideText(sql, undefined, effects), masking());
  const analysis = analyzeQuery(sql);
  // statement by statement, in order, with one session's lineage state (a PREPARE before its EXECUTE)
  const perStatement = masking();
  const statements = analysis.statements.map((st): StatementReport => {
    const verdict = judge.decideText(st.text, undefined, effects);
    const d = decideWithMasking(st.text, verdict, perStatement);
    const columns = perStatement.lineage?.outputColumns(st.text);
    return {
      ...describeStatement(st),
      policy: decisionReport(verdict.decision, 'policy', s.approvals),
      decision: decisionReport(d.decision, d.byMasking ? 'column masking' : 'policy', s.approvals),
      ...(columns ? { outputs: columns.map((o, i) => outputReport(o, i, (cols) => masker.explain(cols).map(named))) } : {}),
    };
  });
  const report: PolicyCheckReport = {
    workload: s.workload,
    target: s.target,
    policies: s.policies,
    catalog: catalogLine(s.catalog, masker.hasColumnRules),
    columnRules: masker.hasColumnRules,
    notes: s.notes,
    sql,
    decision: s.policies.length ? decisionReport(whole.decision, whole.byMasking ? 'column masking' : 'policy', s.approvals) : noPolicy(s),
    statements,
  };
  if (analysis.error) report.parseError = analysis.error.message;
  if (!masker.hasColumnRules && !masker.empty) report.everyColumn = named(masker.explain([{ name: '?column?', typeOid: 0, format: 0 }])[0]!);
  return report;
}

function describeStatement(st: StatementAnalysis): Pick<StatementReport, 'text' | 'kinds' | 'relations' | 'functions'> {
  return {
    text: st.text,
    kinds: [...st.kinds],
    relations: st.relations.map((r) => ({ name: qualified(r.schema, r.name), access: r.access })),
    functions: st.functions.map((f) => qualified(f.schema, f.name)),
  };
}

function outputReport(o: OutputColumn, i: number, explain: (cols: ResultColumn[]) => OutputMasking[]): OutputReport {
  // a masked source is planned as that table column; any other output by its name, as a computed column
  const columns: ResultColumn[] = o.sources.length
    ? o.sources.map((src) => ({ name: src.column, tableName: `${src.schema}.${src.table}`, typeOid: 0, format: 0 }))
    : [{ name: o.name, typeOid: 0, format: 0 }];
  const out: OutputReport = { position: i + 1, name: o.name, sources: o.sources.map(sourceName), masking: explain(columns) };
  if (o.unknownWidth) out.unknownWidth = true;
  return out;
}

function decisionReport(d: Decision, by: DecisionReport['by'], approvals: boolean): DecisionReport {
  const r: DecisionReport = { action: d.action, message: d.message, by };
  if (d.rule) r.rule = d.rule;
  if (d.approvers) r.approvers = d.approvers;
  if (d.timeout) r.timeout = d.timeout;
  // a hold without an approval service is refused, as a session refuses it
  if (d.action === 'deny' || (d.action === 'approve' && !approvals)) r.agentSees = { sqlstate: DENIED_SQLSTATE, message: `interlock: ${d.message}` };
  return r;
}

/** With no policy for the target, admission refuses the connection before any statement. */
function noPolicy(s: CheckSubject): DecisionReport {
  const refusal = noPolicyRefusal(s.workload, s.target, s.address);
  return { action: 'deny', message: 'no policy binds the workload to the target: its connections are refused', by: 'policy', agentSees: { sqlstate: refusal.code, message: refusal.message } };
}

function catalogLine(c: CatalogOutcome, columnRules: boolean): PolicyCheckReport['catalog'] {
  if ('notNeeded' in c) return { read: false, detail: 'not needed: no masking rule names columns and no rule judges statements' };
  if ('missing' in c) {
    return { read: false, detail: `not read (${c.missing})${columnRules ? '; without it column masking refuses every statement, as the proxy does' : ''}; every function call but the harmless built-ins counts as a possible write` };
  }
  return { read: true, detail: `read from ${c.from}: ${c.catalog.byName.size} relations` };
}

const qualified = (schema: string | undefined, name: string) => (schema ? `${schema}.${name}` : name);
const sourceName = (s: SourceColumn) => `${s.schema}.${s.table}.${s.column}`;
