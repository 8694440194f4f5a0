/**
 * What a recording holds: one session's events, in order. Every event has a kind `k`
 * and a time `t` in milliseconds since the session started (the start event carries
 * the wall-clock `at`). Data events hold the exact bytes, so a replay decodes the
 * protocol itself and nothing is lost to a summary.
 */

export type RecordedProtocol = 'postgres' | 'ssh' | 'kubernetes';

export interface StartEvent {
  k: 'start';
  t: 0;
  /** wall clock, epoch milliseconds */
  at: number;
  session: string;
  protocol: RecordedProtocol;
  /** the host that recorded it */
  node: string;
  workload?: string;
  groups?: string[];
  target?: string;
  pid?: number;
  uid?: number;
  comm?: string;
  /** the agent process's full command line and executable, read from /proc when the session began */
  cmdline?: string[];
  exe?: string;
  cgroup?: string;
  /** the original destination the agent dialled */
  dst?: string;
  /** protocol-specific login details (PostgreSQL: clientUser, database, upstreamUser) */
  login?: Record<string, unknown>;
}

/**
 * Bytes on the agent's side of the proxy: `in` is what the agent sent, `out` what it
 * received (after masking and denial rewriting). PostgreSQL: whole protocol messages,
 * from the first message after login. SSH: terminal or channel data.
 */
export interface DataEvent {
  k: 'in' | 'out';
  t: number;
  b: Uint8Array;
  /** the channel the bytes belong to, where a protocol multiplexes (SSH) */
  ch?: number;
}

/** A policy decision on one command. */
export interface DecisionEvent {
  k: 'decision';
  t: number;
  /** the command as the agent sent it (SQL text, shell command, HTTP request line) */
  command: string;
  /** PostgreSQL: 'simple' | 'extended' | 'function-call'; SSH: 'exec' | 'shell' | …; Kubernetes: 'http' */
  via?: string;
  /** the prepared statement's name (PostgreSQL extended protocol) */
  statement?: string;
  /** every effect the analysis found (PostgreSQL statement kinds, Kubernetes verb, …) */
  kinds: string[];
  action: 'allow' | 'deny' | 'approve';
  /** "policy#n" of the deciding rule; absent when nothing matched */
  rule?: string;
  /** what the agent was told when not allowed */
  message?: string;
}

/** Values masked in one statement's results, by rule or detector name. */
export interface MaskedEvent {
  k: 'masked';
  t: number;
  /** the command tag of the statement (e.g. "SELECT 3") */
  tag: string;
  counts: Record<string, number>;
}

/** A held command's outcome (approvals). */
export interface ApprovalEvent {
  k: 'approval';
  t: number;
  command: string;
  outcome: 'approved' | 'rejected' | 'timed out';
  by?: string;
  reason?: string;
}

/** Terminal size (SSH pty-req / window-change), for playback. */
export interface ResizeEvent {
  k: 'resize';
  t: number;
  cols: number;
  rows: number;
  ch?: number;
}

/** A file operation (SSH sftp/scp): what was touched, whether it was allowed, and transfer sizes. */
export interface FileEvent {
  k: 'file';
  t: number;
  ch?: number;
  op: string;
  path: string;
  path2?: string;
  access: 'read' | 'write';
  allowed: boolean;
  message?: string;
  direction?: 'upload' | 'download';
  bytes?: number;
}

/** A channel opened or closed (SSH), with what it was for and how it ended. */
export interface ChannelEvent {
  k: 'channel';
  t: number;
  ch: number;
  /** open: exec | shell | sftp | port-forward …; close: how it ended */
  state: 'open' | 'close';
  kind?: string;
  command?: string;
  exitCode?: number;
  exitSignal?: string;
}

/** The session reached its size cap: data after this point was not recorded; the session went on. */
export interface TruncatedEvent {
  k: 'truncated';
  t: number;
  /** recorded bytes when the cap was hit */
  bytes: number;
}

export interface EndEvent {
  k: 'end';
  t: number;
  reason: string;
  bytesIn: number;
  bytesOut: number;
  /** commands decided (statements, exec requests, API requests) */
  commands: number;
  /** result rows sent to the agent (PostgreSQL DataRows) */
  rows: number;
}

export type RecordedEvent =
  | StartEvent
  | DataEvent
  | DecisionEvent
  | MaskedEvent
  | ApprovalEvent
  | ResizeEvent
  | FileEvent
  | ChannelEvent
  | TruncatedEvent
  | EndEvent;

/** One recording as read back: its events and what the reader could establish about it. */
export interface Recording {
  id: string;
  file: string;
  start?: StartEvent;
  end?: EndEvent;
  events: RecordedEvent[];
  /** sealed: the session ended and its last chunk carries the seal */
  sealed: boolean;
  truncated: boolean;
  /** integrity problems, each naming its chunk; empty when every chunk verified */
  problems: string[];
}
