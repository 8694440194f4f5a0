/**
 * Recordings in formats other tools read: JSON Lines (every event, PostgreSQL bytes decoded
 * into protocol messages) and asciicast v2 (SSH terminals, for asciinema players). Pure.
 */
import type { DataEvent, RecordedEvent, Recording, ResizeEvent } from './events.js';
import { decodePostgresSession, isDataEvent, type PgBackendMessage, type PgFrontendMessage, type PgSessionItem } from './replay/postgres.js';
import { TerminalDecoders, requireSsh } from './replay/terminal.js';

type Json = Record<string, unknown>;

/**
 * One JSON object per line: the start event, then every event in order. PostgreSQL data
 * events become one line per protocol message; other data events carry their bytes in base64.
 */
export function toJsonLines(rec: Recording): string {
  const lines: Json[] = [];
  if (rec.start) lines.push({ ...rec.start });
  const rest = rec.events.filter((e) => e.k !== 'start');
  if (rec.start?.protocol === 'postgres') {
    for (const item of decodePostgresSession(rest)) lines.push(postgresItemJson(item));
  } else {
    for (const e of rest) lines.push(isDataEvent(e) ? rawDataJson(e) : { ...e });
  }
  return lines.map((l) => JSON.stringify(l) + '\n').join('');
}

function rawDataJson(e: DataEvent): Json {
  const out: Json = { t: e.t, dir: e.k };
  if (e.ch !== undefined) out.ch = e.ch;
  out.data_base64 = Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength).toString('base64');
  return out;
}

function postgresItemJson(item: PgSessionItem): Json {
  switch (item.kind) {
    case 'event':
      return { ...item.event };
    case 'raw':
      return { t: item.t, dir: item.dir, undecodable: item.error, data_base64: item.bytes.toString('base64') };
    case 'in':
      return { t: item.t, dir: 'in', message: item.message.name, ...frontendBody(item.message) };
    case 'out':
      return { t: item.t, dir: 'out', message: item.message.name, ...backendBody(item.message, item.cells) };
  }
}

function frontendBody(m: PgFrontendMessage): Json {
  switch (m.name) {
    case 'Query':
      return { sql: m.sql };
    case 'Parse':
      return { statement: m.statement, sql: m.sql, param_types: m.paramTypes };
    case 'Bind':
      return { portal: m.portal, statement: m.statement, params: values(m.params, m.paramFormats), result_formats: m.resultFormats };
    case 'Describe':
    case 'Close':
      return { target: m.target, name: m.objectName };
    case 'Execute':
      return { portal: m.portal, max_rows: m.maxRows };
    case 'FunctionCall':
      return { function_oid: m.functionOid, args: values(m.args, m.argFormats), result_format: m.resultFormat };
    case 'CopyData':
      return { data_base64: m.data.toString('base64') };
    case 'CopyFail':
      return { reason: m.reason };
    case 'Unparsed':
      return unparsedBody(m);
    default:
      return {};
  }
}

function backendBody(m: PgBackendMessage, cells: (string | null)[] | undefined): Json {
  switch (m.name) {
    case 'RowDescription':
      return {
        columns: m.fields.map((f) => ({
          name: f.name,
          type_oid: f.typeOid,
          type_modifier: f.typeModifier,
          format: f.format,
          table_oid: f.tableOid,
          column: f.column,
        })),
      };
    case 'DataRow':
      return { values: cells ?? m.values.map((v) => (v === null ? null : v.toString('utf8'))) };
    case 'CommandComplete':
      return { tag: m.tag };
    case 'ErrorResponse':
    case 'NoticeResponse':
      return { fields: namedFields(m.fields) };
    case 'ReadyForQuery':
      return { status: m.status };
    case 'ParameterDescription':
      return { type_oids: m.typeOids };
    case 'CopyInResponse':
    case 'CopyOutResponse':
    case 'CopyBothResponse':
      return { format: m.format, column_formats: m.columnFormats };
    case 'CopyData':
      return { data_base64: m.data.toString('base64') };
    case 'ParameterStatus':
      return { name: m.parameter, value: m.value };
    case 'NotificationResponse':
      return { pid: m.pid, channel: m.channel, payload: m.payload };
    case 'FunctionCallResponse':
      return { result_base64: m.result === null ? null : m.result.toString('base64') };
    case 'Unparsed':
      return unparsedBody(m);
    default:
      return {};
  }
}

function unparsedBody(m: { label: string; body: Buffer; error?: string }): Json {
  const out: Json = { message: m.label, body_base64: m.body.toString('base64') };
  if (m.error !== undefined) out.error = m.error;
  return out;
}

/** Text-format values as strings, binary ones as base64, NULL as null. */
function values(vals: readonly (Buffer | null)[], formats: readonly number[]): unknown[] {
  return vals.map((v, i) => {
    if (v === null) return null;
    const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    return format === 1 ? { base64: v.toString('base64') } : v.toString('utf8');
  });
}

// the protocol's one-letter error field codes, by the names libpq gives them
const ERROR_FIELD_NAMES: Record<string, string> = {
  S: 'severity_localized', V: 'severity', C: 'code', M: 'message', D: 'detail', H: 'hint', P: 'position',
  p: 'internal_position', q: 'internal_query', W: 'where', s: 'schema', t: 'table', c: 'column',
  d: 'data_type', n: 'constraint', F: 'file', L: 'line', R: 'routine',
};

function namedFields(fields: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [code, value] of Object.entries(fields)) out[ERROR_FIELD_NAMES[code] ?? code] = value;
  return out;
}

const DEFAULT_SIZE = { cols: 80, rows: 24 };

/**
 * asciicast v2: a header line, then `[seconds, "o" | "i" | "r", data]` per event. Only SSH
 * terminal sessions have something to play; other protocols are refused.
 */
export function toAsciicast(rec: Recording): string {
  requireSsh(rec, 'asciicast export');
  const start = rec.start!;
  const firstResize = rec.events.find((e): e is ResizeEvent => e.k === 'resize');
  const size = firstResize ?? DEFAULT_SIZE;
  const title = [`interlock session ${start.session}`, start.workload, start.target && `→ ${start.target}`].filter(Boolean).join(' ');
  const header = { version: 2, width: size.cols, height: size.rows, timestamp: Math.floor(start.at / 1000), title };
  const lines = [JSON.stringify(header)];
  const decoders = new TerminalDecoders();
  for (const e of rec.events) {
    const line = castEvent(e, decoders);
    if (line) lines.push(JSON.stringify(line));
  }
  return lines.join('\n') + '\n';
}

function castEvent(e: RecordedEvent, decoders: TerminalDecoders): [number, string, string] | undefined {
  if (e.k === 'resize') return [seconds(e.t), 'r', `${e.cols}x${e.rows}`];
  if (!isDataEvent(e)) return undefined;
  const text = decoders.text(e);
  // a lone fragment of a multi-byte character waits for the rest
  return text ? [seconds(e.t), e.k === 'out' ? 'o' : 'i', text] : undefined;
}

/** asciicast times are seconds since the start; microseconds are plenty. */
function seconds(ms: number): number {
  return Math.round(ms * 1000) / 1e6;
}
