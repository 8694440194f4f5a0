/**
 * Access review, last step: the aggregated review and the suggested policy as Markdown or as
 * one self-contained HTML page (inline CSS and SVG, no scripts, no external assets; the page's
 * Content-Security-Policy forbids both, in case something slips through the escaping).
 * Command texts come from agents and are untrusted: every piece of text is escaped.
 */
import {
  dayOf,
  type ActionCounts,
  type ChannelUse,
  type DayBucket,
  type FileOperation,
  type KubernetesUsage,
  type KubeRequestUse,
  type PostgresUsage,
  type ProtocolUsage,
  type ReviewData,
  type SshUsage,
  type TargetReview,
  type WorkloadReview,
} from './aggregate.js';

const MAX_COMMAND_CHARS = 200;
/** rows of an SSH commands or files table; the rest is summed up in a line */
const MAX_ROWS = 50;
/** pods named in an exec row; pods of a deployment differ by their suffix only */
const MAX_PODS = 3;
/** channels whose requests say something (where to, which subsystem); a shell is just a shell */
const DESCRIBED_CHANNELS = new Set(['port-forward', 'remote-forward', 'subsystem', 'env']);

// ---------------------------------------------------------------------------
// Markdown

export function renderMarkdown(data: ReviewData, suggestedYaml: string): string {
  const out: string[] = ['# Access review', '', summaryLine(data), ''];
  if (data.workloads.length) {
    out.push('| workload | sessions | allowed | denied | held | approved | masked | last activity |', '|---|--:|--:|--:|--:|--:|--:|---|');
    for (const w of data.workloads) {
      const c = w.counts;
      out.push(`| ${md(w.workload)} | ${w.sessions} | ${c.allowed} | ${c.denied} | ${c.held} | ${c.approved} | ${w.maskedTotal} | ${time(w.last)} |`);
    }
    out.push('');
  }
  for (const w of data.workloads) out.push(...workloadMarkdown(w));
  const fence = '`'.repeat(Math.max(3, longestRun(suggestedYaml, '`') + 1));
  out.push('## Suggested least-privilege policy', '', fence + 'yaml', suggestedYaml.trimEnd(), fence, '');
  return out.join('\n');
}

function workloadMarkdown(w: WorkloadReview): string[] {
  const out = [`## Workload ${md(w.workload)}`, ''];
  if (w.groups.length) out.push(`Groups: ${w.groups.map(md).join(', ')}`, '');
  out.push(`${plural(w.sessions, 'session')} from ${time(w.first)} to ${time(w.last)}.`, '');
  for (const t of w.targets) {
    out.push(`### Target ${md(t.target)} (${t.protocol})`, '');
    out.push(`${plural(t.sessions, 'session')}, ${countsLine(t.counts)}, ${plural(t.masked.total, 'value')} masked.`, '');
    if (t.approvers.length) {
      out.push(`Approvals: ${t.approvers.map((a) => `${md(a.by)} (${a.approved} approved, ${a.rejected} rejected)`).join(', ')}`, '');
    }
    if (t.masked.byRule.length) out.push(`Masked by: ${t.masked.byRule.map((m) => `${md(m.name)} ${m.count}`).join(', ')}`, '');
    out.push(...usageMarkdown(t.usage));
    if (t.denied.length) {
      // SSH denials name what they were about: an exec command, a shell, a forwarding
      const via = t.denied.some((d) => d.via !== undefined);
      out.push(`Denied commands (${deniedHeading(t)}):`, '', `| times |${via ? ' kind |' : ''} command | rule | message |`, `|--:|${via ? '---|' : ''}---|---|---|`);
      for (const d of t.denied) out.push(`| ${d.count} |${via ? ` ${md(d.via ?? '')} |` : ''} ${cell(d.command)} | ${d.rule ? cell(d.rule) : ''} | ${md(d.message ?? '')} |`);
      out.push('');
    }
  }
  return out;
}

function usageMarkdown(u: ProtocolUsage | undefined): string[] {
  if (!u) return ['No statement analysis for this protocol yet.', ''];
  switch (u.protocol) {
    case 'postgres':
      return postgresMarkdown(u);
    case 'ssh':
      return sshMarkdown(u);
    case 'kubernetes':
      return kubernetesMarkdown(u);
  }
}

function postgresMarkdown(u: PostgresUsage): string[] {
  const out = [`Statement kinds: ${u.kinds.map((k) => `${k.name} ${k.count}`).join(', ') || 'none'}`, ''];
  if (u.relations.length) {
    out.push('| relation | reads | writes |', '|---|--:|--:|');
    for (const r of u.relations) out.push(`| ${cell(r.relation)} | ${r.reads} | ${r.writes} |`);
    out.push('');
  }
  out.push(`Functions: ${u.functions.map((f) => `${code(f.name)} ${f.count}`).join(', ') || 'none'}`, '');
  if (u.unanalysed) out.push(`${plural(u.unanalysed, 'command')} that ran could not be analysed.`, '');
  return out;
}

function sshMarkdown(u: SshUsage): string[] {
  const out = [`Programs: ${u.programs.map((p) => `${code(p.name)} ${p.count}`).join(', ') || 'none'}`, ''];
  if (u.unanalysed) out.push(`${plural(u.unanalysed, 'command')} that ran could not be analysed.`, '');
  if (u.commands.length) {
    out.push(`Exec commands (${plural(u.commands.length, 'distinct command')}):`, '', '| allowed | denied | held | command |', '|--:|--:|--:|---|');
    for (const c of u.commands.slice(0, MAX_ROWS)) out.push(`| ${c.allowed} | ${c.denied} | ${c.held} | ${cell(c.command)} |`);
    out.push(...moreRows(u.commands.length), '');
  }
  if (u.channels.length) {
    out.push('| channel | allowed | denied | held | requests |', '|---|--:|--:|--:|---|');
    for (const c of u.channels) out.push(`| ${md(c.kind)} | ${c.allowed} | ${c.denied} | ${c.held} | ${requests(c).map((r) => `${cell(r.name)} ${r.count}`).join(', ')} |`);
    out.push('');
  }
  if (u.files.length) {
    out.push('Files (sftp):', '', '| path | reads | writes | downloads | uploads |', '|---|--:|--:|---|---|');
    for (const f of u.files.slice(0, MAX_ROWS)) out.push(`| ${cell(f.path)} | ${f.reads} | ${f.writes} | ${transfers(f.downloads, f.downloadedBytes)} | ${transfers(f.uploads, f.uploadedBytes)} |`);
    out.push(...moreRows(u.files.length), '');
  }
  const refused = refusedOperations(u);
  if (refused.length) {
    out.push('Refused file operations:', '', '| times | operation | access | path | message |', '|--:|---|---|---|---|');
    for (const o of refused.slice(0, MAX_ROWS)) out.push(`| ${o.count} | ${md(o.op)} | ${o.access} | ${cell(operationPaths(o))} | ${md(o.message ?? '')} |`);
    out.push(...moreRows(refused.length), '');
  }
  return out;
}

function kubernetesMarkdown(u: KubernetesUsage): string[] {
  const out: string[] = [];
  if (u.requests.length) {
    out.push(`API requests (${plural(u.requests.length, 'kind')}):`, '', '| verb | group | resource | namespace | allowed | denied | held |', '|---|---|---|---|--:|--:|--:|');
    for (const r of u.requests.slice(0, MAX_ROWS)) out.push(`| ${md(r.verb)} | ${md(groupName(r))} | ${cell(r.resource)} | ${md(namespaceName(r.namespace))} | ${r.allowed} | ${r.denied} | ${r.held} |`);
    out.push(...moreRows(u.requests.length), '');
  }
  if (u.exec.length) {
    out.push(`Exec commands (${plural(u.exec.length, 'distinct command')}):`, '', '| namespace | allowed | denied | held | command | pods |', '|---|--:|--:|--:|---|---|');
    for (const e of u.exec.slice(0, MAX_ROWS)) out.push(`| ${md(e.namespace)} | ${e.allowed} | ${e.denied} | ${e.held} | ${e.command ? cell(e.command) : '(none)'} | ${md(podList(e.pods))} |`);
    out.push(...moreRows(u.exec.length), '');
  }
  if (u.nonResource.length) {
    out.push(`Other URLs (discovery is allowed without a rule): ${u.nonResource.map((p) => `${code(`${p.method} ${p.path}`)} ${pathCounts(p)}`).join(', ')}`, '');
  }
  if (u.invalid) out.push(`${plural(u.invalid, 'request')} refused as unreadable.`, '');
  return out;
}

function moreRows(total: number): string[] {
  return total > MAX_ROWS ? ['', `… and ${total - MAX_ROWS} more.`] : [];
}

/** Backslash-escapes what Markdown would read as markup, HTML or a table cell boundary. */
function md(s: string): string {
  return oneLine(s).replace(/[\\`*_[\]<>|&~#]/g, '\\$&');
}

/** A code span long enough to hold any backticks in the text. */
function code(s: string): string {
  const text = shorten(oneLine(s));
  const fence = '`'.repeat(longestRun(text, '`') + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** A code span inside a table row, where `|` must be escaped even in code. */
function cell(s: string): string {
  return code(s).replace(/\|/g, '\\|');
}

function longestRun(s: string, c: string): number {
  let longest = 0;
  let run = 0;
  for (const ch of s) {
    run = ch === c ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
}

// ---------------------------------------------------------------------------
// HTML

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d232a}
h1,h2,h3{line-height:1.2}h2{margin-top:2.5rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}code,pre{font-family:ui-monospace,monospace;font-size:12.5px}
td code{white-space:pre-wrap;word-break:break-all}pre{background:#f6f8fa;padding:1rem;overflow:auto}
.allowed{fill:#2da44e}.denied{fill:#cf222e}.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em}
.muted{color:#57606a}svg text{font-size:11px;fill:#57606a}`;

export function renderHtml(data: ReviewData, suggestedYaml: string): string {
  const body: string[] = ['<h1>Access review</h1>', `<p>${esc(summaryLine(data))}</p>`];
  if (data.days.length) body.push(chart(data.days, 'all workloads'));
  if (data.workloads.length) {
    body.push('<table><thead><tr><th>workload</th><th class="n">sessions</th><th class="n">allowed</th><th class="n">denied</th><th class="n">held</th><th class="n">approved</th><th class="n">masked</th><th>last activity</th></tr></thead><tbody>');
    for (const w of data.workloads) {
      const c = w.counts;
      body.push(`<tr><td><a href="#${esc(anchor(w.workload))}">${esc(w.workload)}</a></td>${nums(w.sessions, c.allowed, c.denied, c.held, c.approved, w.maskedTotal)}<td>${esc(time(w.last))}</td></tr>`);
    }
    body.push('</tbody></table>');
  }
  for (const w of data.workloads) body.push(...workloadHtml(w));
  body.push('<h2>Suggested least-privilege policy</h2>', `<pre><code>${esc(suggestedYaml)}</code></pre>`);
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    '<title>Access review</title>',
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    ...body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function workloadHtml(w: WorkloadReview): string[] {
  const out = [`<h2 id="${esc(anchor(w.workload))}">Workload ${esc(w.workload)}</h2>`];
  const groups = w.groups.length ? ` Groups: ${w.groups.join(', ')}.` : '';
  out.push(`<p>${esc(`${plural(w.sessions, 'session')} from ${time(w.first)} to ${time(w.last)}.${groups}`)}</p>`);
  if (w.days.length) out.push(chart(w.days, w.workload));
  for (const t of w.targets) out.push(...targetHtml(t));
  return out;
}

function targetHtml(t: TargetReview): string[] {
  const out = [`<h3>Target ${esc(t.target)} <span class="muted">(${esc(t.protocol)})</span></h3>`];
  out.push(`<p>${esc(`${plural(t.sessions, 'session')}, ${countsLine(t.counts)}, ${plural(t.masked.total, 'value')} masked.`)}</p>`);
  if (t.approvers.length) out.push(`<p>Approvals: ${esc(t.approvers.map((a) => `${a.by} (${a.approved} approved, ${a.rejected} rejected)`).join(', '))}</p>`);
  if (t.masked.byRule.length) out.push(`<p>Masked by: ${esc(t.masked.byRule.map((m) => `${m.name} ${m.count}`).join(', '))}</p>`);
  out.push(...usageHtml(t.usage));
  if (t.denied.length) {
    const via = t.denied.some((d) => d.via !== undefined);
    out.push(`<p>Denied commands (${esc(deniedHeading(t))}):</p>`);
    out.push(`<table><thead><tr><th class="n">times</th>${via ? '<th>kind</th>' : ''}<th>command</th><th>rule</th><th>message</th></tr></thead><tbody>`);
    for (const d of t.denied) {
      out.push(`<tr>${nums(d.count)}${via ? `<td>${esc(d.via ?? '')}</td>` : ''}<td><code>${esc(shorten(d.command))}</code></td><td>${esc(d.rule ?? '')}</td><td>${esc(d.message ?? '')}</td></tr>`);
    }
    out.push('</tbody></table>');
  }
  return out;
}

function usageHtml(u: ProtocolUsage | undefined): string[] {
  if (!u) return ['<p class="muted">No statement analysis for this protocol yet.</p>'];
  switch (u.protocol) {
    case 'postgres':
      return postgresHtml(u);
    case 'ssh':
      return sshHtml(u);
    case 'kubernetes':
      return kubernetesHtml(u);
  }
}

function postgresHtml(u: PostgresUsage): string[] {
  const out = [`<p>Statement kinds: ${esc(u.kinds.map((k) => `${k.name} ${k.count}`).join(', ') || 'none')}</p>`];
  if (u.relations.length) {
    out.push('<table><thead><tr><th>relation</th><th class="n">reads</th><th class="n">writes</th></tr></thead><tbody>');
    for (const r of u.relations) out.push(`<tr><td><code>${esc(r.relation)}</code></td>${nums(r.reads, r.writes)}</tr>`);
    out.push('</tbody></table>');
  }
  out.push(`<p>Functions: ${u.functions.map((f) => `<code>${esc(f.name)}</code> ${f.count}`).join(', ') || 'none'}</p>`);
  if (u.unanalysed) out.push(`<p>${esc(plural(u.unanalysed, 'command'))} that ran could not be analysed.</p>`);
  return out;
}

function sshHtml(u: SshUsage): string[] {
  const out = [`<p>Programs: ${u.programs.map((p) => `<code>${esc(p.name)}</code> ${p.count}`).join(', ') || 'none'}</p>`];
  if (u.unanalysed) out.push(`<p>${esc(plural(u.unanalysed, 'command'))} that ran could not be analysed.</p>`);
  if (u.commands.length) {
    out.push(`<p>Exec commands (${esc(plural(u.commands.length, 'distinct command'))}):</p>`);
    out.push('<table><thead><tr><th class="n">allowed</th><th class="n">denied</th><th class="n">held</th><th>command</th></tr></thead><tbody>');
    for (const c of u.commands.slice(0, MAX_ROWS)) out.push(`<tr>${nums(c.allowed, c.denied, c.held)}<td><code>${esc(shorten(c.command))}</code></td></tr>`);
    out.push('</tbody></table>', ...moreRowsHtml(u.commands.length));
  }
  if (u.channels.length) {
    out.push('<table><thead><tr><th>channel</th><th class="n">allowed</th><th class="n">denied</th><th class="n">held</th><th>requests</th></tr></thead><tbody>');
    for (const c of u.channels) {
      const asked = requests(c).map((r) => `<code>${esc(shorten(r.name))}</code> ${r.count}`).join(', ');
      out.push(`<tr><td>${esc(c.kind)}</td>${nums(c.allowed, c.denied, c.held)}<td>${asked}</td></tr>`);
    }
    out.push('</tbody></table>');
  }
  if (u.files.length) {
    out.push('<p>Files (sftp):</p>');
    out.push('<table><thead><tr><th>path</th><th class="n">reads</th><th class="n">writes</th><th>downloads</th><th>uploads</th></tr></thead><tbody>');
    for (const f of u.files.slice(0, MAX_ROWS)) {
      out.push(`<tr><td><code>${esc(shorten(f.path))}</code></td>${nums(f.reads, f.writes)}<td>${esc(transfers(f.downloads, f.downloadedBytes))}</td><td>${esc(transfers(f.uploads, f.uploadedBytes))}</td></tr>`);
    }
    out.push('</tbody></table>', ...moreRowsHtml(u.files.length));
  }
  const refused = refusedOperations(u);
  if (refused.length) {
    out.push('<p>Refused file operations:</p>');
    out.push('<table><thead><tr><th class="n">times</th><th>operation</th><th>access</th><th>path</th><th>message</th></tr></thead><tbody>');
    for (const o of refused.slice(0, MAX_ROWS)) {
      out.push(`<tr>${nums(o.count)}<td>${esc(o.op)}</td><td>${esc(o.access)}</td><td><code>${esc(shorten(operationPaths(o)))}</code></td><td>${esc(o.message ?? '')}</td></tr>`);
    }
    out.push('</tbody></table>', ...moreRowsHtml(refused.length));
  }
  return out;
}

function kubernetesHtml(u: KubernetesUsage): string[] {
  const out: string[] = [];
  if (u.requests.length) {
    out.push(`<p>API requests (${esc(plural(u.requests.length, 'kind'))}):</p>`);
    out.push('<table><thead><tr><th>verb</th><th>group</th><th>resource</th><th>namespace</th><th class="n">allowed</th><th class="n">denied</th><th class="n">held</th></tr></thead><tbody>');
    for (const r of u.requests.slice(0, MAX_ROWS)) {
      out.push(`<tr><td>${esc(r.verb)}</td><td>${esc(groupName(r))}</td><td><code>${esc(shorten(r.resource))}</code></td><td>${esc(namespaceName(r.namespace))}</td>${nums(r.allowed, r.denied, r.held)}</tr>`);
    }
    out.push('</tbody></table>', ...moreRowsHtml(u.requests.length));
  }
  if (u.exec.length) {
    out.push(`<p>Exec commands (${esc(plural(u.exec.length, 'distinct command'))}):</p>`);
    out.push('<table><thead><tr><th>namespace</th><th class="n">allowed</th><th class="n">denied</th><th class="n">held</th><th>command</th><th>pods</th></tr></thead><tbody>');
    for (const e of u.exec.slice(0, MAX_ROWS)) {
      const command = e.command ? `<code>${esc(shorten(e.command))}</code>` : '(none)';
      out.push(`<tr><td>${esc(e.namespace)}</td>${nums(e.allowed, e.denied, e.held)}<td>${command}</td><td>${esc(podList(e.pods))}</td></tr>`);
    }
    out.push('</tbody></table>', ...moreRowsHtml(u.exec.length));
  }
  if (u.nonResource.length) {
    const urls = u.nonResource.map((p) => `<code>${esc(shorten(`${p.method} ${p.path}`))}</code> ${esc(pathCounts(p))}`).join(', ');
    out.push(`<p>Other URLs (discovery is allowed without a rule): ${urls}</p>`);
  }
  if (u.invalid) out.push(`<p>${esc(plural(u.invalid, 'request'))} refused as unreadable.</p>`);
  return out;
}

function moreRowsHtml(total: number): string[] {
  return total > MAX_ROWS ? [`<p class="muted">… and ${total - MAX_ROWS} more.</p>`] : [];
}

/** Allowed and denied commands per day as paired bars; hovering a bar shows its numbers. */
function chart(days: DayBucket[], what: string): string {
  const width = 720;
  const height = 140;
  const top = 14;
  const bottom = 18;
  const plot = height - top - bottom;
  const slot = width / days.length;
  const bar = Math.min(Math.max(slot * 0.38, 0.5), 24);
  const max = Math.max(1, ...days.map((d) => Math.max(d.allowed, d.denied)));
  const y = (n: number) => top + plot - (n / max) * plot;
  const rect = (cls: string, x: number, n: number, label: string) =>
    n === 0 ? '' : `<rect class="${cls}" x="${fmt(x)}" y="${fmt(y(n))}" width="${fmt(bar)}" height="${fmt((n / max) * plot)}"><title>${esc(label)}</title></rect>`;
  const bars = days.map((d, i) => {
    const x = i * slot + (slot - 2 * bar) / 2;
    return rect('allowed', x, d.allowed, `${d.day}: ${d.allowed} allowed`) + rect('denied', x + bar, d.denied, `${d.day}: ${d.denied} denied`);
  });
  const label = `Commands per day for ${what}: allowed and denied`;
  return [
    `<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${esc(label)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" style="max-width:100%;height:auto">`,
    `<line x1="0" y1="${top + plot}" x2="${width}" y2="${top + plot}" stroke="#d0d7de"/>`,
    `<text x="0" y="10">${max}</text>`,
    ...bars.filter(Boolean),
    `<text x="0" y="${height - 4}">${esc(days[0]!.day)}</text>`,
    `<text x="${width}" y="${height - 4}" text-anchor="end">${esc(days.at(-1)!.day)}</text>`,
    '</svg>',
    `<figcaption class="legend muted"><span style="background:#2da44e"></span>allowed<span style="background:#cf222e"></span>denied, per day (UTC)</figcaption></figure>`,
  ].join('\n');
}

function nums(...ns: number[]): string {
  return ns.map((n) => `<td class="n">${n}</td>`).join('');
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function anchor(workload: string): string {
  return `workload-${workload.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

const fmt = (n: number) => (Math.round(n * 10) / 10).toString();

// ---------------------------------------------------------------------------
// Shared wording

function summaryLine(data: ReviewData): string {
  const period =
    data.first === undefined || data.last === undefined
      ? `No activity${data.since !== undefined ? ` since ${time(data.since)}` : ''}.`
      : `From ${time(data.since ?? data.first)} to ${time(data.last)}.`;
  const parts = [period, `${plural(data.workloads.length, 'workload')}, ${plural(data.sessions, 'session')}: ${countsLine(data.counts)}, ${plural(data.maskedTotal, 'value')} masked.`];
  if (data.unattributed) parts.push(`${plural(data.unattributed, 'recording')} without a start event could not be attributed.`);
  return parts.join(' ');
}

function countsLine(c: ActionCounts): string {
  const held = c.held ? ` (${c.approved} approved, ${c.rejected} rejected, ${c.timedOut} timed out)` : '';
  return `${c.allowed} allowed, ${c.denied} denied, ${c.held} held for approval${held}`;
}

function requests(c: ChannelUse) {
  return DESCRIBED_CHANNELS.has(c.kind) ? c.requests : [];
}

function refusedOperations(u: SshUsage): FileOperation[] {
  return u.fileOperations.filter((o) => !o.allowed);
}

function operationPaths(o: FileOperation): string {
  return o.path2 === undefined ? o.path : `${o.path} → ${o.path2}`;
}

/** The core group has no name of its own ("" in rules). */
function groupName(r: KubeRequestUse): string {
  return r.apiGroup === '' ? 'core' : r.apiGroup;
}

/** A request without a namespace reads a cluster-scoped object, or every namespace. */
function namespaceName(namespace: string): string {
  return namespace === '' ? '(cluster-wide)' : namespace;
}

function podList(pods: string[]): string {
  return pods.length > MAX_PODS ? `${pods.slice(0, MAX_PODS).join(', ')}, … (${pods.length})` : pods.join(', ');
}

function pathCounts(c: ActionCounts): string {
  return [c.allowed ? `${c.allowed} allowed` : '', c.denied ? `${c.denied} denied` : '', c.held ? `${c.held} held` : ''].filter(Boolean).join(', ');
}

function transfers(n: number, bytes: number): string {
  return n ? `${n} (${plural(bytes, 'byte')})` : '';
}

function deniedHeading(t: TargetReview): string {
  return t.denied.length < t.deniedDistinct ? `the ${t.denied.length} most frequent of ${t.deniedDistinct} distinct` : `${t.deniedDistinct} distinct`;
}

function time(ms: number): string {
  return `${dayOf(ms)} ${new Date(ms).toISOString().slice(11, 16)} UTC`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function shorten(s: string): string {
  return s.length > MAX_COMMAND_CHARS ? `${s.slice(0, MAX_COMMAND_CHARS - 1)}…` : s;
}
