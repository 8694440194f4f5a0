/**
 * The commands that read recordings: sessions list|show, replay, verify, export,
 * review. They need the recording directory and the node's key (root-only), both
 * named by the config.
 */
import type { InterlockConfig } from '../config/types.js';
import type { Recording } from '../recording/events.js';
import { loadRecordingKey } from '../recording/key.js';
import { listStored, readRecording } from '../recording/store.js';
import { summarize, formatSessionTable, formatSessionDetail } from '../recording/summary.js';
import { renderPostgresReplay } from '../recording/replay/postgres.js';
import { renderKubernetesReplay } from '../recording/replay/kubernetes.js';
import { playTerminal } from '../recording/replay/terminal.js';
import { toAsciicast, toJsonLines } from '../recording/export.js';
import { aggregate } from '../review/aggregate.js';
import { suggestedPolicyYaml } from '../review/suggest.js';
import { renderHtml, renderMarkdown } from '../review/render.js';
import { loadConfig } from '../config/load.js';
import { initAnalysis } from '../policy/analysis.js';
import type { CommandContext } from './main.js';
import { UsageError } from './usage-error.js';

interface Store {
  dir: string;
  key: Buffer;
}

function openStore(configFile: string): Store {
  const config: InterlockConfig = loadConfig(configFile);
  return { dir: config.recording.dir, key: loadRecordingKey(config.recording.keyFile, { create: false }) };
}

/** "24h", "30d", "90m", "45s" → milliseconds */
export function sinceMs(text: string): number {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (!m) throw new UsageError(`--since ${JSON.stringify(text)}: expected a duration like 90m, 24h or 30d`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** Every recording modified since `since` (epoch ms), verified, oldest first. */
function readAll(store: Store, since = 0): Recording[] {
  return listStored(store.dir)
    .filter((f) => f.mtimeMs >= since)
    .map((f) => readRecording(store.dir, f.id, store.key))
    .sort((a, b) => (a.start?.at ?? 0) - (b.start?.at ?? 0));
}

function one(ctx: CommandContext, what: string, at = 0): string {
  const id = ctx.positionals[at];
  if (!id) throw new UsageError(`${what} needs a session id (see \`interlock sessions list\`)`);
  return id;
}

export async function sessionsCommand(ctx: CommandContext): Promise<number> {
  const sub = ctx.positionals[0];
  const store = openStore(ctx.configFile);
  if (sub === 'list') {
    const since = ctx.values.since ? Date.now() - sinceMs(String(ctx.values.since)) : 0;
    const rows = readAll(store, since)
      .map(summarize)
      .filter((s) => (s.started ?? 0) >= since || (s.lastActivity ?? 0) >= since)
      .filter((s) => !ctx.values.workload || s.workload === ctx.values.workload)
      .filter((s) => !ctx.values.target || s.target === ctx.values.target);
    process.stdout.write(formatSessionTable(rows));
    return 0;
  }
  if (sub === 'show') {
    const rec = readRecording(store.dir, one(ctx, 'sessions show', 1), store.key);
    process.stdout.write(formatSessionDetail(rec));
    return rec.problems.length ? 1 : 0;
  }
  throw new UsageError(sub ? `unknown sessions command "${sub}" (list or show)` : 'sessions needs list or show');
}

export async function replayCommand(ctx: CommandContext): Promise<number> {
  const store = openStore(ctx.configFile);
  const rec = readRecording(store.dir, one(ctx, 'replay'), store.key);
  const protocol = rec.start?.protocol;
  if (protocol === 'ssh') {
    const speed = ctx.values.speed === undefined ? 1 : Number(ctx.values.speed);
    if (!(speed > 0)) throw new UsageError('--speed needs a positive number');
    await playTerminal(rec, { speed, instant: ctx.values.instant === true, write: (s) => process.stdout.write(s) });
  } else if (protocol === 'kubernetes') {
    process.stdout.write(renderKubernetesReplay(rec));
  } else {
    process.stdout.write(renderPostgresReplay(rec));
  }
  return rec.problems.length ? 1 : 0;
}

export async function verifyCommand(ctx: CommandContext): Promise<number> {
  const store = openStore(ctx.configFile);
  const ids = ctx.values.all ? listStored(store.dir).map((f) => f.id).sort() : [one(ctx, 'verify')];
  let tampered = 0;
  for (const id of ids) {
    const rec = readRecording(store.dir, id, store.key);
    const chunks = `${rec.events.length} events`;
    if (rec.problems.length) {
      tampered++;
      process.stdout.write(`${id}: FAILED: ${rec.problems[0]}\n`);
    } else if (!rec.sealed) {
      process.stdout.write(`${id}: intact but incomplete (${chunks}; not sealed: the session is live or the daemon stopped abruptly)\n`);
    } else {
      process.stdout.write(`${id}: ok (${chunks}, sealed${rec.truncated ? ', truncated at the size cap' : ''})\n`);
    }
  }
  if (ctx.values.all) process.stdout.write(`${ids.length} recordings, ${tampered} failed verification\n`);
  return tampered ? 1 : 0;
}

export async function exportCommand(ctx: CommandContext): Promise<number> {
  const format = ctx.values.format ?? 'jsonl';
  if (format !== 'jsonl' && format !== 'asciicast') throw new UsageError(`--format ${String(format)}: jsonl or asciicast`);
  const store = openStore(ctx.configFile);
  const rec = readRecording(store.dir, one(ctx, 'export'), store.key);
  if (rec.problems.length) process.stderr.write(`interlock: warning: ${rec.problems[0]}; exporting what verified\n`);
  process.stdout.write(format === 'jsonl' ? toJsonLines(rec) : toAsciicast(rec));
  return rec.problems.length ? 1 : 0;
}

export async function reviewCommand(ctx: CommandContext): Promise<number> {
  const format = ctx.values.format ?? 'md';
  if (format !== 'md' && format !== 'html') throw new UsageError(`--format ${String(format)}: md or html`);
  const since = Date.now() - sinceMs(String(ctx.values.since ?? '30d'));
  const store = openStore(ctx.configFile);
  await initAnalysis(); // the review re-reads each statement with the parser
  const recordings = readAll(store, since);
  const bad = recordings.filter((r) => r.problems.length);
  for (const r of bad) process.stderr.write(`interlock: warning: recording ${r.id} failed verification (${r.problems[0]}); only its verified part is reviewed\n`);
  const data = aggregate(recordings, { since });
  const yaml = suggestedPolicyYaml(data);
  process.stdout.write(format === 'md' ? renderMarkdown(data, yaml) : renderHtml(data, yaml));
  return 0;
}
