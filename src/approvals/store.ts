/**
 * The approvals' durable record: one JSON line per change, appended (root-only file).
 * Read back at start, a request still pending from an earlier run is closed as
 * "expired, session ended": its session died with the daemon that held it.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export type ApprovalState = 'pending' | 'approved' | 'rejected' | 'expired';

export interface ApprovalRequest {
  id: string;
  createdAt: string;
  session: string;
  workload: string;
  target: string;
  protocol: string;
  /** the exact command held: statement text, shell command, HTTP request */
  command: string;
  rule?: string;
  approvers: string[];
  /** when it times out (ISO) */
  expiresAt: string;
  state: ApprovalState;
  decidedBy?: string;
  decidedAt?: string;
  reason?: string;
  /** an approval may also grant this exact command to this workload until then (ISO) */
  windowUntil?: string;
}

export class ApprovalStore {
  constructor(private readonly file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  }

  /** Every request as last written, oldest first. */
  load(): ApprovalRequest[] {
    if (!existsSync(this.file)) return [];
    const byId = new Map<string, ApprovalRequest>();
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as ApprovalRequest;
        if (typeof r.id === 'string') byId.set(r.id, r);
      } catch {
        // a torn last line (power loss): what was complete stays readable
      }
    }
    return [...byId.values()];
  }

  save(r: ApprovalRequest): void {
    appendFileSync(this.file, `${JSON.stringify(r)}\n`, { mode: 0o600 });
  }
}
