/**
 * The startup-format messages: the payload of a client's first message (after the int32 length),
 * and the ones the proxy sends upstream.
 */
import { ProtocolError } from './framer.js';
import { readCString } from './backend.js';

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const CANCEL_REQUEST_CODE = 80877102;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;

/**
 * For 'startup', protocolVersion may be 3.x with x > 0 and params may hold `_pq_.*` extension
 * options: a server speaking only 3.0 answers those with NegotiateProtocolVersion.
 */
export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | { kind: 'startup'; protocolVersion: number; params: Record<string, string> };

export function parseStartupPacket(payload: Buffer): StartupPacket {
  if (payload.length < 4) throw new ProtocolError('startup packet too short');
  const code = payload.readUInt32BE(0);
  switch (code) {
    case SSL_REQUEST_CODE:
      exactLength(payload, 4, 'SSLRequest');
      return { kind: 'ssl' };
    case GSSENC_REQUEST_CODE:
      exactLength(payload, 4, 'GSSENCRequest');
      return { kind: 'gssenc' };
    case CANCEL_REQUEST_CODE:
      // 3.2 allows longer secret keys, but we only ever hand out 4-byte ones (we speak 3.0)
      exactLength(payload, 12, 'CancelRequest');
      return { kind: 'cancel', processId: payload.readInt32BE(4), secretKey: payload.readInt32BE(8) };
  }
  if (code >>> 16 !== 3) {
    throw new ProtocolError(`unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: server supports 3.0`, '0A000');
  }
  // Null prototype: a parameter named "__proto__" must stay a plain entry.
  const params: Record<string, string> = Object.create(null);
  let off = 4;
  for (;;) {
    if (off >= payload.length) throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
    if (payload[off] === 0) break;
    const [name, afterName] = readCString(payload, off);
    const [value, afterValue] = readCString(payload, afterName);
    params[name] = value;
    off = afterValue;
  }
  if (off !== payload.length - 1) throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
  if (!params.user) throw new ProtocolError('no PostgreSQL user name specified in startup packet', '28000');
  return { kind: 'startup', protocolVersion: code, params };
}

/** A complete StartupMessage (with its length). Throws on NUL inside a name or value: it would inject parameters. */
export function serializeStartup(params: Record<string, string>, protocolVersion = PROTOCOL_3_0): Buffer {
  let body = '';
  for (const [name, value] of Object.entries(params)) {
    if (name === '' || name.includes('\0') || value.includes('\0')) {
      throw new TypeError(`invalid startup parameter ${JSON.stringify(name)}`);
    }
    body += name + '\0' + value + '\0';
  }
  body += '\0';
  const len = 8 + Buffer.byteLength(body);
  const out = Buffer.allocUnsafe(len);
  out.writeInt32BE(len, 0);
  out.writeInt32BE(protocolVersion, 4);
  out.write(body, 8, 'utf8');
  return out;
}

export function serializeCancelRequest(processId: number, secretKey: number): Buffer {
  const out = Buffer.allocUnsafe(16);
  out.writeInt32BE(16, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  out.writeInt32BE(secretKey, 12);
  return out;
}

export function serializeSSLRequest(): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

function exactLength(payload: Buffer, expected: number, what: string): void {
  if (payload.length !== expected) throw new ProtocolError(`invalid ${what} length: ${payload.length + 4}`);
}
