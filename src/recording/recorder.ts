/**
 * One session's recorder. The data path hands it references (no copies, no encoding):
 * events collect in memory and leave as one signed chunk when the time or size bound
 * is reached, written asynchronously so a slow disk never stalls the event loop. What
 * a slow disk does instead is fill a bounded buffer, and then the session is either
 * held until the disk catches up or ended — the config's choice, never silent loss.
 */
import { close, ftruncate, open, unlink, writev } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { DecisionEvent, EndEvent, RecordedEvent, StartEvent } from './events.js';
import { MAGIC, ZERO_HASH, encodeChunk } from './format.js';

export type Pressure = 'block' | 'resume' | 'end';

/** What a protocol session records through. */
export interface SessionRecording {
  /** bytes the agent sent (kept by reference: the caller must not reuse the buffer) */
  input(bytes: Uint8Array): void;
  /** bytes the agent received, after masking (same rule) */
  output(bytes: Uint8Array): void;
  decision(command: string, via: string, kinds: string[], action: DecisionEvent['action'], rule: string | undefined, message: string | undefined, statement?: string): void;
  /** the other event kinds (masked, approval, resize) */
  note(event: DistributiveOmit<Exclude<RecordedEvent, StartEvent | EndEvent | DecisionEvent>, 't'>): void;
  /** seals the recording; nothing is recorded after */
  end(fields: Omit<EndEvent, 'k' | 't'>): void;
  /** the session's answer to a disk that cannot keep up (set by the session) */
  onPressure?: (p: Pressure, why: string) => void;
  /**
   * Calls `fn` once the recording's start is on disk (at once if it is), so that no
   * command runs before its recording exists; never, if that write fails (the session
   * is ended instead). Absent: nothing to wait for.
   */
  whenStarted?(fn: () => void): void;
}

type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;

/** Recording switched off: every call is a no-op. */
export const NOT_RECORDED: SessionRecording = {
  input() {},
  output() {},
  decision() {},
  note() {},
  end() {},
};

/**
 * A recording that begins with its first event: for connections that may never carry
 * a request (a TLS handshake the agent gives up on leaves no empty recording).
 */
export class LazyRecording implements SessionRecording {
  onPressure?: (p: Pressure, why: string) => void;
  private inner?: SessionRecording;

  constructor(private readonly begin: () => SessionRecording) {}

  private get rec(): SessionRecording {
    if (!this.inner) {
      this.inner = this.begin();
      this.inner.onPressure = (p, why) => this.onPressure?.(p, why);
    }
    return this.inner;
  }

  input(bytes: Uint8Array): void {
    this.rec.input(bytes);
  }
  output(bytes: Uint8Array): void {
    this.rec.output(bytes);
  }
  decision(...args: Parameters<SessionRecording['decision']>): void {
    this.rec.decision(...args);
  }
  note(event: Parameters<SessionRecording['note']>[0]): void {
    this.rec.note(event);
  }
  end(fields: Omit<EndEvent, 'k' | 't'>): void {
    this.inner?.end(fields);
  }
  /** begins the recording (a request is coming) and waits for its start to be on disk */
  whenStarted(fn: () => void): void {
    const r = this.rec;
    if (r.whenStarted) r.whenStarted(fn);
    else fn();
  }
}

export interface RecorderLimits {
  flushMs: number;
  flushBytes: number;
  maxSessionBytes: number;
  bufferBytes: number;
  onBackpressure: 'block' | 'end';
}

type DataRecord = { k: 'in' | 'out'; t: number; b: Uint8Array };

export class SessionRecorder implements SessionRecording {
  onPressure?: (p: Pressure, why: string) => void;
  private readonly t0 = performance.now();
  private pending: RecordedEvent[] = [];
  private pendingBytes = 0;
  /** the last pending data event, extended in place when the next bytes follow on in memory */
  private lastData?: DataRecord;
  private timer?: NodeJS.Timeout;
  private recordedBytes = 0;
  private truncated = false;
  private sealed = false;
  private chunkNo = 0;
  private prevHash: Buffer = ZERO_HASH;
  // the file side: chunks wait here while a write is in flight or the file is opening
  private fd?: number;
  private readonly queue: Buffer[] = [MAGIC];
  private queuedBytes = MAGIC.length;
  /** where each queued unit (the header, a chunk) ends in the file, oldest first */
  private readonly unitEnds: number[] = [MAGIC.length];
  private queuedEnd = MAGIC.length;
  private fileBytes = 0;
  /** the file up to here is whole units: what a failed write truncates back to */
  private durableBytes = 0;
  /** who waits for the start event to be on disk; undefined once it is */
  private startWaiters?: (() => void)[] = [];
  private writing = false;
  private blocked = false;
  private failed?: string;
  private closed = false;
  private readonly whenClosed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    readonly id: string,
    readonly file: string,
    start: Omit<StartEvent, 'k' | 't'>,
    private readonly key: Buffer,
    private readonly limits: RecorderLimits,
    private readonly onClosed: (r: SessionRecorder) => void,
  ) {
    this.whenClosed = new Promise((r) => (this.resolveClosed = r));
    this.push({ k: 'start', t: 0, ...start } as StartEvent, 256);
    this.flush(); // queued now; sessions wait for it to be on disk (whenStarted) before their first command
    open(file, 'wx', 0o600, (err, fd) => {
      if (err) return this.fail(`cannot create ${file}: ${err.code ?? err.message}`);
      this.fd = fd;
      this.drain();
    });
  }

  input(bytes: Uint8Array): void {
    this.data('in', bytes);
  }

  output(bytes: Uint8Array): void {
    this.data('out', bytes);
  }

  whenStarted(fn: () => void): void {
    if (this.startWaiters) this.startWaiters.push(fn);
    else fn();
  }

  decision(command: string, via: string, kinds: string[], action: DecisionEvent['action'], rule: string | undefined, message: string | undefined, statement?: string): void {
    if (this.sealed || this.truncated) return;
    const e: DecisionEvent = { k: 'decision', t: this.now(), command, via, kinds, action };
    if (rule !== undefined) e.rule = rule;
    if (message !== undefined && action !== 'allow') e.message = message;
    if (statement !== undefined) e.statement = statement;
    this.push(e, command.length + 64);
  }

  note(event: DistributiveOmit<Exclude<RecordedEvent, StartEvent | EndEvent | DecisionEvent>, 't'>): void {
    if (this.sealed || this.truncated) return;
    (event as RecordedEvent).t = this.now();
    this.push(event as RecordedEvent, 64);
  }

  end(fields: Omit<EndEvent, 'k' | 't'>): void {
    if (this.sealed) return;
    this.pending.push({ k: 'end', t: this.now(), ...fields });
    this.flush(true);
    this.sealed = true;
    this.drain();
  }

  /** Resolves once everything handed over is written and the file closed (or failed). */
  closedPromise(): Promise<void> {
    return this.whenClosed;
  }

  private now(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }

  private data(k: 'in' | 'out', b: Uint8Array): void {
    if (this.sealed || this.truncated || b.length === 0) return;
    const last = this.lastData;
    if (last && last.k === k && last.b.buffer === b.buffer && last.b.byteOffset + last.b.length === b.byteOffset) {
      // contiguous with the previous bytes in the same direction: widen the view
      if (!this.fits(b.length)) return;
      last.b = new Uint8Array(b.buffer, last.b.byteOffset, last.b.length + b.length);
      this.account(b.length);
      return;
    }
    const e: DataRecord = { k, t: this.now(), b };
    this.lastData = e;
    this.push(e, b.length + 16);
  }

  private push(e: RecordedEvent, size: number): void {
    if (e.k !== 'start' && !this.fits(size)) return;
    if (e.k !== 'in' && e.k !== 'out') this.lastData = undefined;
    this.pending.push(e);
    this.account(size);
  }

  /** Whether `size` more bytes stay within the session's cap; the first event that does not ends recording with a marker. */
  private fits(size: number): boolean {
    if (this.recordedBytes + size <= this.limits.maxSessionBytes) return true;
    this.truncated = true;
    this.lastData = undefined;
    this.pending.push({ k: 'truncated', t: this.now(), bytes: this.recordedBytes });
    this.account(32);
    return false;
  }

  private account(size: number): void {
    this.pendingBytes += size;
    this.recordedBytes += size;
    if (this.pendingBytes >= this.limits.flushBytes) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.limits.flushMs).unref();
  }

  /** Pending events become one signed chunk on the write queue. */
  private flush(seal = false): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0 || this.sealed || this.failed) return;
    const chunk = encodeChunk({ s: this.id, n: this.chunkNo, p: this.prevHash, e: this.pending, ...(seal ? { z: true as const } : {}) }, this.key);
    this.chunkNo++;
    this.prevHash = chunk.hash;
    this.pending = [];
    this.pendingBytes = 0;
    this.lastData = undefined;
    this.queue.push(chunk.bytes);
    this.queuedBytes += chunk.bytes.length;
    this.queuedEnd += chunk.bytes.length;
    this.unitEnds.push(this.queuedEnd);
    this.drain();
    this.checkPressure();
  }

  private drain(): void {
    if (this.writing || this.fd === undefined || this.failed) return;
    if (this.queue.length === 0) {
      if (this.sealed) this.closeFile();
      return;
    }
    const batch = this.queue.splice(0, this.queue.length);
    const bytes = batch.reduce((n, b) => n + b.length, 0);
    this.writing = true;
    writev(this.fd, batch, (err, written) => {
      this.writing = false;
      if (err) return this.fail(`cannot write ${this.file}: ${err.code ?? err.message}`);
      if (written < bytes) {
        // a short write (disk full, signal): put the rest back in front
        let skip = written;
        const rest = batch.flatMap((b) => {
          if (skip >= b.length) return (skip -= b.length), [];
          const r = b.subarray(skip);
          skip = 0;
          return [r];
        });
        this.queue.unshift(...rest);
      }
      this.queuedBytes -= written;
      this.fileBytes += written;
      while (this.unitEnds.length && this.unitEnds[0]! <= this.fileBytes) this.durableBytes = this.unitEnds.shift()!;
      const waiters = this.durableBytes > MAGIC.length ? this.startWaiters : undefined;
      if (waiters) {
        this.startWaiters = undefined;
        for (const fn of waiters) fn();
      }
      this.checkPressure();
      this.drain();
    });
  }

  private checkPressure(): void {
    const waiting = this.queuedBytes + this.pendingBytes;
    if (!this.blocked && waiting > this.limits.bufferBytes) {
      this.blocked = true;
      const why = `recording is ${waiting} bytes behind the disk (limit ${this.limits.bufferBytes})`;
      this.onPressure?.(this.limits.onBackpressure === 'end' ? 'end' : 'block', why);
    } else if (this.blocked && waiting <= this.limits.bufferBytes / 2 && this.limits.onBackpressure === 'block') {
      this.blocked = false;
      this.onPressure?.('resume', 'recording caught up');
    }
  }

  /** A recording that cannot be written ends its session: unrecorded access is not allowed. */
  private fail(why: string): void {
    if (this.failed) return;
    this.failed = why;
    this.queue.length = 0;
    this.onPressure?.('end', why);
    this.closeFile();
  }

  get failure(): string | undefined {
    return this.failed;
  }

  private closeFile(): void {
    if (this.closed) return;
    this.closed = true;
    const done = () => {
      this.onClosed(this);
      this.resolveClosed();
    };
    const fd = this.fd;
    if (fd === undefined) return done();
    if (!this.failed) return close(fd, () => done());
    // a write failed (disk full): cut a torn chunk off, so the file reads as incomplete, not
    // damaged; one without even its start event is no recording at all (the audit says why)
    ftruncate(fd, this.durableBytes, () => close(fd, () => (this.durableBytes > MAGIC.length ? done() : unlink(this.file, () => done()))));
  }
}
