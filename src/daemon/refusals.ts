/**
 * The BPF program's refusals (lockdown egress, raw/packet sockets, database unix
 * sockets) as audit events: drained from the ring buffer on a short timer, with
 * repeats of the same attempt in one drain folded into one event with a count, so
 * an agent hammering a refused address cannot flood the audit trail.
 */
import type { RefusedAttempt } from '../interception/layout.js';
import { formatEndpoint } from '../interception/layout.js';

const PROTOCOLS: Record<number, string> = { 0: 'ip', 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };
const FAMILIES: Record<number, string> = { 1: 'unix', 2: 'inet', 10: 'inet6', 17: 'packet' };
const TYPES: Record<number, string> = { 1: 'stream', 2: 'dgram', 3: 'raw', 5: 'seqpacket' };

export interface RefusalSource {
  drainRefused(max?: number): RefusedAttempt[];
  lostEvents(): bigint;
}

export type Identify = (cgroupId: bigint, pid: number, uid: number) => { workload?: string; cgroup?: string };
export type AuditSink = (event: 'egress.refused' | 'egress.refusals-lost', fields: Record<string, unknown>) => void;

/** The audit fields of one refused attempt (pure). */
export function refusalFields(r: RefusedAttempt): Record<string, unknown> {
  const f: Record<string, unknown> = { kind: r.kind, pid: r.pid, uid: r.uid, comm: r.comm };
  if (r.kind === 'connect' || r.kind === 'sendmsg') {
    f.destination = formatEndpoint(r.dstIp!, r.dstPort!);
    f.protocol = PROTOCOLS[r.protocol] ?? String(r.protocol);
  } else if (r.kind === 'socket') {
    f.family = FAMILIES[r.family] ?? String(r.family);
    f.type = TYPES[r.sockType] ?? String(r.sockType);
    f.protocol = r.family === 17 ? r.protocol : PROTOCOLS[r.protocol] ?? String(r.protocol);
  } else if (r.kind === 'unix') {
    f.path = r.path;
  }
  return f;
}

export class RefusalReporter {
  private lost = 0n;

  constructor(
    private readonly source: RefusalSource,
    private readonly identify: Identify,
    private readonly audit: AuditSink,
  ) {}

  /** Reports what the ring buffer holds now; returns how many attempts it read. */
  drain(): number {
    const attempts = this.source.drainRefused(4096);
    const folded = new Map<string, { fields: Record<string, unknown>; count: number; r: RefusedAttempt }>();
    for (const r of attempts) {
      const fields = refusalFields(r);
      const key = JSON.stringify(fields);
      const seen = folded.get(key);
      if (seen) seen.count++;
      else folded.set(key, { fields, count: 1, r });
    }
    for (const { fields, count, r } of folded.values()) {
      const who = this.identify(r.cgroupId, r.pid, r.uid);
      this.audit('egress.refused', { ...who, ...fields, ...(count > 1 ? { count } : {}) });
    }
    const lost = this.source.lostEvents();
    if (lost > this.lost) {
      this.audit('egress.refusals-lost', { count: Number(lost - this.lost), why: 'the BPF ring buffer was full' });
      this.lost = lost;
    }
    return attempts.length;
  }
}
