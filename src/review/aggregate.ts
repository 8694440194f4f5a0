/**
 * Access review, first step: what each workload did through interlock, from its recordings.
 *
 * Grouped by workload, then by target. Counts come from the recorded decisions, approvals
 * and maskings; what a command touched (statement kinds, relations, functions) comes from
 * re-analysing its text, per protocol (USAGE below), so that a protocol without an
 * analysis still gets counts, and one can be added without touching the rest.
 *
 * SSH decisions are told apart by `via` as well as by text (an exec of "sftp" is not the sftp
 * channel); their usage adds the programs the shell analysis finds in the exec commands that
 * ran, the channels asked for, and the sftp file operations.
 *
 * Kubernetes decisions are request lines ("GET /api/v1/namespaces/shop/pods"), read again the
 * way the proxy read them: the usage counts requests by verb, group, resource and namespace as
 * the rules see them, the commands run in pods, and the URLs that are not API resources.
 *
 * Pure apart from the SQL parser: initAnalysis() must have completed before aggregate().
 */
import { analyzeQuery, type FunctionRef, type RelationRef } from '../policy/analysis.js';
import { analyzeShellCommand } from '../policy/shell.js';
import { normalizePath } from '../policy/ssh-rules.js';
import { UNKNOWN_WORKLOAD } from '../identity/workloads.js';
import type { FileEvent, RecordedEvent, RecordedProtocol, Recording } from '../recording/events.js';
import { requestInfo, type RequestInfo } from '../protocols/kubernetes/request-info.js';
import { execCommandLine as kubeCommandLine, isPodConnect, ruleResource as kubeResource, ruleVerb as kubeRuleVerb } from '../policy/kube-rules.js';

export interface AggregateOptions {
  /** epoch ms: only events at or after this count */
  since?: number;
  /** epoch ms: only events before this count */
  until?: number;
  /** how many distinct denied commands each target lists (default 20) */
  topDenied?: number;
}

export interface ActionCounts {
  allowed: number;
  denied: number;
  /** decided 'approve': held for a human */
  held: number;
  approved: number;
  rejected: number;
  timedOut: number;
}

export interface DayBucket {
  /** UTC date, YYYY-MM-DD */
  day: string;
  allowed: number;
  denied: number;
  held: number;
}

/** One distinct command text and what happened to it. */
export interface CommandUse extends ActionCounts {
  command: string;
  /** SSH: what the decision was about ('exec', 'shell', 'sftp', 'port-forward', …) */
  via?: string;
  /** who approved it, sorted */
  approvedBy: string[];
  /** the deciding rule and message of its latest denial */
  rule?: string;
  message?: string;
}

export interface DeniedCommand {
  command: string;
  /** SSH: what the decision was about, as in CommandUse */
  via?: string;
  count: number;
  rule?: string;
  message?: string;
}

export interface ApproverCount {
  by: string;
  approved: number;
  rejected: number;
}

export interface NameCount {
  name: string;
  count: number;
}

export interface RelationUse {
  /** schema-qualified the way the policy engine resolves it (public.x, pg_catalog.pg_x) */
  relation: string;
  reads: number;
  writes: number;
}

/** What PostgreSQL commands that ran (allowed or approved) touched, counted per statement run. */
export interface PostgresUsage {
  protocol: 'postgres';
  kinds: NameCount[];
  relations: RelationUse[];
  /** as called: schema-qualified only when the call was */
  functions: NameCount[];
  /** commands that ran but whose text does not parse (e.g. fast-path function calls) */
  unanalysed: number;
}

/** A channel or request other than exec (shell, sftp, forwardings, subsystems) and what happened to it. */
export interface ChannelUse extends ActionCounts {
  kind: string;
  /** what was asked for (forwarding destinations, subsystem names), most frequent first */
  requests: NameCount[];
}

/** A path that allowed sftp operations touched, with the transfers that went through it. */
export interface FileUse {
  path: string;
  /** allowed operations that read or wrote it */
  reads: number;
  writes: number;
  downloads: number;
  downloadedBytes: number;
  uploads: number;
  uploadedBytes: number;
}

/** One distinct sftp operation, as recorded: the suggested path rules come from these. */
export interface FileOperation {
  op: string;
  path: string;
  path2?: string;
  /** what the operation needed, or the access that was refused */
  access: 'read' | 'write';
  allowed: boolean;
  count: number;
  /** the latest refusal's message */
  message?: string;
}

/** What an SSH workload did: exec commands, the programs in those that ran, channels and files. */
export interface SshUsage {
  protocol: 'ssh';
  /** every distinct exec command line and what happened to it, most decided first */
  commands: CommandUse[];
  /** programs of the parts of exec commands that ran, as written, counted per run */
  programs: NameCount[];
  /** exec commands that ran but that the shell analysis cannot read */
  unanalysed: number;
  channels: ChannelUse[];
  /** paths touched by allowed sftp operations, by path */
  files: FileUse[];
  /** every distinct sftp operation, allowed or refused, most frequent first */
  fileOperations: FileOperation[];
}

/** Kubernetes API requests of one kind, as the rules read them. */
export interface KubeRequestUse extends ActionCounts {
  /** the rules' verb: exec, attach and portforward count as create whatever the method */
  verb: string;
  /** "" for the core group */
  apiGroup: string;
  /** "resource" or "resource/subresource" */
  resource: string;
  /** "" for cluster-scoped requests and lists across all namespaces */
  namespace: string;
}

/** One distinct command run in the pods of one namespace (pods/exec). */
export interface KubeExecUse extends ActionCounts {
  namespace: string;
  /** the argv shell-quoted into one line, as the rules judge it ("" when the request named no command) */
  command: string;
  /** the pods it was asked for, sorted */
  pods: string[];
  /** the deciding rule and message of a denial, if it was denied */
  rule?: string;
  message?: string;
}

/** Requests for a URL that is not an API resource: discovery (allowed without a rule), anything else (denied). */
export interface KubePathUse extends ActionCounts {
  method: string;
  path: string;
}

/** What a workload asked of a Kubernetes API. */
export interface KubernetesUsage {
  protocol: 'kubernetes';
  /** resource requests by verb, group, resource and namespace, most decided first */
  requests: KubeRequestUse[];
  /** commands run in pods, most decided first */
  exec: KubeExecUse[];
  nonResource: KubePathUse[];
  /** requests refused as unreadable (an unclean path, a query the server would read otherwise) */
  invalid: number;
}

/** Per-protocol usage. */
export type ProtocolUsage = PostgresUsage | SshUsage | KubernetesUsage;

export interface TargetReview {
  /** the target's name; 'unknown' when the recording names none */
  target: string;
  protocol: RecordedProtocol;
  sessions: number;
  /** epoch ms of the first and last event in the window */
  first: number;
  last: number;
  counts: ActionCounts;
  approvers: ApproverCount[];
  masked: { total: number; byRule: NameCount[] };
  /** absent for protocols without an analysis */
  usage?: ProtocolUsage;
  /** the most frequent denied commands, at most topDenied */
  denied: DeniedCommand[];
  deniedDistinct: number;
  /** every distinct command, most frequent first: the suggested policy is derived from these */
  commands: CommandUse[];
}

export interface WorkloadReview {
  /** 'unknown' for sessions no workload matched */
  workload: string;
  groups: string[];
  sessions: number;
  first: number;
  last: number;
  counts: ActionCounts;
  maskedTotal: number;
  /** one per day of the report's range, zeros included */
  days: DayBucket[];
  targets: TargetReview[];
}

export interface ReviewData {
  since?: number;
  until?: number;
  /** epoch ms of the first and last event counted; undefined when nothing was */
  first?: number;
  last?: number;
  sessions: number;
  /** recordings without a start event: nobody and no time to attribute them to */
  unattributed: number;
  counts: ActionCounts;
  maskedTotal: number;
  days: DayBucket[];
  workloads: WorkloadReview[];
}

/** stands for a workload or target the recording does not name */
export const UNKNOWN = UNKNOWN_WORKLOAD;
const DEFAULT_TOP_DENIED = 20;
const DAY_MS = 86_400_000;
/** a chart of more days than this is unreadable; older days are left off the buckets */
const MAX_DAYS = 732;

/** Collects a target's usage: sees every event in the window, then gets the target's commands. */
interface UsageTally {
  add(e: RecordedEvent): void;
  result(commands: CommandUse[]): ProtocolUsage;
}

/** How a protocol's events become usage. Protocols missing here are reported with counts only. */
const USAGE: { [P in RecordedProtocol]?: () => UsageTally } = {
  postgres: () => ({ add: () => {}, result: postgresUsage }),
  ssh: () => new SshUsageTally(),
  kubernetes: () => ({ add: () => {}, result: kubernetesUsage }),
};

/** Protocols whose decisions are keyed by `via` and text: an SSH "sftp" may be an exec command or the channel. */
const KEYED_BY_VIA: ReadonlySet<RecordedProtocol> = new Set(['ssh']);

/** sftp operations whose first path is read (the link's target, the copy's source); the second path is always written. */
const READS_FIRST_PATH = new Set(['symlink', 'hardlink@openssh.com', 'copy-data']);

export function aggregate(recordings: Recording[], opts: AggregateOptions = {}): ReviewData {
  const inWindow = (at: number) => (opts.since === undefined || at >= opts.since) && (opts.until === undefined || at < opts.until);
  const workloads = new Map<string, WorkloadTally>();
  let unattributed = 0;

  for (const rec of recordings) {
    const start = rec.start;
    if (!start) {
      unattributed++;
      continue;
    }
    const events = rec.events.filter((e) => inWindow(start.at + e.t));
    if (events.length === 0) continue;
    const name = start.workload ?? UNKNOWN;
    let w = workloads.get(name);
    if (!w) workloads.set(name, (w = new WorkloadTally(name)));
    w.addSession(start.groups ?? [], start.target ?? UNKNOWN, start.protocol, start.at, events);
  }

  const tallies = [...workloads.values()].sort((a, b) => compareText(a.name, b.name));
  const firsts = tallies.map((w) => w.first());
  const lasts = tallies.map((w) => w.last());
  const first = firsts.length ? Math.min(...firsts) : undefined;
  const last = lasts.length ? Math.max(...lasts) : undefined;
  const range = dayRange(opts.since ?? first, opts.until !== undefined ? opts.until - 1 : last);
  const topDenied = opts.topDenied ?? DEFAULT_TOP_DENIED;

  const reviews = tallies.map((w) => w.result(range, topDenied));
  return {
    since: opts.since,
    until: opts.until,
    first,
    last,
    sessions: sum(reviews.map((w) => w.sessions)),
    unattributed,
    counts: addCounts(reviews.map((w) => w.counts)),
    maskedTotal: sum(reviews.map((w) => w.maskedTotal)),
    days: mergeDays(range, reviews.map((w) => w.days)),
    workloads: reviews,
  };
}

/** The relation as the policy engine resolves an unqualified name (search_path pinned to public). */
export function relationName(ref: RelationRef): string {
  if (ref.schema !== undefined) return `${ref.schema}.${ref.name}`;
  return `${ref.name.startsWith('pg_') ? 'pg_catalog' : 'public'}.${ref.name}`;
}

export function functionName(ref: FunctionRef): string {
  return ref.schema !== undefined ? `${ref.schema}.${ref.name}` : ref.name;
}

/** UTC date of an epoch-ms time, YYYY-MM-DD. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function emptyCounts(): ActionCounts {
  return { allowed: 0, denied: 0, held: 0, approved: 0, rejected: 0, timedOut: 0 };
}

/**
 * The paths an sftp operation reads and writes, as the proxy decides them: the second path
 * (a rename's or link's new name, a copy's destination) is written, the first one is read or
 * written by operation. realpath only canonicalises a name, and the proxy lets it through.
 */
export function fileAccesses(o: Pick<FileOperation, 'op' | 'path' | 'path2' | 'access'>): { path: string; access: 'read' | 'write' }[] {
  if (o.op === 'realpath') return [];
  const first = o.path2 === undefined ? o.access : READS_FIRST_PATH.has(o.op) ? 'read' : 'write';
  const all = [...(o.path2 !== undefined ? [{ path: o.path2, access: 'write' as const }] : []), { path: o.path, access: first }];
  // refused requests without a path (an unsupported extension) touch nothing a rule could name
  return all.filter((a) => a.path !== '');
}

/** A recorded Kubernetes decision ("METHOD URL") read as the proxy read the request. */
export function kubeRequestOf(command: string): RequestInfo {
  const space = command.indexOf(' ');
  return space < 0 ? requestInfo(command, '') : requestInfo(command.slice(0, space), command.slice(space + 1));
}

// the rules' own reading of a request, so the review suggests what the rules will match
export { isPodConnect, kubeRuleVerb, kubeResource, kubeCommandLine };

// ---------------------------------------------------------------------------

class WorkloadTally {
  private readonly groups = new Set<string>();
  private readonly targets = new Map<string, TargetTally>();

  constructor(readonly name: string) {}

  addSession(groups: string[], target: string, protocol: RecordedProtocol, at: number, events: RecordedEvent[]): void {
    for (const g of groups) this.groups.add(g);
    // one target name could in principle be reused across protocols: keep them apart
    const key = `${target}\u0000${protocol}`;
    let t = this.targets.get(key);
    if (!t) this.targets.set(key, (t = new TargetTally(target, protocol)));
    t.addSession(at, events);
  }

  first(): number {
    return Math.min(...[...this.targets.values()].map((t) => t.first));
  }

  last(): number {
    return Math.max(...[...this.targets.values()].map((t) => t.last));
  }

  result(range: string[], topDenied: number): WorkloadReview {
    const targets = [...this.targets.values()]
      .sort((a, b) => compareText(a.target, b.target) || compareText(a.protocol, b.protocol))
      .map((t) => t.result(topDenied));
    return {
      workload: this.name,
      groups: [...this.groups].sort(compareText),
      sessions: sum(targets.map((t) => t.sessions)),
      first: this.first(),
      last: this.last(),
      counts: addCounts(targets.map((t) => t.counts)),
      maskedTotal: sum(targets.map((t) => t.masked.total)),
      days: mergeDays(range, [...this.targets.values()].map((t) => t.days)),
      targets,
    };
  }
}

class TargetTally {
  sessions = 0;
  first = Infinity;
  last = -Infinity;
  readonly days = new Map<string, DayBucket>();
  private readonly counts = emptyCounts();
  private readonly commands = new Map<string, CommandUse & { approvers: Set<string> }>();
  private readonly approvers = new Map<string, ApproverCount>();
  private readonly masked = new Map<string, number>();
  /** the via of each text's latest held decision, for its approval (which names no via) */
  private readonly heldVia = new Map<string, string>();
  private readonly usage: UsageTally | undefined;
  private readonly byVia: boolean;

  constructor(
    readonly target: string,
    readonly protocol: RecordedProtocol,
  ) {
    this.usage = USAGE[protocol]?.();
    this.byVia = KEYED_BY_VIA.has(protocol);
  }

  addSession(at: number, events: RecordedEvent[]): void {
    this.sessions++;
    for (const e of events) {
      const time = at + e.t;
      this.first = Math.min(this.first, time);
      this.last = Math.max(this.last, time);
      this.usage?.add(e);
      switch (e.k) {
        case 'decision': {
          const via = this.byVia ? e.via ?? '' : undefined;
          const use = this.command(e.command, via);
          if (e.action === 'approve' && via !== undefined) this.heldVia.set(e.command, via);
          const day = this.day(time);
          const field = e.action === 'allow' ? 'allowed' : e.action === 'deny' ? 'denied' : 'held';
          this.counts[field]++;
          use[field]++;
          day[field]++;
          if (e.action === 'deny') {
            use.rule = e.rule;
            use.message = e.message;
          }
          break;
        }
        case 'approval': {
          const use = this.command(e.command, this.byVia ? this.heldVia.get(e.command) ?? 'exec' : undefined);
          const field = e.outcome === 'approved' ? 'approved' : e.outcome === 'rejected' ? 'rejected' : 'timedOut';
          this.counts[field]++;
          use[field]++;
          if (e.by !== undefined && field !== 'timedOut') {
            this.approver(e.by)[field]++;
            if (field === 'approved') use.approvers.add(e.by);
          }
          break;
        }
        case 'masked':
          for (const [rule, n] of Object.entries(e.counts)) this.masked.set(rule, (this.masked.get(rule) ?? 0) + n);
          break;
      }
    }
  }

  result(topDenied: number): TargetReview {
    const commands = [...this.commands.values()]
      .map(({ approvers, ...use }) => ({ ...use, approvedBy: [...approvers].sort(compareText) }))
      .sort((a, b) => decided(b) - decided(a) || compareText(a.command, b.command) || compareText(a.via ?? '', b.via ?? ''));
    const denied = commands
      .filter((c) => c.denied > 0)
      .map((c) => ({ command: c.command, ...(c.via !== undefined ? { via: c.via } : {}), count: c.denied, rule: c.rule, message: c.message }))
      .sort((a, b) => b.count - a.count || compareText(a.command, b.command) || compareText(a.via ?? '', b.via ?? ''));
    const byRule = byCountThenName([...this.masked].map(([name, count]) => ({ name, count })));
    return {
      target: this.target,
      protocol: this.protocol,
      sessions: this.sessions,
      first: this.first,
      last: this.last,
      counts: { ...this.counts },
      approvers: [...this.approvers.values()].sort((a, b) => b.approved - a.approved || compareText(a.by, b.by)),
      masked: { total: sum(byRule.map((r) => r.count)), byRule },
      usage: this.usage?.result(commands),
      denied: denied.slice(0, topDenied),
      deniedDistinct: denied.length,
      commands,
    };
  }

  private command(text: string, via: string | undefined) {
    const key = via === undefined ? text : `${via}\u0000${text}`;
    let use = this.commands.get(key);
    if (!use) {
      use = { command: text, ...(via !== undefined ? { via } : {}), ...emptyCounts(), approvedBy: [], approvers: new Set<string>() };
      this.commands.set(key, use);
    }
    return use;
  }

  private approver(by: string): ApproverCount {
    let a = this.approvers.get(by);
    if (!a) this.approvers.set(by, (a = { by, approved: 0, rejected: 0 }));
    return a;
  }

  private day(time: number): DayBucket {
    const day = dayOf(time);
    let b = this.days.get(day);
    if (!b) this.days.set(day, (b = { day, allowed: 0, denied: 0, held: 0 }));
    return b;
  }
}

/** Kinds, relations and functions of the statements that ran: allowed, or held and approved. */
function postgresUsage(commands: CommandUse[]): PostgresUsage {
  const kinds = new Map<string, number>();
  const relations = new Map<string, RelationUse>();
  const functions = new Map<string, number>();
  let unanalysed = 0;
  for (const use of commands) {
    const runs = use.allowed + use.approved;
    if (runs === 0) continue;
    const q = analyzeQuery(use.command);
    if (q.error) {
      unanalysed += runs;
      continue;
    }
    for (const s of q.statements) {
      for (const k of s.kinds) kinds.set(k, (kinds.get(k) ?? 0) + runs);
      for (const r of s.relations) {
        const name = relationName(r);
        let u = relations.get(name);
        if (!u) relations.set(name, (u = { relation: name, reads: 0, writes: 0 }));
        if (r.access === 'read') u.reads += runs;
        else u.writes += runs;
      }
      for (const f of s.functions) functions.set(functionName(f), (functions.get(functionName(f)) ?? 0) + runs);
    }
  }
  return {
    protocol: 'postgres',
    kinds: byCountThenName([...kinds].map(([name, count]) => ({ name, count }))),
    relations: [...relations.values()].sort((a, b) => b.reads + b.writes - (a.reads + a.writes) || compareText(a.relation, b.relation)),
    functions: byCountThenName([...functions].map(([name, count]) => ({ name, count }))),
    unanalysed,
  };
}

/** Collects the sftp operations and transfers of SSH sessions; commands and channels come from the decisions. */
class SshUsageTally implements UsageTally {
  private readonly operations = new Map<string, FileOperation>();
  private readonly files = new Map<string, FileUse>();

  add(e: RecordedEvent): void {
    if (e.k !== 'file') return;
    // a transfer is reported when its file is closed: the open it follows was decided already
    if (e.direction !== undefined) this.transfer(e);
    else this.operation(e);
  }

  result(commands: CommandUse[]): SshUsage {
    const exec = commands.filter((c) => c.via === 'exec');
    const { programs, unanalysed } = programsOf(exec);
    return {
      protocol: 'ssh',
      commands: exec,
      programs,
      unanalysed,
      channels: channelsOf(commands.filter((c) => c.via !== 'exec')),
      files: [...this.files.values()].sort((a, b) => compareText(a.path, b.path)),
      fileOperations: [...this.operations.values()].sort(
        (a, b) => b.count - a.count || compareText(a.path, b.path) || compareText(a.op, b.op) || compareText(a.path2 ?? '', b.path2 ?? '') || compareText(a.access, b.access) || Number(a.allowed) - Number(b.allowed),
      ),
    };
  }

  private operation(e: FileEvent): void {
    const key = [e.op, e.path, e.path2 ?? '\u0000', e.access, e.allowed].join('\u0000');
    let o = this.operations.get(key);
    if (!o) {
      o = { op: e.op, path: e.path, ...(e.path2 !== undefined ? { path2: e.path2 } : {}), access: e.access, allowed: e.allowed, count: 0 };
      this.operations.set(key, o);
    }
    o.count++;
    if (!e.allowed) {
      if (e.message !== undefined) o.message = e.message;
      return;
    }
    for (const a of fileAccesses(e)) {
      const f = this.file(a.path);
      if (a.access === 'read') f.reads++;
      else f.writes++;
    }
  }

  private transfer(e: FileEvent): void {
    const f = this.file(e.path);
    if (e.direction === 'download') {
      f.downloads++;
      f.downloadedBytes += e.bytes ?? 0;
    } else {
      f.uploads++;
      f.uploadedBytes += e.bytes ?? 0;
    }
  }

  /** Paths as the policy sees them ("./a" is "a"); one the policy cannot normalise stays as recorded. */
  private file(path: string): FileUse {
    const normal = normalizePath(path);
    const key = 'path' in normal ? normal.path : path;
    let f = this.files.get(key);
    if (!f) this.files.set(key, (f = { path: key, reads: 0, writes: 0, downloads: 0, downloadedBytes: 0, uploads: 0, uploadedBytes: 0 }));
    return f;
  }
}

/** The programs of the exec commands that ran, one count per run of a command per part. */
function programsOf(exec: CommandUse[]): { programs: NameCount[]; unanalysed: number } {
  const programs = new Map<string, number>();
  let unanalysed = 0;
  for (const use of exec) {
    const runs = use.allowed + use.approved;
    if (runs === 0) continue;
    const analysis = analyzeShellCommand(use.command);
    if (analysis.error !== undefined) {
      unanalysed += runs;
      continue;
    }
    for (const part of analysis.parts) programs.set(part.program, (programs.get(part.program) ?? 0) + runs);
  }
  return { programs: byCountThenName([...programs].map(([name, count]) => ({ name, count }))), unanalysed };
}

/** Decisions other than exec, by kind, with what each asked for. */
function channelsOf(decisions: CommandUse[]): ChannelUse[] {
  const channels = new Map<string, ChannelUse>();
  for (const use of decisions) {
    const kind = use.via ?? '';
    let c = channels.get(kind);
    if (!c) channels.set(kind, (c = { kind, ...emptyCounts(), requests: [] }));
    for (const k of Object.keys(emptyCounts()) as (keyof ActionCounts)[]) c[k] += use[k];
    c.requests.push({ name: use.command, count: decided(use) });
  }
  for (const c of channels.values()) byCountThenName(c.requests);
  return [...channels.values()].sort((a, b) => decided(b) - decided(a) || compareText(a.kind, b.kind));
}

/** Kubernetes requests by what the rules read of them; the exec commands; other URLs. */
function kubernetesUsage(commands: CommandUse[]): KubernetesUsage {
  const requests = new Map<string, KubeRequestUse>();
  const exec = new Map<string, KubeExecUse & { podSet: Set<string> }>();
  const nonResource = new Map<string, KubePathUse>();
  let invalid = 0;
  for (const use of commands) {
    const info = kubeRequestOf(use.command);
    if (info.invalid !== undefined) {
      invalid += decided(use);
      continue;
    }
    if (!info.isResourceRequest) {
      const method = use.command.slice(0, Math.max(0, use.command.indexOf(' ')));
      addInto(tallied(nonResource, [method, info.path], () => ({ method, path: info.path, ...emptyCounts() })), use);
      continue;
    }
    const kind = { verb: kubeRuleVerb(info), apiGroup: info.apiGroup, resource: kubeResource(info), namespace: info.namespace };
    addInto(tallied(requests, Object.values(kind), () => ({ ...kind, ...emptyCounts() })), use);
    if (info.subresource !== 'exec' || !isPodConnect(info)) continue;
    const command = kubeCommandLine(info.command ?? []);
    const e = tallied(exec, [info.namespace, command], () => ({ namespace: info.namespace, command, pods: [], podSet: new Set<string>(), ...emptyCounts() }));
    addInto(e, use);
    e.podSet.add(info.name);
    if (use.denied > 0) Object.assign(e, { ...(use.rule !== undefined ? { rule: use.rule } : {}), ...(use.message !== undefined ? { message: use.message } : {}) });
  }
  return {
    protocol: 'kubernetes',
    requests: [...requests.values()].sort(
      (a, b) => decided(b) - decided(a) || compareText(a.apiGroup, b.apiGroup) || compareText(a.resource, b.resource) || compareText(a.namespace, b.namespace) || compareText(a.verb, b.verb),
    ),
    exec: [...exec.values()]
      .map(({ podSet, ...e }) => ({ ...e, pods: [...podSet].sort(compareText) }))
      .sort((a, b) => decided(b) - decided(a) || compareText(a.namespace, b.namespace) || compareText(a.command, b.command)),
    nonResource: [...nonResource.values()].sort((a, b) => decided(b) - decided(a) || compareText(a.path, b.path) || compareText(a.method, b.method)),
    invalid,
  };
}

/** The entry under a composite key, created the first time. */
function tallied<T>(map: Map<string, T>, key: string[], create: () => T): T {
  const k = key.join('\u0000');
  let v = map.get(k);
  if (!v) map.set(k, (v = create()));
  return v;
}

/** Adds one command's counts to a tally. */
function addInto(into: ActionCounts, from: ActionCounts): void {
  for (const k of Object.keys(emptyCounts()) as (keyof ActionCounts)[]) into[k] += from[k];
}

/** Every UTC day from `from` to `to` (epoch ms), the most recent MAX_DAYS of them. */
function dayRange(from: number | undefined, to: number | undefined): string[] {
  if (from === undefined || to === undefined || to < from) return [];
  const lastDay = Math.floor(to / DAY_MS);
  const firstDay = Math.max(Math.floor(from / DAY_MS), lastDay - MAX_DAYS + 1);
  const days: string[] = [];
  for (let d = firstDay; d <= lastDay; d++) days.push(dayOf(d * DAY_MS));
  return days;
}

function mergeDays(range: string[], sources: Iterable<Map<string, DayBucket> | DayBucket[]>): DayBucket[] {
  const merged = new Map(range.map((day) => [day, { day, allowed: 0, denied: 0, held: 0 }]));
  for (const source of sources) {
    for (const b of source.values()) {
      const m = merged.get(b.day);
      if (!m) continue; // outside the charted range
      m.allowed += b.allowed;
      m.denied += b.denied;
      m.held += b.held;
    }
  }
  return [...merged.values()];
}

function addCounts(all: ActionCounts[]): ActionCounts {
  const total = emptyCounts();
  for (const c of all) for (const k of Object.keys(total) as (keyof ActionCounts)[]) total[k] += c[k];
  return total;
}

const decided = (c: ActionCounts) => c.allowed + c.denied + c.held;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Locale-independent, so reports come out the same everywhere. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byCountThenName(xs: NameCount[]): NameCount[] {
  return xs.sort((a, b) => b.count - a.count || compareText(a.name, b.name));
}
