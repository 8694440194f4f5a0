/**
 * Incremental framing of a PostgreSQL byte stream into whole messages.
 *
 * Frames are views (subarray) into the pushed chunks: a message that lies inside one chunk is
 * never copied. Only a message that straddles chunks is concatenated, once, when it is complete.
 * The framer never writes into a buffer, so views stay valid as long as the caller does not
 * mutate the chunks it pushed.
 */

import { ChunkQueue } from '../../util/chunk-queue.js';

/** A wire-protocol violation; `code` is the SQLSTATE to report to the peer (08P01 unless noted). */
export class ProtocolError extends Error {
  readonly code: string;
  constructor(message: string, code = '08P01') {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

export interface Frame {
  /** message type byte; 0 for a startup-format message (which has none) */
  type: number;
  /** body after the header (view) */
  payload: Buffer;
  /** the whole message including type byte and length (view), for relaying verbatim */
  raw: Buffer;
}

export interface FramerOptions {
  /** upper bound for a regular message's length field (which counts itself); default 64 MiB */
  maxMessageBytes?: number;
  /** start in startup mode (a client's first message: no type byte); default false */
  startup?: boolean;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Same bound as the server's MAX_STARTUP_PACKET_LENGTH (applies to the payload). */
export const MAX_STARTUP_PAYLOAD_BYTES = 10000;

export class MessageFramer {
  private readonly queue = new ChunkQueue();
  private startup: boolean;
  private readonly maxMessageBytes: number;

  constructor(opts: FramerOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.startup = opts.startup ?? false;
  }

  /** Unconsumed bytes held by the framer (for back-pressure / accounting). */
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /** Startup-format messages (SSLRequest, StartupMessage, CancelRequest) have no type byte. */
  setStartupMode(on: boolean): void {
    this.startup = on;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /**
   * The next complete message, or null if more bytes are needed. Throws ProtocolError as soon as
   * a bad length field is visible, before any of that message's body is waited for; call next()
   * after every push() so that at most one chunk of an oversized message is ever held.
   */
  next(): Frame | null {
    const headerLen = this.startup ? 4 : 5;
    const q = this.queue;
    if (q.length < headerLen) return null;
    const buf = q.contiguous(headerLen);
    const len = buf.readInt32BE(q.offset + headerLen - 4); // counts itself, not the type byte
    this.checkLength(len, buf[q.offset]!);
    const total = headerLen - 4 + len;
    if (q.length < total) return null;
    const raw = q.take(total);
    return { type: this.startup ? 0 : raw[0], payload: raw.subarray(headerLen), raw };
  }

  private checkLength(len: number, typeByte: number): void {
    if (this.startup) {
      // payload must at least hold the int32 protocol code
      if (len < 8 || len - 4 > MAX_STARTUP_PAYLOAD_BYTES) {
        throw new ProtocolError(`invalid length of startup packet: ${len}`);
      }
    } else if (len < 4 || len > this.maxMessageBytes) {
      const type = JSON.stringify(String.fromCharCode(typeByte));
      if (len > this.maxMessageBytes) throw new ProtocolError(`message type ${type} of ${len} bytes is too large (limit ${this.maxMessageBytes})`);
      throw new ProtocolError(`invalid message length ${len} for message type ${type}`);
    }
  }
}
