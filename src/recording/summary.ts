/**
 * What `sessions list` and `sessions show` print about recordings. Pure: recordings in,
 * text out.
 */
import type { DecisionEvent, Recording } from './events.js';

export interface SessionRow {
  id: string;
  started?: number;
  lastActivity?: number;
  durationMs?: number;
  protocol: string;
  workload?: string;
  target?: string;
  agent: string;
  commands: number;
  denied: number;
  held: number;
  status: 'sealed' | 'incomplete' | 'FAILED';
  truncated: boolean;
}

export function summarize(rec: Recording): SessionRow {
  const s = rec.start;
  const last = rec.events[rec.events.length - 1];
  let commands = 0, denied = 0, held = 0;
  for (const e of rec.events) {
    if (e.k !== 'decision') continue;
    commands++;
    if (e.action === 'deny') denied++;
    else if (e.action === 'approve') held++;
  }
  return {
    id: rec.id,
    started: s?.at,
    lastActivity: s && last ? s.at + last.t : undefined,
    durationMs: rec.end?.t,
    protocol: s?.protocol ?? '?',
    workload: s?.workload,
    target: s?.target,
    agent: s ? `${s.comm ?? '?'}[${s.pid ?? '?'}]` : '?',
    commands,
    denied,
    held,
    status: rec.problems.length ? 'FAILED' : rec.sealed ? 'sealed' : 'incomplete',
    truncated: rec.truncated,
  };
}

const iso = (ms?: number) => (ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));

export function formatDuration(ms?: number): string {
  if (ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.round(s % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}

export function formatSessionTable(rows: SessionRow[]): string {
  const header = ['SESSION', 'STARTED', 'DURATION', 'PROTOCOL', 'WORKLOAD', 'TARGET', 'AGENT', 'COMMANDS', 'DENIED', 'HELD', 'STATUS'];
  const cells = rows.map((r) => [
    r.id, iso(r.started), formatDuration(r.durationMs), r.protocol, r.workload ?? '-', r.target ?? '-', r.agent,
    String(r.commands), String(r.denied), String(r.held), r.status + (r.truncated ? ',truncated' : ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
  return [line(header), ...cells.map(line)].join('\n') + `\n${rows.length} session${rows.length === 1 ? '' : 's'}\n`;
}

export function formatSessionDetail(rec: Recording): string {
  const s = rec.start;
  const row = summarize(rec);
  const out: string[] = [];
  const field = (name: string, value: unknown) => {
    if (value !== undefined && value !== '') out.push(`${(name + ':').padEnd(14)}${typeof value === 'string' ? value : JSON.stringify(value)}`);
  };
  field('session', rec.id);
  field('integrity', rec.problems.length ? `FAILED: ${rec.problems[0]}` : rec.sealed ? 'verified, sealed' : 'verified, incomplete (not sealed: live, or the daemon stopped abruptly)');
  if (s) {
    field('protocol', s.protocol);
    field('started', iso(s.at));
    field('node', s.node);
    field('workload', s.workload);
    field('groups', s.groups?.join(', '));
    field('target', s.target);
    field('destination', s.dst);
    field('agent', `pid ${s.pid ?? '?'} uid ${s.uid ?? '?'} comm ${s.comm ?? '?'}`);
    field('executable', s.exe);
    field('command line', s.cmdline?.map((a) => (/^[\w./:=@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(' '));
    field('cgroup', s.cgroup);
    for (const [k, v] of Object.entries(s.login ?? {})) field(k, v);
  }
  if (rec.end) {
    field('ended', `${iso(s ? s.at + rec.end.t : undefined)} after ${formatDuration(rec.end.t)}: ${rec.end.reason}`);
    field('traffic', `${rec.end.bytesIn} bytes in, ${rec.end.bytesOut} bytes out, ${rec.end.rows} rows`);
  }
  if (rec.truncated) field('truncated', 'yes: the session reached its recording size cap; later data was not recorded');

  const decisions = rec.events.filter((e): e is DecisionEvent => e.k === 'decision');
  out.push('', `decisions: ${row.commands} (${row.commands - row.denied - row.held} allowed, ${row.denied} denied, ${row.held} held for approval)`);
  const kinds = new Map<string, number>();
  for (const d of decisions) for (const k of d.kinds) kinds.set(k, (kinds.get(k) ?? 0) + 1);
  if (kinds.size) out.push(`  kinds: ${[...kinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const refused = decisions.filter((d) => d.action !== 'allow');
  for (const d of refused.slice(0, 20)) out.push(`  ${d.action.padEnd(7)} +${formatDuration(d.t)}  ${oneLine(d.command)}  (${d.message ?? ''})`);
  if (refused.length > 20) out.push(`  … and ${refused.length - 20} more`);
  const masked = new Map<string, number>();
  for (const e of rec.events) if (e.k === 'masked') for (const [k, n] of Object.entries(e.counts)) masked.set(k, (masked.get(k) ?? 0) + n);
  if (masked.size) out.push(`masked values: ${[...masked].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const approvals = rec.events.filter((e) => e.k === 'approval');
  if (approvals.length) out.push(`approvals: ${approvals.length}`);
  return out.join('\n') + '\n';
}

function oneLine(s: string): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > 100 ? `${flat.slice(0, 99)}…` : flat;
}
