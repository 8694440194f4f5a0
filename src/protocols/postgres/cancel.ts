/**
 * Cancel keys: the agent holds keys we issued; the real backend keys stay here. A
 * CancelRequest comes in on a fresh (redirected) connection and is honoured only
 * from the workload that owns the session.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { TargetDef } from '../../config/types.js';
import { serializeCancelRequest } from './startup.js';

interface Entry {
  sessionId: string;
  workload: string;
  target: TargetDef;
  upstreamPid: number;
  upstreamSecret: number;
}

export class CancelKeys {
  private readonly byKey = new Map<string, Entry>();
  private readonly bySession = new Map<string, string>();

  issue(entry: Entry): { processId: number; secretKey: number } {
    let processId: number, secretKey: number, key: string;
    do {
      const r = randomBytes(8);
      processId = r.readInt32BE(0) & 0x7fffffff; // positive, like a real pid
      secretKey = r.readInt32BE(4);
      key = `${processId}:${secretKey}`;
    } while (this.byKey.has(key));
    this.byKey.set(key, entry);
    this.bySession.set(entry.sessionId, key);
    return { processId, secretKey };
  }

  forget(sessionId: string): void {
    const key = this.bySession.get(sessionId);
    if (key !== undefined) this.byKey.delete(key);
    this.bySession.delete(sessionId);
  }

  /** The session a cancel names, if `workload` owns it. */
  find(processId: number, secretKey: number, workload: string): Entry | undefined {
    const e = this.byKey.get(`${processId}:${secretKey}`);
    return e && e.workload === workload ? e : undefined;
  }
}

/** Sends the real CancelRequest upstream (fire and forget, as the protocol has no reply). */
export function sendUpstreamCancel(e: Entry, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: e.target.upstream.host, port: e.target.upstream.port });
    s.setTimeout(timeoutMs, () => s.destroy());
    s.on('connect', () => s.end(serializeCancelRequest(e.upstreamPid, e.upstreamSecret)));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}
