/** `interlock policy check`'s report as text, for a terminal. */
import { oneLine } from './one-line.js';
import type { DecisionReport, OutputMasking, OutputReport, PolicyCheckReport, StatementReport } from './policy-report.js';

export function renderReport(r: PolicyCheckReport): string {
  const out: string[] = [
    `workload ${r.workload} on target ${r.target}: ${r.policies.length ? `policies ${r.policies.join(', ')}` : 'no policy (every connection is refused)'}`,
    `catalog: ${r.catalog.detail}`,
    `column masking: ${r.columnRules ? 'column rules apply: every statement is checked by lineage' : 'no column rules'}`,
  ];
  if (r.everyColumn && r.everyColumn.kind !== 'none') out.push(`every result column: ${masking(r.everyColumn)}`);
  for (const note of r.notes) out.push(`note: ${note}`);
  if (r.parseError) out.push(`parse error: ${r.parseError}`);
  out.push('', `decision: ${decision(r.decision)}`);
  if (r.decision.agentSees) out.push(`  the agent sees: ERROR ${r.decision.agentSees.sqlstate} ${r.decision.agentSees.message}`);
  r.statements.forEach((s, i) => out.push('', ...statement(s, i + 1)));
  const scans = [r.everyColumn, ...r.statements.flatMap((s) => (s.outputs ?? []).flatMap((o) => o.masking))].some((m) => m?.kind === 'scan');
  // the result's types come with its rows, which the check never asks for
  if (scans) out.push('', 'detectors skip columns of types that cannot hold what they look for (integers, dates, booleans, uuids …); the check does not know result types');
  return `${out.join('\n')}\n`;
}

function statement(s: StatementReport, n: number): string[] {
  const lines = [
    `statement ${n}: ${oneLine(s.text)}`,
    `  kinds      ${s.kinds.join(', ')}`,
    `  relations  ${s.relations.map((r) => `${r.name} (${r.access})`).join(', ') || '-'}`,
    `  functions  ${s.functions.join(', ') || '-'}`,
    `  policy     ${decision(s.policy)}`,
  ];
  if (s.decision.by === 'column masking') lines.push(`  masking    refused: ${s.decision.message}`);
  if (s.outputs) {
    lines.push(`  outputs    ${s.outputs.length === 0 ? '(no rows)' : ''}`.trimEnd());
    const width = Math.max(...s.outputs.map((o) => o.name.length), 0);
    for (const o of s.outputs) lines.push(`    ${output(o, width)}`);
  }
  return lines;
}

function decision(d: DecisionReport): string {
  const by = d.by === 'column masking' ? 'by column masking' : d.rule ? `by rule ${d.rule}` : '(no rule matched)';
  if (d.action === 'allow') return `allow (${by})`;
  const extra = [d.approvers?.length ? `approvers: ${d.approvers.join(', ')}` : '', d.timeout ? `timeout ${d.timeout}` : ''].filter(Boolean).join('; ');
  const held = d.action !== 'approve' ? '' : d.agentSees ? ' (approvals are not configured: it is refused)' : ' (held until a human approves)';
  return `${d.action} ${by}: ${d.message}${extra ? ` [${extra}]` : ''}${held}`;
}

function output(o: OutputReport, width: number): string {
  const from = o.sources.length ? `← ${o.sources.join(' + ')}` : '';
  const how = o.masking.map(masking).join('; ');
  const unknown = o.unknownWidth ? ' (a * of unknown width: this position and later ones are not known)' : '';
  return `${String(o.position).padStart(2)}  ${o.name.padEnd(width)}  ${[from, how].filter(Boolean).join('  ')}${unknown}`.trimEnd();
}

function masking(m: OutputMasking): string {
  if (m.kind === 'whole') return `masked whole: ${m.strategy} (${m.rule})`;
  if (m.kind === 'scan') return `scanned by ${m.detectors.map((d) => `${d.detector} → ${d.strategy} (${d.rule})`).join(', ')}`;
  return 'not masked';
}
