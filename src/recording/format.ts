/**
 * The recording file: append-only chunks that chain and sign.
 *
 *   file   = MAGIC chunk*
 *   chunk  = u32be bodyLength, body, hmac[32]
 *   body   = msgpack { s: session id, n: chunk number from 0, p: SHA-256 of the previous
 *            body (32 zero bytes for the first), e: events[], z?: true on the sealing chunk }
 *   hmac   = HMAC-SHA256(node recording key, SHA-256(body))
 *
 * The HMAC signs the body's digest, which is also the chain link: one pass of SHA-256
 * over the data instead of two (the recorder runs on the data path's thread).
 *
 * Changing any byte breaks that chunk's HMAC; removing, reordering or moving a chunk to
 * another recording breaks `n`, `p` or `s`. A recording without a sealing chunk ended
 * abruptly (or is still being written). Pure: bytes in, bytes out.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { RecordedEvent } from './events.js';

export const MAGIC = Buffer.from('ILREC01\n', 'latin1');
export const HASH_BYTES = 32;
export const ZERO_HASH = Buffer.alloc(HASH_BYTES);
/** a larger length field is damage, not data: chunks are flushed long before this */
const MAX_BODY_BYTES = 1 << 30;

// plain MessagePack maps (no record extension): every chunk decodes alone, with any msgpack reader
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export interface ChunkBody {
  s: string;
  n: number;
  p: Uint8Array;
  e: RecordedEvent[];
  z?: true;
}

export interface EncodedChunk {
  bytes: Buffer;
  /** SHA-256 of the body: the next chunk's `p` */
  hash: Buffer;
}

export function encodeChunk(body: ChunkBody, key: Buffer): EncodedChunk {
  const packed = packr.pack(body);
  const bytes = Buffer.allocUnsafe(4 + packed.length + HASH_BYTES);
  bytes.writeUInt32BE(packed.length, 0);
  packed.copy(bytes, 4);
  const hash = createHash('sha256').update(packed).digest();
  createHmac('sha256', key).update(hash).digest().copy(bytes, 4 + packed.length);
  return { bytes, hash };
}

export interface DecodedFile {
  events: RecordedEvent[];
  chunks: number;
  sealed: boolean;
  /** the first integrity problem, naming its chunk (reading stops there) */
  problem?: string;
  /** the chain's head: SHA-256 of the last good body, and the next chunk number */
  head: { hash: Buffer; next: number };
}

/**
 * Reads and verifies a whole recording file. Events of chunks before the first bad
 * one are returned: what can be trusted is still readable.
 */
export function decodeFile(file: Buffer, key: Buffer, sessionId: string): DecodedFile {
  const out: DecodedFile = { events: [], chunks: 0, sealed: false, head: { hash: ZERO_HASH, next: 0 } };
  if (file.length < MAGIC.length || !file.subarray(0, MAGIC.length).equals(MAGIC)) {
    out.problem = 'not a recording file (bad header)';
    return out;
  }
  let at = MAGIC.length;
  let prev = ZERO_HASH;
  for (let n = 0; at < file.length; n++) {
    const bad = (why: string) => {
      out.problem = `chunk ${n} (at byte ${at}): ${why}`;
      return out;
    };
    if (out.sealed) return bad('data after the sealing chunk');
    if (file.length - at < 4) return bad('truncated length field');
    const len = file.readUInt32BE(at);
    if (len === 0 || len > MAX_BODY_BYTES) return bad(`implausible length ${len}`);
    if (file.length - at < 4 + len + HASH_BYTES) return bad(`truncated (${file.length - at} of ${4 + len + HASH_BYTES} bytes)`);
    const packed = file.subarray(at + 4, at + 4 + len);
    const mac = file.subarray(at + 4 + len, at + 4 + len + HASH_BYTES);
    const digest = createHash('sha256').update(packed).digest();
    if (!timingSafeEqual(mac, createHmac('sha256', key).update(digest).digest())) {
      return bad('HMAC does not match (altered, or signed with another key)');
    }
    let body: ChunkBody;
    try {
      body = packr.unpack(packed) as ChunkBody;
    } catch (e) {
      return bad(`undecodable body: ${(e as Error).message}`);
    }
    // a signed body is still only what msgpack decoded: anything but a map is damage
    if (body === null || typeof body !== 'object') return bad('the body is not a map');
    if (body.s !== sessionId) return bad(`belongs to session ${shown(body.s)}, not ${sessionId}`);
    if (body.n !== n) return bad(`numbered ${shown(body.n)} (a chunk is missing or out of order)`);
    if (!(body.p instanceof Uint8Array) || !Buffer.from(body.p).equals(prev)) return bad('does not chain to the chunk before it');
    if (!Array.isArray(body.e)) return bad('no event list');
    for (const e of body.e) out.events.push(e);
    prev = digest;
    out.chunks = n + 1;
    out.head = { hash: prev, next: n + 1 };
    out.sealed = body.z === true;
    at += 4 + len + HASH_BYTES;
  }
  return out;
}

/** A decoded field for a problem message: strings and numbers as they are, anything else by its type (it may not convert). */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return String(v);
  return v === null ? 'null' : `a ${typeof v}`;
}
