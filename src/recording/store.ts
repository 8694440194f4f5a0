/**
 * Where recordings live: one file per session, `<dir>/<session id>.ilrec`, the
 * directory 0700 and every file 0600. The daemon opens recorders here; the CLI reads,
 * verifies and lists from here.
 */
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { RecordingConfig } from '../config/types.js';
import type { Recording, StartEvent } from './events.js';
import { decodeFile } from './format.js';
import { loadRecordingKey } from './key.js';
import { SessionRecorder } from './recorder.js';
import { expiredRecordings, type StoredRecording } from './retention.js';

export const RECORDING_SUFFIX = '.ilrec';
const SESSION_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function recordingFile(dir: string, id: string): string {
  if (!SESSION_ID.test(id)) throw new Error(`"${id}" is not a session id`);
  return join(dir, id + RECORDING_SUFFIX);
}

/** The daemon's side: creates the directory and key, hands out recorders, applies retention. */
export class RecordingStore {
  private readonly live = new Map<string, SessionRecorder>();
  private sweeper?: NodeJS.Timeout;

  private constructor(
    private readonly config: RecordingConfig,
    private readonly key: Buffer,
    private readonly onFailure?: (session: string, why: string) => void,
  ) {}

  /** `onFailure`: a recording could not be written (disk full, say), even one whose session has already ended */
  static open(config: RecordingConfig, onFailure?: (session: string, why: string) => void): RecordingStore {
    mkdirSync(config.dir, { recursive: true, mode: 0o700 });
    chmodSync(config.dir, 0o700); // an existing directory too: recordings hold what agents saw
    return new RecordingStore(config, loadRecordingKey(config.keyFile, { create: true }), onFailure);
  }

  get dir(): string {
    return this.config.dir;
  }

  begin(start: Omit<StartEvent, 'k' | 't' | 'node' | 'at'>): SessionRecorder {
    const c = this.config;
    const r = new SessionRecorder(
      start.session,
      recordingFile(c.dir, start.session),
      { ...start, at: Date.now(), node: hostname() },
      this.key,
      { flushMs: c.flushMs, flushBytes: c.flushBytes, maxSessionBytes: c.maxSessionBytes, bufferBytes: c.bufferBytes, onBackpressure: c.onBackpressure },
      (done) => {
        this.live.delete(done.id);
        if (done.failure) this.onFailure?.(done.id, done.failure);
      },
    );
    this.live.set(start.session, r);
    return r;
  }

  /** Removes what retention no longer keeps; returns the removed ids. */
  sweep(now = Date.now()): string[] {
    const doomed = expiredRecordings(listStored(this.config.dir), now, this.config.retention, new Set(this.live.keys()));
    for (const id of doomed) {
      try {
        unlinkSync(recordingFile(this.config.dir, id));
      } catch {
        // already gone
      }
    }
    return doomed;
  }

  /** Sweeps now and then hourly. */
  startRetention(onSweep: (removed: string[]) => void): void {
    const run = () => {
      const removed = this.sweep();
      if (removed.length) onSweep(removed);
    };
    run();
    this.sweeper = setInterval(run, 3_600_000).unref();
  }

  /** Waits (bounded) for recordings of ended sessions to reach the disk. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    const all = Promise.all([...this.live.values()].map((r) => r.closedPromise()));
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}

/** Every recording file in `dir` with its size and modification time. */
export function listStored(dir: string): StoredRecording[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: StoredRecording[] = [];
  for (const name of names) {
    if (!name.endsWith(RECORDING_SUFFIX)) continue;
    try {
      const st = statSync(join(dir, name));
      out.push({ id: name.slice(0, -RECORDING_SUFFIX.length), size: st.size, mtimeMs: st.mtimeMs });
    } catch {
      // removed while listing
    }
  }
  return out;
}

/** Reads and verifies one recording. */
export function readRecording(dir: string, id: string, key: Buffer): Recording {
  const file = recordingFile(dir, id);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `no recording of session ${id} in ${dir}` : `cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  const d = decodeFile(bytes, key, id);
  const start = d.events[0]?.k === 'start' ? d.events[0] : undefined;
  const last = d.events[d.events.length - 1];
  return {
    id,
    file,
    start,
    end: last?.k === 'end' ? last : undefined,
    events: d.events,
    sealed: d.sealed,
    truncated: d.events.some((e) => e.k === 'truncated'),
    problems: d.problem ? [d.problem] : [],
  };
}
