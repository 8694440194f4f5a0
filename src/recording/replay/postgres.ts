/**
 * PostgreSQL recordings, decoded and replayed as text.
 *
 * decodePostgresSession turns a recording's byte events back into protocol messages and
 * pairs every backend message with the frontend message it answers, the way the server
 * processes them (a FIFO of requests; an error in the extended protocol skips to Sync).
 * renderPostgresReplay lays that out as a timeline of commands, each followed by what the
 * agent saw, printed the way psql prints it. Pure: a recording in, strings out.
 *
 * The timeline interleaves psql's stdout (tables, tags, COPY data) with what psql sends to
 * stderr (ERROR/NOTICE reports) and `-- ` commentary, so psql's stdout for a whole run is
 * only one contiguous string with `resultsOnly`. Where the timeline knowingly differs from
 * psql: rows that arrived before an error are shown (psql drops them), and so are the
 * parameters and statements of the extended protocol, which psql -c never uses.
 */
import type {
  ApprovalEvent,
  DataEvent,
  DecisionEvent,
  EndEvent,
  RecordedEvent,
  Recording,
  StartEvent,
} from '../events.js';
import { MessageFramer } from '../../protocols/postgres/framer.js';
import { renderPsqlError, renderPsqlNotice, renderPsqlResult, type PsqlCell, type PsqlColumn } from './psql-table.js';

// ---------------------------------------------------------------- messages

export interface PgField {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  /** 0 text, 1 binary */
  format: number;
}

/** What the agent sent. Values stay bytes: their format is only known from context. */
export type PgFrontendMessage =
  | { name: 'Query'; sql: string }
  | { name: 'Parse'; statement: string; sql: string; paramTypes: number[] }
  | { name: 'Bind'; portal: string; statement: string; paramFormats: number[]; params: (Buffer | null)[]; resultFormats: number[] }
  | { name: 'Describe' | 'Close'; target: 'statement' | 'portal'; objectName: string }
  | { name: 'Execute'; portal: string; maxRows: number }
  | { name: 'FunctionCall'; functionOid: number; argFormats: number[]; args: (Buffer | null)[]; resultFormat: number }
  | { name: 'CopyData'; data: Buffer }
  | { name: 'CopyFail'; reason: string }
  | { name: 'Sync' | 'Flush' | 'Terminate' | 'CopyDone' }
  | PgUnparsedMessage;

/** What the agent received. */
export type PgBackendMessage =
  | { name: 'RowDescription'; fields: PgField[] }
  | { name: 'DataRow'; values: (Buffer | null)[] }
  | { name: 'CommandComplete'; tag: string }
  | { name: 'ErrorResponse' | 'NoticeResponse'; fields: Record<string, string> }
  | { name: 'ReadyForQuery'; status: string }
  | { name: 'ParameterDescription'; typeOids: number[] }
  | { name: 'CopyInResponse' | 'CopyOutResponse' | 'CopyBothResponse'; format: number; columnFormats: number[] }
  | { name: 'CopyData'; data: Buffer }
  | { name: 'ParameterStatus'; parameter: string; value: string }
  | { name: 'NotificationResponse'; pid: number; channel: string; payload: string }
  | { name: 'FunctionCallResponse'; result: Buffer | null }
  | { name: 'ParseComplete' | 'BindComplete' | 'CloseComplete' | 'NoData' | 'EmptyQueryResponse' | 'PortalSuspended' | 'CopyDone' }
  | PgUnparsedMessage;

/** A message kept as bytes: a type this decoder does not read, or a body it could not read. */
export interface PgUnparsedMessage {
  name: 'Unparsed';
  /** the protocol's name for the type, or `unknown 'x'` */
  label: string;
  body: Buffer;
  error?: string;
}

const FRONTEND_LABELS: Record<string, string> = {
  Q: 'Query', P: 'Parse', B: 'Bind', D: 'Describe', E: 'Execute', S: 'Sync', C: 'Close', H: 'Flush',
  X: 'Terminate', d: 'CopyData', c: 'CopyDone', f: 'CopyFail', F: 'FunctionCall', p: 'PasswordMessage',
};

const BACKEND_LABELS: Record<string, string> = {
  T: 'RowDescription', D: 'DataRow', C: 'CommandComplete', E: 'ErrorResponse', N: 'NoticeResponse',
  Z: 'ReadyForQuery', '1': 'ParseComplete', '2': 'BindComplete', '3': 'CloseComplete', n: 'NoData',
  t: 'ParameterDescription', I: 'EmptyQueryResponse', H: 'CopyOutResponse', G: 'CopyInResponse',
  W: 'CopyBothResponse', d: 'CopyData', c: 'CopyDone', S: 'ParameterStatus', s: 'PortalSuspended',
  A: 'NotificationResponse', V: 'FunctionCallResponse', K: 'BackendKeyData', R: 'Authentication',
  v: 'NegotiateProtocolVersion',
};

/** Reads a message body front to back; any overrun throws (and the message stays unparsed). */
class BodyReader {
  private at = 0;
  constructor(private readonly body: Buffer) {}

  int16(): number {
    this.need(2);
    return this.body.readInt16BE((this.at += 2) - 2);
  }
  int32(): number {
    this.need(4);
    return this.body.readInt32BE((this.at += 4) - 4);
  }
  oid(): number {
    this.need(4);
    return this.body.readUInt32BE((this.at += 4) - 4);
  }
  byte(): string {
    this.need(1);
    return String.fromCharCode(this.body[this.at++]);
  }
  cstring(): string {
    const end = this.body.indexOf(0, this.at);
    if (end < 0) throw new RangeError('unterminated string');
    const s = this.body.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    this.need(n);
    return this.body.subarray(this.at, (this.at += n));
  }
  /** an int32 length and that many bytes; -1 is NULL */
  value(): Buffer | null {
    const len = this.int32();
    return len === -1 ? null : this.bytes(len);
  }
  int16s(): number[] {
    return Array.from({ length: this.int16() }, () => this.int16());
  }
  rest(): Buffer {
    return this.body.subarray(this.at);
  }
  private need(n: number): void {
    if (n < 0 || this.at + n > this.body.length) throw new RangeError('message body too short');
  }
}

export function decodeFrontendMessage(type: number, body: Buffer): PgFrontendMessage {
  const code = String.fromCharCode(type);
  const r = new BodyReader(body);
  try {
    switch (code) {
      case 'Q':
        return { name: 'Query', sql: r.cstring() };
      case 'P': {
        const statement = r.cstring();
        const sql = r.cstring();
        const paramTypes = Array.from({ length: r.int16() }, () => r.oid());
        return { name: 'Parse', statement, sql, paramTypes };
      }
      case 'B': {
        const portal = r.cstring();
        const statement = r.cstring();
        const paramFormats = r.int16s();
        const params = Array.from({ length: r.int16() }, () => r.value());
        return { name: 'Bind', portal, statement, paramFormats, params, resultFormats: r.int16s() };
      }
      case 'D':
      case 'C': {
        const target = r.byte() === 'S' ? 'statement' : 'portal';
        return { name: code === 'D' ? 'Describe' : 'Close', target, objectName: r.cstring() };
      }
      case 'E':
        return { name: 'Execute', portal: r.cstring(), maxRows: r.int32() };
      case 'F': {
        const functionOid = r.oid();
        const argFormats = r.int16s();
        const args = Array.from({ length: r.int16() }, () => r.value());
        return { name: 'FunctionCall', functionOid, argFormats, args, resultFormat: r.int16() };
      }
      case 'd':
        return { name: 'CopyData', data: r.rest() };
      case 'f':
        return { name: 'CopyFail', reason: r.cstring() };
      case 'S':
        return { name: 'Sync' };
      case 'H':
        return { name: 'Flush' };
      case 'X':
        return { name: 'Terminate' };
      case 'c':
        return { name: 'CopyDone' };
    }
  } catch (err) {
    return unparsed(FRONTEND_LABELS[code] ?? code, body, err);
  }
  // password and SASL messages never appear after login; keep anything else as bytes
  return unparsed(FRONTEND_LABELS[code] ?? `unknown '${code}'`, body);
}

export function decodeBackendMessage(type: number, body: Buffer): PgBackendMessage {
  const code = String.fromCharCode(type);
  const r = new BodyReader(body);
  try {
    switch (code) {
      case 'T':
        return {
          name: 'RowDescription',
          fields: Array.from({ length: r.int16() }, () => ({
            name: r.cstring(),
            tableOid: r.oid(),
            column: r.int16(),
            typeOid: r.oid(),
            typeSize: r.int16(),
            typeModifier: r.int32(),
            format: r.int16(),
          })),
        };
      case 'D':
        return { name: 'DataRow', values: Array.from({ length: r.int16() }, () => r.value()) };
      case 'C':
        return { name: 'CommandComplete', tag: r.cstring() };
      case 'E':
      case 'N':
        return { name: code === 'E' ? 'ErrorResponse' : 'NoticeResponse', fields: readFields(r) };
      case 'Z':
        return { name: 'ReadyForQuery', status: r.byte() };
      case 't':
        return { name: 'ParameterDescription', typeOids: Array.from({ length: r.int16() }, () => r.oid()) };
      case 'G':
      case 'H':
      case 'W': {
        const name = code === 'G' ? 'CopyInResponse' : code === 'H' ? 'CopyOutResponse' : 'CopyBothResponse';
        const format = r.bytes(1)[0];
        return { name, format, columnFormats: r.int16s() };
      }
      case 'd':
        return { name: 'CopyData', data: r.rest() };
      case 'S':
        return { name: 'ParameterStatus', parameter: r.cstring(), value: r.cstring() };
      case 'A':
        return { name: 'NotificationResponse', pid: r.int32(), channel: r.cstring(), payload: r.cstring() };
      case 'V':
        return { name: 'FunctionCallResponse', result: r.value() };
      case '1':
        return { name: 'ParseComplete' };
      case '2':
        return { name: 'BindComplete' };
      case '3':
        return { name: 'CloseComplete' };
      case 'n':
        return { name: 'NoData' };
      case 'I':
        return { name: 'EmptyQueryResponse' };
      case 's':
        return { name: 'PortalSuspended' };
      case 'c':
        return { name: 'CopyDone' };
    }
  } catch (err) {
    return unparsed(BACKEND_LABELS[code] ?? code, body, err);
  }
  return unparsed(BACKEND_LABELS[code] ?? `unknown '${code}'`, body);
}

function readFields(r: BodyReader): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let code = r.byte(); code !== '\0'; code = r.byte()) fields[code] = r.cstring();
  return fields;
}

function unparsed(label: string, body: Buffer, err?: unknown): PgUnparsedMessage {
  const error = err === undefined ? undefined : err instanceof Error ? err.message : String(err);
  return error === undefined ? { name: 'Unparsed', label, body } : { name: 'Unparsed', label, body, error };
}

// ---------------------------------------------------------------- the decoded session

export type PgSessionItem =
  | { kind: 'in'; t: number; message: PgFrontendMessage }
  | {
      kind: 'out';
      t: number;
      message: PgBackendMessage;
      /** index (in the item list) of the frontend message this answers; absent when unsolicited */
      answers?: number;
      /** DataRow values as text: binary-format values as \x-prefixed hex, NULL as null */
      cells?: PsqlCell[];
    }
  /** a non-data event, in its place */
  | { kind: 'event'; event: Exclude<RecordedEvent, DataEvent> }
  /** bytes that could not be framed as messages (kept as they were recorded) */
  | { kind: 'raw'; t: number; dir: 'in' | 'out'; bytes: Buffer; error: string };

interface PendingRequest {
  index: number;
  message: PgFrontendMessage;
  /** result column formats: a Bind's for an Execute, the RowDescription's for a Query */
  formats?: number[];
}

/** Requests that end at ReadyForQuery; everything before one of these in the queue is answered by then. */
const ENDS_AT_READY = new Set(['Query', 'Sync', 'FunctionCall']);
/** Backend messages that answer (and complete) exactly one request of a given kind. */
const COMPLETES: Record<string, string> = {
  ParseComplete: 'Parse',
  BindComplete: 'Bind',
  CloseComplete: 'Close',
  NoData: 'Describe',
  PortalSuspended: 'Execute',
};

/**
 * Every message of a PostgreSQL recording in recorded order, with each backend message tied to
 * the request it answers. Never throws: bytes that cannot be framed come back as `raw` items.
 */
export function decodePostgresSession(events: readonly RecordedEvent[]): PgSessionItem[] {
  const items: PgSessionItem[] = [];
  const queue: PendingRequest[] = [];
  const portalFormats = new Map<string, number[]>();
  const framers = { in: new MessageFramer(), out: new MessageFramer() };
  const broken: Partial<Record<'in' | 'out', string>> = {};

  const onFrontend = (t: number, message: PgFrontendMessage) => {
    const index = items.push({ kind: 'in', t, message }) - 1;
    switch (message.name) {
      case 'Bind':
        portalFormats.set(message.portal, message.resultFormats);
        queue.push({ index, message });
        break;
      case 'Execute':
        queue.push({ index, message, formats: portalFormats.get(message.portal) ?? [] });
        break;
      case 'Query':
      case 'Parse':
      case 'Describe':
      case 'Close':
      case 'Sync':
      case 'FunctionCall':
        queue.push({ index, message });
        break;
    }
  };

  const onBackend = (t: number, message: PgBackendMessage) => {
    const head = queue[0];
    const item: PgSessionItem & { kind: 'out' } = { kind: 'out', t, message };
    if (head) item.answers = head.index;
    const completes = COMPLETES[message.name];
    if (completes !== undefined) {
      if (head?.message.name === completes) queue.shift();
    } else if (message.name === 'RowDescription') {
      if (head?.message.name === 'Describe') queue.shift();
      else if (head) head.formats = message.fields.map((f) => f.format);
    } else if (message.name === 'DataRow') {
      item.cells = message.values.map((v, i) => cellText(v, formatOf(head?.formats ?? [], i)));
    } else if (message.name === 'CommandComplete' || message.name === 'EmptyQueryResponse') {
      if (head?.message.name === 'Execute') queue.shift();
    } else if (message.name === 'ErrorResponse') {
      // an extended-protocol error discards everything up to the next Sync
      if (head && !ENDS_AT_READY.has(head.message.name)) {
        while (queue.length && queue[0].message.name !== 'Sync') queue.shift();
      }
    } else if (message.name === 'ReadyForQuery') {
      while (queue.length) if (ENDS_AT_READY.has(queue.shift()!.message.name)) break;
    }
    items.push(item);
  };

  for (const event of events) {
    if (!isDataEvent(event)) {
      items.push({ kind: 'event', event });
      continue;
    }
    const dir = event.k;
    const bytes = Buffer.from(event.b.buffer, event.b.byteOffset, event.b.byteLength);
    if (broken[dir] !== undefined) {
      items.push({ kind: 'raw', t: event.t, dir, bytes, error: broken[dir]! });
      continue;
    }
    const framer = framers[dir];
    try {
      framer.push(bytes);
      for (let f = framer.next(); f; f = framer.next()) {
        if (dir === 'in') onFrontend(event.t, decodeFrontendMessage(f.type, f.payload));
        else onBackend(event.t, decodeBackendMessage(f.type, f.payload));
      }
    } catch (err) {
      broken[dir] = `not PostgreSQL protocol from here on: ${err instanceof Error ? err.message : String(err)}`;
      items.push({ kind: 'raw', t: event.t, dir, bytes, error: broken[dir]! });
    }
  }
  for (const dir of ['in', 'out'] as const) {
    const left = framers[dir].bufferedBytes;
    if (left > 0 && broken[dir] === undefined) {
      const last = [...events].reverse().find((e): e is DataEvent => e.k === dir);
      items.push({ kind: 'raw', t: last?.t ?? 0, dir, bytes: Buffer.alloc(0), error: `${left} bytes of an unfinished message at the end` });
    }
  }
  return items;
}

export function isDataEvent(e: RecordedEvent): e is DataEvent {
  return e.k === 'in' || e.k === 'out';
}

/** Bind and RowDescription format lists: none = all text, one = for all columns, else per column. */
function formatOf(formats: readonly number[], i: number): number {
  if (formats.length === 0) return 0;
  return formats.length === 1 ? formats[0] : (formats[i] ?? 0);
}

function cellText(value: Buffer | null, format: number): PsqlCell {
  if (value === null) return null;
  return format === 1 ? '\\x' + value.toString('hex') : value.toString('utf8');
}

// ---------------------------------------------------------------- the timeline

export interface PostgresReplayOptions {
  /**
   * Only what psql would have printed to stdout, in order: result tables, command tags, COPY TO
   * STDOUT data and notifications. For a psql session this equals psql's own stdout.
   */
  resultsOnly?: boolean;
}

/** One result of a statement: a result set, a command tag, or COPY output. */
interface ResultBlock {
  kind: 'result';
  columns?: PsqlColumn[];
  rows: PsqlCell[][];
  tag?: string;
  copyOut?: string;
  copyInBytes?: number;
  copyFail?: string;
  /** how the result ended when it did not complete: an error, a suspended portal, the recording's end */
  cut?: 'error' | 'suspended' | 'unfinished';
  /** notes that arrived while the result was coming in, shown after it (masked counts) */
  notesAfter?: string[];
}

type OutputBlock =
  | ResultBlock
  | { kind: 'error' | 'notice'; fields: Record<string, string> }
  /** printed by psql to stdout, outside results (notifications) */
  | { kind: 'stdout'; text: string }
  /** timeline commentary */
  | { kind: 'note'; text: string };

interface Statement {
  name: string;
  sql: string;
  entry: Entry;
  columns?: PsqlColumn[];
}

/** One command in the timeline and what came back for it. */
interface Entry {
  t: number;
  via: 'simple' | 'extended' | 'function-call' | 'decision';
  sql?: string;
  statement?: Statement;
  /** set when this entry re-executes a statement parsed in an earlier entry */
  reuses?: Entry;
  params?: string;
  decision?: DecisionEvent;
  approvals: ApprovalEvent[];
  output: OutputBlock[];
  open?: ResultBlock;
  described?: PsqlColumn[];
  bound: boolean;
}

type TimelineItem = { kind: 'entry'; entry: Entry } | { kind: 'line'; text: string };

/** The session as a timeline of commands and what the agent saw for each. */
export function renderPostgresReplay(rec: Recording, opts: PostgresReplayOptions = {}): string {
  const timeline = buildTimeline(rec.events);
  if (opts.resultsOnly) {
    return timeline.map((item) => (item.kind === 'entry' ? stdoutOf(item.entry) : '')).join('');
  }
  let out = headerBlock(rec);
  for (const item of timeline) {
    out = separate(out);
    out += item.kind === 'entry' ? renderEntry(item.entry) : item.text + '\n';
  }
  const end = footer(rec);
  return end ? separate(out) + end : out;
}

function buildTimeline(events: readonly RecordedEvent[]): TimelineItem[] {
  const items = decodePostgresSession(events);
  const timeline: TimelineItem[] = [];
  const entryOf = new Map<number, Entry>();
  const statements = new Map<string, Statement>();
  const portals = new Map<string, Entry>();
  const undecided: Entry[] = [];
  let lastEntry: Entry | undefined;
  let lastOutputEntry: Entry | undefined;
  let copyInEntry: Entry | undefined;
  const rawNoted = new Set<'in' | 'out'>();

  const newEntry = (t: number, via: Entry['via'], sql?: string): Entry => {
    const entry: Entry = { t, via, sql, approvals: [], output: [], bound: false };
    timeline.push({ kind: 'entry', entry });
    lastEntry = entry;
    return entry;
  };

  items.forEach((item, index) => {
    if (item.kind === 'in') {
      const m = item.message;
      switch (m.name) {
        case 'Query': {
          const entry = newEntry(item.t, 'simple', m.sql);
          entryOf.set(index, entry);
          undecided.push(entry);
          break;
        }
        case 'FunctionCall': {
          const entry = newEntry(item.t, 'function-call', `function call: oid ${m.functionOid}`);
          entry.params = renderParams(m.args, m.argFormats);
          entryOf.set(index, entry);
          undecided.push(entry);
          break;
        }
        case 'Parse': {
          const entry = newEntry(item.t, 'extended', m.sql);
          entry.statement = { name: m.statement, sql: m.sql, entry };
          statements.set(m.statement, entry.statement);
          entryOf.set(index, entry);
          undecided.push(entry);
          break;
        }
        case 'Bind': {
          const statement = statements.get(m.statement);
          let entry = statement?.entry;
          // a statement executed again gets an entry of its own, at the time it ran
          if (!entry || entry.bound) {
            entry = newEntry(item.t, 'extended', statement?.sql);
            entry.statement = statement ?? { name: m.statement, sql: '', entry };
            entry.reuses = statement?.entry;
          }
          entry.bound = true;
          entry.params = renderParams(m.params, m.paramFormats);
          portals.set(m.portal, entry);
          entryOf.set(index, entry);
          break;
        }
        case 'Describe': {
          const entry = m.target === 'statement' ? statements.get(m.objectName)?.entry : portals.get(m.objectName);
          if (entry) entryOf.set(index, entry);
          break;
        }
        case 'Execute': {
          const entry = portals.get(m.portal) ?? newEntry(item.t, 'extended', undefined);
          entryOf.set(index, entry);
          break;
        }
        case 'Close':
          if (m.target === 'statement') statements.delete(m.objectName);
          else portals.delete(m.objectName);
          break;
        case 'CopyData':
          if (copyInEntry?.open) copyInEntry.open.copyInBytes = (copyInEntry.open.copyInBytes ?? 0) + m.data.length;
          break;
        case 'CopyFail':
          if (copyInEntry?.open) copyInEntry.open.copyFail = m.reason;
          break;
      }
      return;
    }

    if (item.kind === 'out') {
      const entry = (item.answers !== undefined ? entryOf.get(item.answers) : undefined) ?? lastOutputEntry ?? lastEntry;
      if (!entry) return;
      const request = item.answers !== undefined ? items[item.answers] : undefined;
      if (item.message.name === 'CopyInResponse') copyInEntry = entry;
      applyBackend(entry, item.message, item.cells, request?.kind === 'in' ? request.message : undefined);
      lastOutputEntry = entry;
      return;
    }

    if (item.kind === 'raw') {
      if (!rawNoted.has(item.dir)) timeline.push({ kind: 'line', text: `-- ${offset(item.t)} ${item.dir === 'in' ? 'agent' : 'server'} bytes: ${item.error}` });
      rawNoted.add(item.dir);
      return;
    }

    const event = item.event;
    switch (event.k) {
      case 'decision': {
        const entry = undecided.shift();
        if (entry) entry.decision = event;
        else newEntry(event.t, 'decision', event.command).decision = event;
        break;
      }
      case 'approval': {
        const held = [...timeline].reverse().find(
          (i): i is { kind: 'entry'; entry: Entry } =>
            i.kind === 'entry' && i.entry.decision?.action === 'approve' && i.entry.decision.command === event.command && i.entry.approvals.length === 0,
        );
        if (held) held.entry.approvals.push(event);
        else timeline.push({ kind: 'line', text: `-- ${offset(event.t)} ${approvalText(event)}: ${oneLine(event.command)}` });
        break;
      }
      case 'masked': {
        const entry = lastOutputEntry ?? lastEntry;
        const text = maskedText(event.tag, event.counts);
        // masking is counted as the statement completes, possibly before its last bytes were sent
        if (entry?.open) (entry.open.notesAfter ??= []).push(text);
        else if (entry) entry.output.push({ kind: 'note', text });
        else timeline.push({ kind: 'line', text });
        break;
      }
      case 'truncated':
        timeline.push({
          kind: 'line',
          text: `-- ${offset(event.t)} truncated: the recording reached its size cap at ${event.bytes} bytes; what the session did after this was not recorded`,
        });
        break;
      case 'resize':
      case 'start':
      case 'end':
        break;
    }
  });

  for (const item of timeline) if (item.kind === 'entry' && item.entry.open) closeResult(item.entry, 'unfinished');
  return timeline;
}

function applyBackend(
  entry: Entry,
  m: PgBackendMessage,
  cells: PsqlCell[] | undefined,
  request: PgFrontendMessage | undefined,
): void {
  switch (m.name) {
    case 'RowDescription': {
      const columns = m.fields.map((f) => ({ name: f.name, typeOid: f.typeOid }));
      // a Describe's answer: the columns the later Execute will return
      if (request?.name === 'Describe') {
        if (request.target === 'statement' && entry.statement) entry.statement.columns = columns;
        else entry.described = columns;
      } else {
        if (entry.open) closeResult(entry, 'unfinished');
        entry.open = { kind: 'result', columns, rows: [] };
      }
      break;
    }
    case 'DataRow':
      openResult(entry).rows.push(cells ?? m.values.map((v) => (v === null ? null : v.toString('utf8'))));
      break;
    case 'CommandComplete':
      openResult(entry).tag = m.tag;
      closeResult(entry);
      break;
    case 'PortalSuspended':
      if (entry.open) closeResult(entry, 'suspended');
      break;
    case 'CopyOutResponse':
    case 'CopyInResponse':
    case 'CopyBothResponse':
      if (entry.open) closeResult(entry, 'unfinished');
      entry.open = { kind: 'result', rows: [] };
      if (m.name === 'CopyOutResponse') entry.open.copyOut = '';
      else if (m.name === 'CopyInResponse') entry.open.copyInBytes = 0;
      else entry.output.push({ kind: 'note', text: '-- copy both (replication) stream started' });
      break;
    case 'CopyData':
      if (entry.open?.copyOut !== undefined) entry.open.copyOut += m.data.toString('utf8');
      break;
    case 'ErrorResponse':
      if (entry.open) closeResult(entry, 'error');
      entry.output.push({ kind: 'error', fields: m.fields });
      break;
    case 'NoticeResponse':
      entry.output.push({ kind: 'notice', fields: m.fields });
      break;
    case 'NotificationResponse':
      entry.output.push({ kind: 'stdout', text: notificationText(m.channel, m.payload, m.pid) });
      break;
    case 'FunctionCallResponse':
      entry.output.push({ kind: 'note', text: `-- function result: ${m.result === null ? 'NULL' : sqlLiteral(m.result.toString('utf8'))}` });
      break;
    case 'ReadyForQuery':
      if (entry.open) closeResult(entry, 'unfinished');
      break;
    default:
      break;
  }
}

/** The result being received; an Execute's rows take the columns its Describe reported. */
function openResult(entry: Entry): ResultBlock {
  if (!entry.open) {
    const columns = entry.described ?? entry.statement?.columns;
    entry.open = columns ? { kind: 'result', columns, rows: [] } : { kind: 'result', rows: [] };
  }
  return entry.open;
}

function closeResult(entry: Entry, cut?: ResultBlock['cut']): void {
  const block = entry.open;
  if (!block) return;
  if (cut) block.cut = cut;
  // rows without any description still form a table (extended protocol without Describe)
  if (!block.columns && block.rows.length > 0) {
    block.columns = block.rows[0].map((_, i) => ({ name: `column${i + 1}`, typeOid: 0 }));
  }
  entry.output.push(block);
  entry.open = undefined;
}

/** psql's stdout for one result: COPY TO STDOUT data replaces the tag, as psql does. */
function resultStdout(block: ResultBlock): string {
  if (block.cut === 'error' || block.cut === 'unfinished') return '';
  if (block.copyOut !== undefined) return block.copyOut;
  return renderPsqlResult({ columns: block.columns, rows: block.rows, tag: block.tag });
}

function stdoutOf(entry: Entry): string {
  let out = '';
  for (const block of entry.output) {
    if (block.kind === 'result') out += resultStdout(block);
    else if (block.kind === 'stdout') out += block.text;
  }
  return out;
}

function renderEntry(entry: Entry): string {
  let out = entryHeader(entry) + '\n';
  if (entry.sql !== undefined && entry.via !== 'function-call') out += prompt(entry.sql);
  else if (entry.via === 'extended') out += "-- (the statement's text was not recorded)\n";
  if (entry.params !== undefined) out += `-- ${entry.via === 'function-call' ? 'arguments' : 'parameters'}: ${entry.params}\n`;
  for (const a of entry.approvals) out += `-- ${offset(a.t)} ${approvalText(a)}\n`;
  // error positions point into the SQL the agent sent
  const query = entry.via === 'simple' || entry.via === 'extended' ? entry.sql : undefined;
  for (const block of entry.output) {
    switch (block.kind) {
      case 'result':
        out += renderResultInTimeline(block);
        for (const note of block.notesAfter ?? []) out += note + '\n';
        break;
      case 'error':
        out += renderPsqlError(block.fields, query);
        break;
      case 'notice':
        out += renderPsqlNotice(block.fields, query);
        break;
      case 'stdout':
        out += block.text;
        break;
      case 'note':
        out += block.text + '\n';
        break;
    }
  }
  return out;
}

function renderResultInTimeline(block: ResultBlock): string {
  let out = '';
  if (block.copyInBytes !== undefined) out += `-- the agent sent ${block.copyInBytes} bytes of COPY data\n`;
  if (block.copyFail !== undefined) out += `-- the agent aborted the COPY: ${oneLine(block.copyFail)}\n`;
  if (block.cut === 'error' || block.cut === 'unfinished') {
    if (block.rows.length === 0 && !block.copyOut) return out;
    const why = block.cut === 'error' ? 'before the error' : 'before the recording ended';
    out += `-- ${block.rows.length} ${block.rows.length === 1 ? 'row' : 'rows'} arrived ${why}:\n`;
    return out + (block.copyOut ?? renderPsqlResult({ columns: block.columns, rows: block.rows }));
  }
  out += resultStdout(block);
  if (block.cut === 'suspended') out += `-- portal suspended after ${block.rows.length} ${block.rows.length === 1 ? 'row' : 'rows'}\n`;
  return out;
}

function entryHeader(e: Entry): string {
  const at = `-- ${offset(e.t)}`;
  if (e.reuses) {
    const first = e.reuses;
    const verdict = first.decision ? `, ${decisionText(first.decision)}` : '';
    return `${at} execute statement ${quoteName(e.statement?.name ?? '')} (parsed at ${offset(first.t)}${verdict})`;
  }
  const how =
    e.via === 'extended'
      ? ` (extended protocol, statement ${quoteName(e.statement?.name ?? '')})`
      : e.via === 'function-call'
        ? ` (${oneLine(e.sql ?? 'function call')})`
        : e.via === 'decision'
          ? ' (the command itself was not recorded)'
          : '';
  return `${at} ${e.decision ? decisionText(e.decision) : 'no decision recorded'}${how}`;
}

function decisionText(d: DecisionEvent): string {
  const rule = d.rule ? ` by ${d.rule}` : ', no rule matched';
  const kinds = d.kinds.length ? ` [${d.kinds.join(', ')}]` : '';
  const message = d.action !== 'allow' && d.message ? `: ${oneLine(d.message)}` : '';
  return `${d.action}${rule}${kinds}${message}`;
}

function approvalText(a: ApprovalEvent): string {
  return `${a.outcome}${a.by ? ` by ${oneLine(a.by)}` : ''}${a.reason ? ` (${oneLine(a.reason)})` : ''}`;
}

function maskedText(tag: string, counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const detail = entries.map(([name, n]) => `${name} ${n}`).join(', ');
  return `-- masked ${total} ${total === 1 ? 'value' : 'values'} in ${oneLine(tag)}${detail ? `: ${detail}` : ''}`;
}

function notificationText(channel: string, payload: string, pid: number): string {
  const withPayload = payload ? ` with payload "${payload}"` : '';
  return `Asynchronous notification "${channel}"${withPayload} received from server process with PID ${pid}.\n`;
}

/** SQL as typed at a psql prompt: `=> ` then `-> ` on continuation lines. */
function prompt(sql: string): string {
  return sql.split('\n').map((line, i) => (i === 0 ? '=> ' : '-> ') + line).join('\n') + '\n';
}

function renderParams(values: readonly (Buffer | null)[], formats: readonly number[]): string {
  if (values.length === 0) return 'none';
  return values
    .map((v, i) => {
      const value = v === null ? 'NULL' : formatOf(formats, i) === 1 ? `\\x${v.toString('hex')} (binary)` : sqlLiteral(v.toString('utf8'));
      return `$${i + 1} = ${value}`;
    })
    .join(', ');
}

/** A string as an SQL literal, on one line (E'' with escapes when it holds control characters). */
function sqlLiteral(s: string): string {
  if (!/[\x00-\x1f\x7f\\]/.test(s)) return `'${s.replaceAll("'", "''")}'`;
  const escaped = s.replace(/[\x00-\x1f\x7f\\']/g, (c) => {
    if (c === '\\') return '\\\\';
    if (c === "'") return "''";
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0');
  });
  return `E'${escaped}'`;
}

function quoteName(name: string): string {
  return name === '' ? '(unnamed)' : JSON.stringify(name);
}

/** Text for a `-- ` comment line: control characters shown, never a line break. */
function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')));
}

/** Milliseconds since the session started, as +1.234s. */
function offset(t: number): string {
  return `+${(t / 1000).toFixed(3)}s`;
}

/** Entries are set apart by a blank line (tables already end with one). */
function separate(out: string): string {
  return out === '' || out.endsWith('\n\n') ? out : out + (out.endsWith('\n') ? '\n' : '\n\n');
}

function headerBlock(rec: Recording): string {
  let out = '';
  if (rec.problems.length > 0) {
    out += '-- !! INTEGRITY PROBLEMS: only what precedes the first problem verified and is shown\n';
    for (const p of rec.problems) out += `-- !! ${oneLine(p)}\n`;
    out += '\n';
  }
  const s: StartEvent | undefined = rec.start;
  out += `-- session ${oneLine(s?.session ?? rec.id)}\n`;
  if (!s) return out + '-- (the start event is missing)\n';
  out += `-- protocol ${s.protocol}, recorded on ${oneLine(s.node)}\n`;
  if (s.workload !== undefined || s.groups?.length) {
    out += `-- workload ${oneLine(s.workload ?? '(none)')}${s.groups?.length ? ` (groups: ${oneLine(s.groups.join(', '))})` : ''}\n`;
  }
  if (s.target !== undefined || s.dst !== undefined) {
    out += `-- target ${oneLine(s.target ?? '(none)')}${s.dst ? ` (dialled ${oneLine(s.dst)})` : ''}\n`;
  }
  const agent = [
    s.pid !== undefined ? `pid ${s.pid}` : '',
    s.uid !== undefined ? `uid ${s.uid}` : '',
    s.comm !== undefined ? `comm ${oneLine(s.comm)}` : '',
  ].filter(Boolean);
  if (agent.length || s.cmdline?.length) {
    out += `-- agent ${agent.join(', ') || '(unknown)'}${s.cmdline?.length ? `: ${oneLine(shellJoin(s.cmdline))}` : ''}\n`;
  }
  if (s.login && Object.keys(s.login).length) {
    const login = Object.entries(s.login).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    out += `-- login ${oneLine(login.join(' '))}\n`;
  }
  out += `-- started ${Number.isFinite(s.at) ? new Date(s.at).toISOString() : String(s.at)}\n`;
  return out;
}

function footer(rec: Recording): string {
  const end: EndEvent | undefined = rec.end ?? rec.events.find((e): e is EndEvent => e.k === 'end');
  let out = '';
  if (end) {
    out +=
      `-- ${offset(end.t)} end: ${oneLine(end.reason)}; ${end.bytesIn} bytes in, ${end.bytesOut} bytes out, ` +
      `${end.commands} ${end.commands === 1 ? 'command' : 'commands'}, ${end.rows} ${end.rows === 1 ? 'row' : 'rows'}\n`;
  }
  if (!rec.sealed) out += '-- recording incomplete: the session did not end cleanly (no seal)\n';
  return out;
}

/** A command line as a shell would need it typed. */
function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}
