/**
 * Byte layouts of the BPF maps, mirroring bpf/interlock.h (change both together).
 * Addresses are 16 bytes with IPv4 as v4-mapped IPv6; ports are host byte order,
 * and the host is little-endian (x86_64, arm64).
 */
import { isIPv4, isIPv6 } from 'node:net';

export const ENDPOINT_SIZE = 20;
export const REDIRECT_SIZE = 4;
export const PORT_KEY_SIZE = 4;
export const ORIGIN_SIZE = 56;

export const Protocol = { postgres: 1, ssh: 2, kubernetes: 3 } as const;
export type ProtocolName = keyof typeof Protocol;

export const MAP_TARGETS = 'il_targets';
export const MAP_PORTS = 'il_ports';
export const MAP_FLOWS = 'il_flows';
export const MAP_EGRESS_ALLOW = 'il_egress_allow';
export const MAP_CONFIG = 'il_config';
export const MAP_UNIX_DENY = 'il_unix_deny';
export const MAP_EVENTS = 'il_events';
export const MAP_LOST_EVENTS = 'il_lost_events';

export const ALLOW_KEY_SIZE = 24; // 23 bytes of fields, padded to 4
export const UNIX_PATH_LEN = 108;
export const EVENT_SIZE = 168;
export const EGRESS_LOCKDOWN = 1;

/** What the BPF program recorded about the process that dialed. */
export interface Origin {
  /** the address the agent dialed: IPv4 dotted for v4 and v4-mapped, IPv6 otherwise */
  dstIp: string;
  dstPort: number;
  proxyPort: number;
  protocol: number;
  /** 4 or 6: the socket family the client dialed with (6 also for ::ffff:a.b.c.d) */
  family: 4 | 6;
  pid: number;
  uid: number;
  cgroupId: bigint;
  comm: string;
}

/** Writes an IP literal as 16 bytes (IPv4 mapped into ::ffff:0:0/96). */
export function writeAddress(ip: string, out: Buffer, offset: number): void {
  out.fill(0, offset, offset + 16);
  const v4 = toIPv4(ip);
  if (v4 !== undefined) {
    out[offset + 10] = 0xff;
    out[offset + 11] = 0xff;
    const parts = v4.split('.');
    for (let i = 0; i < 4; i++) out[offset + 12 + i] = Number(parts[i]);
    return;
  }
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  const groups = expandIPv6(ip);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i], offset + i * 2);
}

/** Reads 16 address bytes back: v4-mapped as dotted IPv4, the rest as compressed IPv6. */
export function readAddress(buf: Buffer, offset: number): string {
  let mapped = buf[offset + 10] === 0xff && buf[offset + 11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) mapped = buf[offset + i] === 0;
  if (mapped) return `${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(offset + i * 2).toString(16));
  return compressIPv6(groups);
}

export function encodeEndpoint(ip: string, port: number, out: Buffer = Buffer.alloc(ENDPOINT_SIZE)): Buffer {
  writeAddress(ip, out, 0);
  out.writeUInt16LE(port, 16);
  out.writeUInt16LE(0, 18);
  return out;
}

export function decodeEndpoint(buf: Buffer): { ip: string; port: number } {
  return { ip: readAddress(buf, 0), port: buf.readUInt16LE(16) };
}

export function encodeRedirect(proxyPort: number, protocol: number): Buffer {
  const b = Buffer.alloc(REDIRECT_SIZE);
  b.writeUInt16LE(proxyPort, 0);
  b[2] = protocol;
  return b;
}

export function encodePortKey(port: number): Buffer {
  const b = Buffer.alloc(PORT_KEY_SIZE);
  b.writeUInt32LE(port, 0);
  return b;
}

export function decodeOrigin(b: Buffer): Origin {
  const commEnd = b.indexOf(0, 40);
  return {
    dstIp: readAddress(b, 0),
    dstPort: b.readUInt16LE(16),
    proxyPort: b.readUInt16LE(18),
    pid: b.readUInt32LE(20),
    uid: b.readUInt32LE(24),
    protocol: b[28],
    family: b[29] === 10 ? 6 : 4,
    cgroupId: b.readBigUInt64LE(32),
    comm: b.toString('latin1', 40, commEnd === -1 || commEnd > 56 ? 56 : commEnd),
  };
}

/** An egress allow-list entry: protocol 0 and port 0 mean any. */
export interface AllowEntry {
  ip: string;
  /** prefix length over the 16-byte address: IPv4 /n is 96 + n */
  prefix: number;
  port: number;
  protocol: number;
}

/** The LPM trie key: prefixlen counts protocol (8) and port (16) bits, then the address bits. */
export function encodeAllowKey(e: AllowEntry): Buffer {
  const b = Buffer.alloc(ALLOW_KEY_SIZE);
  b.writeUInt32LE(24 + e.prefix, 0);
  b[4] = e.protocol;
  b.writeUInt16BE(e.port, 5);
  writeAddress(e.ip, b, 7);
  return b;
}

export function encodeConfig(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(flags, 0);
  return b;
}

/** A unix socket name as the BPF hash key: zero-padded, with its terminating NUL. */
export function encodeUnixName(path: string): Buffer {
  const b = Buffer.alloc(UNIX_PATH_LEN);
  const n = b.write(path, 0, UNIX_PATH_LEN - 1, 'utf8');
  if (n !== Buffer.byteLength(path)) throw new Error(`unix socket path longer than ${UNIX_PATH_LEN - 1} bytes: ${path}`);
  return b;
}

export const EventKind = { 1: 'connect', 2: 'sendmsg', 3: 'socket', 4: 'unix' } as const;

/** One refused attempt, as the BPF program reported it. */
export interface RefusedAttempt {
  kind: (typeof EventKind)[keyof typeof EventKind] | 'unknown';
  pid: number;
  uid: number;
  cgroupId: bigint;
  comm: string;
  family: number;
  sockType: number;
  protocol: number;
  /** connect/sendmsg: where to */
  dstIp?: string;
  dstPort?: number;
  /** unix: the listener's bound name */
  path?: string;
}

function cString(b: Buffer, start: number, end: number): string {
  const nul = b.indexOf(0, start);
  return b.toString('utf8', start, nul === -1 || nul > end ? end : nul);
}

export function decodeEvent(b: Buffer): RefusedAttempt {
  const kindCode = b[16] as keyof typeof EventKind;
  const e: RefusedAttempt = {
    kind: EventKind[kindCode] ?? 'unknown',
    cgroupId: b.readBigUInt64LE(0),
    pid: b.readUInt32LE(8),
    uid: b.readUInt32LE(12),
    protocol: b[17],
    family: b.readUInt16LE(20),
    sockType: b.readUInt16LE(22),
    comm: cString(b, 40, 56),
  };
  if (e.kind === 'connect' || e.kind === 'sendmsg') {
    e.dstIp = readAddress(b, 24);
    e.dstPort = b.readUInt16LE(18);
  }
  if (e.kind === 'unix') {
    // an abstract name starts with NUL: shown with a leading '@' like ss(8) does
    e.path = b[56] === 0 ? `@${cString(b, 57, 56 + UNIX_PATH_LEN)}` : cString(b, 56, 56 + UNIX_PATH_LEN);
  }
  return e;
}

/** '127.0.0.3:5432', '[::1]:5432' */
export function formatEndpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** '127.0.0.3' and '::ffff:127.0.0.3' → '127.0.0.3'; anything else → undefined. */
export function toIPv4(ip: string): string | undefined {
  if (isIPv4(ip)) return ip;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m && isIPv4(m[1]) ? m[1] : undefined;
}

function expandIPv6(ip: string): number[] {
  let text = ip;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const p = dotted[1].split('.').map(Number);
    tail.push((p[0] << 8) | p[1], (p[2] << 8) | p[3]);
    text = text.slice(0, -dotted[1].length) + '0:0';
  }
  const [head, rest] = text.split('::');
  const h = head ? head.split(':') : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const fill = rest === undefined ? [] : new Array(8 - h.length - r.length).fill('0');
  const groups = [...h, ...fill, ...r].map((g) => parseInt(g, 16));
  if (tail.length) groups.splice(6, 2, ...tail);
  return groups;
}

function compressIPv6(groups: string[]): string {
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}
