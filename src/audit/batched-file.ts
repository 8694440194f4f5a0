/**
 * An append-only file written in batches from the event loop: lines gather in memory
 * and go out in one write(2) every `intervalMs` or `maxBytes`, whichever comes first.
 * One syscall per batch instead of a thread-pool round trip per line keeps the audit
 * trail off the per-query cost; a crash loses at most the last interval.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export class BatchedFile {
  private parts: string[] = [];
  private bytes = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly fd: number, private readonly maxBytes = 64 * 1024, intervalMs = 100) {
    this.timer = setInterval(() => this.flushSync(), intervalMs);
    this.timer.unref();
  }

  static open(path: string, mode = 0o600): BatchedFile {
    return new BatchedFile(openSync(path, 'a', mode));
  }

  write(line: string): boolean {
    this.parts.push(line);
    this.bytes += line.length;
    if (this.bytes >= this.maxBytes) this.flushSync();
    return true;
  }

  flushSync(): void {
    if (this.parts.length === 0) return;
    const data = this.parts.length === 1 ? this.parts[0] : this.parts.join('');
    this.parts = [];
    this.bytes = 0;
    let buf = Buffer.from(data);
    // a short write (full disk, signal) keeps the rest for the next round rather than losing it
    while (buf.length > 0) {
      const n = writeSync(this.fd, buf);
      if (n <= 0) break;
      buf = buf.subarray(n);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.flushSync();
    if (this.fd > 2) closeSync(this.fd);
  }
}
