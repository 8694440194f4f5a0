/**
 * Backend (server → client) messages that the proxy itself originates, plus small decoders for
 * the few upstream messages it has to look inside.
 */
import { ProtocolError } from './framer.js';

export type ErrorSeverity = 'ERROR' | 'FATAL' | 'PANIC';
export type NoticeSeverity = 'WARNING' | 'NOTICE' | 'DEBUG' | 'INFO' | 'LOG';

export interface ErrorFields<S extends string = ErrorSeverity> {
  severity: S;
  /** SQLSTATE, five characters */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export type TransactionStatus = 'I' | 'T' | 'E';

/** Reads a NUL-terminated UTF-8 string at offset; returns it and the offset after the NUL. */
export function readCString(buf: Buffer, offset: number): [string, number] {
  const end = buf.indexOf(0, offset);
  if (end < 0) throw new ProtocolError('unterminated string in message');
  return [buf.toString('utf8', offset, end), end + 1];
}

/** Field code → value of an ErrorResponse / NoticeResponse payload (e.g. { S, V, C, M, ... }). */
export function readErrorFields(payload: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let off = 0;
  for (;;) {
    if (off >= payload.length) throw new ProtocolError('error fields lack their terminator');
    const code = payload[off++];
    if (code === 0) return fields;
    const [value, next] = readCString(payload, off);
    fields[String.fromCharCode(code)] = value;
    off = next;
  }
}

export function errorResponse(f: ErrorFields): Buffer {
  return fieldsMessage('E', f);
}

export function noticeResponse(f: ErrorFields<NoticeSeverity>): Buffer {
  return fieldsMessage('N', f);
}

export function authenticationOk(): Buffer {
  return withInts('R', 0);
}

/** processId and secretKey are signed int32, exactly as they travel on the wire. */
export function backendKeyData(processId: number, secretKey: number): Buffer {
  return withInts('K', processId, secretKey);
}

export function readyForQuery(status: TransactionStatus): Buffer {
  return stringMessage('Z', status);
}

export function parameterStatus(name: string, value: string): Buffer {
  return stringMessage('S', cstr(name) + cstr(value));
}

/**
 * Tells a client that asked for protocol 3.x (x > 0) or sent `_pq_.` options that we speak
 * 3.`newestMinor` and did not recognise `unrecognized` options.
 */
export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  const names = unrecognized.map(cstr).join('');
  const out = Buffer.allocUnsafe(13 + Buffer.byteLength(names));
  out[0] = 0x76; // 'v'
  out.writeInt32BE(out.length - 1, 1);
  out.writeInt32BE(newestMinor, 5);
  out.writeInt32BE(unrecognized.length, 9);
  out.write(names, 13, 'utf8');
  return out;
}

function fieldsMessage(type: 'E' | 'N', f: ErrorFields<string>): Buffer {
  // S is localized severity, V the untranslated one (clients ≥ 9.6 prefer V); ours are the same.
  let body = 'S' + cstr(f.severity) + 'V' + cstr(f.severity) + 'C' + cstr(f.code) + 'M' + cstr(f.message);
  if (f.detail !== undefined) body += 'D' + cstr(f.detail);
  if (f.hint !== undefined) body += 'H' + cstr(f.hint);
  return stringMessage(type, body + '\0');
}

/**
 * Error text may echo user input; an embedded NUL would end the field early and desync the
 * client's parser, so it is dropped rather than thrown (failing while reporting an error helps nobody).
 */
function cstr(s: string): string {
  return (s.includes('\0') ? s.replaceAll('\0', '') : s) + '\0';
}

/** One allocation: type byte, length, UTF-8 body. */
function stringMessage(type: string, body: string): Buffer {
  const len = Buffer.byteLength(body);
  const out = Buffer.allocUnsafe(5 + len);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + len, 1);
  out.write(body, 5, 'utf8');
  return out;
}

function withInts(type: string, ...ints: number[]): Buffer {
  const out = Buffer.allocUnsafe(5 + 4 * ints.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + 4 * ints.length, 1);
  ints.forEach((v, i) => out.writeInt32BE(v, 5 + 4 * i));
  return out;
}
