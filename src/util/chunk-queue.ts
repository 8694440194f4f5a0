/**
 * Received chunks, read front to back by length-prefixed framers (PostgreSQL, SFTP).
 * Bytes that lie inside one chunk are never copied: `take` returns a view. Only bytes
 * that straddle chunks are concatenated, once, when they are needed together.
 */
export class ChunkQueue {
  private chunks: Buffer[] = [];
  /** read offset into chunks[0] */
  private head = 0;
  private buffered = 0;

  /** unread bytes */
  get length(): number {
    return this.buffered;
  }

  /** where the unread bytes start in the buffer `contiguous` returns */
  get offset(): number {
    return this.head;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** A buffer holding the first n unread bytes from `offset` on; copies only when they straddle chunks. */
  contiguous(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return first;
    const merged = Buffer.concat([first.subarray(this.head), ...this.chunks.slice(1)], this.buffered);
    this.chunks = [merged];
    this.head = 0;
    return merged;
  }

  /** Up to max unread bytes from the first chunk (a view, never a copy), consumed. */
  takeUpTo(max: number): Buffer {
    const first = this.chunks[0]!;
    const n = Math.min(max, first.length - this.head);
    return this.take(n);
  }

  /** The first n unread bytes (a view), consumed. */
  take(n: number): Buffer {
    const buf = this.contiguous(n);
    const out = buf.subarray(this.head, this.head + n);
    this.head += n;
    this.buffered -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
    return out;
  }
}
