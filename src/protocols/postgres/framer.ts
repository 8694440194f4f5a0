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

/**
 * A length field over the framer's limit, seen in a message's header before any of its body
 * was buffered. SQLSTATE 54000 (program_limit_exceeded) for regular messages; a startup
 * packet over the server's own bound is a protocol violation, as PostgreSQL reports it.
 */
export class MessageTooLarge extends ProtocolError {
  constructor(
    /** the type byte; 0 for a startup packet */
    readonly type: number,
    /** the message's size as its header claims (type byte excluded) */
    readonly length: number,
    readonly limit: number,
  ) {
    super(
      type === 0
        ? `startup packet of ${length} bytes is too large (limit ${limit})`
        : `message type ${JSON.stringify(String.fromCharCode(type))} of ${length} bytes is too large (limit ${limit})`,
      type === 0 ? '08P01' : '54000',
    );
    this.name = 'MessageTooLarge';
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
  /**
   * A regular message over the limit does not throw: next() returns null and `oversized`
   * names its type, so the caller can pass it through in pieces (passThrough, nextPiece)
   * when it needs no looking into, or refuse it.
   */
  reportOversized?: boolean;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Same bound as the server's MAX_STARTUP_PACKET_LENGTH (applies to the payload). */
export const MAX_STARTUP_PAYLOAD_BYTES = 10000;

export class MessageFramer {
  private readonly queue = new ChunkQueue();
  private startup: boolean;
  private readonly maxMessageBytes: number;
  private readonly reportOversized: boolean;
  /** type byte of the oversized message at the front, -1 if none (reportOversized) */
  private oversizedType = -1;
  private oversizedLength = 0;
  /** bytes of a passed-through message not handed out yet */
  private passRemaining = 0;

  constructor(opts: FramerOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.startup = opts.startup ?? false;
    this.reportOversized = opts.reportOversized ?? false;
  }

  /** The type byte of the message at the front when it is over the limit (reportOversized), else -1. */
  get oversized(): number {
    return this.oversizedType;
  }

  /** The length field of that message (it counts itself, not the type byte). */
  get oversizedBytes(): number {
    return this.oversizedLength;
  }

  /** Bytes of the message being passed through that have not been handed out yet (0: framing as usual). */
  get passing(): number {
    return this.passRemaining;
  }

  /** The limit regular messages are held to. */
  get limit(): number {
    return this.maxMessageBytes;
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
    if (this.passRemaining !== 0 || this.oversizedType >= 0) return null;
    const headerLen = this.startup ? 4 : 5;
    const q = this.queue;
    if (q.length < headerLen) return null;
    const buf = q.contiguous(headerLen);
    const len = buf.readInt32BE(q.offset + headerLen - 4); // counts itself, not the type byte
    if (len > this.maxMessageBytes && this.reportOversized && !this.startup) {
      this.oversizedType = buf[q.offset]!;
      this.oversizedLength = len;
      return null;
    }
    this.checkLength(len, buf[q.offset]!);
    const total = headerLen - 4 + len;
    if (q.length < total) return null;
    const raw = q.take(total);
    return { type: this.startup ? 0 : raw[0], payload: raw.subarray(headerLen), raw };
  }

  /**
   * Hand the oversized message at the front out in pieces, as its bytes arrive, instead of
   * whole: for messages the caller relays without looking inside. Memory stays bounded by
   * what one read brings.
   */
  passThrough(): void {
    if (this.oversizedType < 0) throw new Error('no oversized message to pass through');
    this.passRemaining = 1 + this.oversizedLength;
    this.oversizedType = -1;
  }

  /** The next piece (a view) of the message being passed through, or null when none is buffered. */
  nextPiece(): Buffer | null {
    if (this.passRemaining === 0 || this.queue.length === 0) return null;
    const piece = this.queue.takeUpTo(this.passRemaining);
    this.passRemaining -= piece.length;
    return piece;
  }

  /** Throws if the header at the front has a bad length; consumes nothing (for input that waits unframed). */
  checkNext(): void {
    const headerLen = this.startup ? 4 : 5;
    const q = this.queue;
    if (this.passRemaining !== 0 || this.oversizedType >= 0 || q.length < headerLen) return;
    const buf = q.contiguous(headerLen);
    this.checkLength(buf.readInt32BE(q.offset + headerLen - 4), buf[q.offset]!);
  }

  private checkLength(len: number, typeByte: number): void {
    if (this.startup) {
      if (len - 4 > MAX_STARTUP_PAYLOAD_BYTES) throw new MessageTooLarge(0, len, MAX_STARTUP_PAYLOAD_BYTES + 4);
      // payload must at least hold the int32 protocol code
      if (len < 8) throw new ProtocolError(`invalid length of startup packet: ${len}`);
    } else if (len < 4 || len > this.maxMessageBytes) {
      if (len > this.maxMessageBytes) throw new MessageTooLarge(typeByte, len, this.maxMessageBytes);
      throw new ProtocolError(`invalid message length ${len} for message type ${JSON.stringify(String.fromCharCode(typeByte))}`);
    }
  }
}
