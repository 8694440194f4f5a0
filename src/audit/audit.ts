/**
 * The audit trail: one JSON line per event (pino), to a file or stdout. Every line
 * carries the session id and, where known, who (workload, pid, uid, comm) and what
 * (target, original destination).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import { BatchedFile } from './batched-file.js';

export type AuditEvent =
  | 'session.start'
  | 'session.end'
  | 'connect.refused'
  | 'query'
  | 'masked'
  | 'cancel'
  | 'redirect.attached'
  | 'daemon.stop'
  | 'recording.retention'
  | 'recording.failed'
  | 'command'
  | 'file'
  | 'approval.requested'
  | 'approval.decided'
  | 'approval.notify-failed'
  | 'workload.groups-dropped'
  | 'egress.refused'
  | 'egress.refusals-lost'
  | 'egress.bypass'
  | 'limit.exceeded';

export interface Audit {
  event(event: AuditEvent, fields?: Record<string, unknown>): void;
  /**
   * The same line from fields already serialized as JSON members (`"a":1,"b":"x"`):
   * for the per-statement events, whose constant part is serialized once and kept.
   */
  serialized(event: AuditEvent, members: string): void;
  /** A trail whose every line also carries `bindings`, serialized once: per-query lines stay cheap. */
  with(bindings: Record<string, unknown>): Audit;
  flush(): void;
}

export function createAudit(file?: string): Audit {
  if (file) mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // queries are sensitive: the trail is root-only
  const dest = file ? BatchedFile.open(file, 0o600) : new BatchedFile(1);
  const log: Logger = pino(
    {
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'event', // the event name rides as pino's message: no per-line object copy
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  // `bound` is the bindings as JSON members, the way pino places them: after level and time
  const wrap = (l: Logger, bound: string): Audit => ({
    event: (event, fields) => (fields ? l.info(fields, event) : l.info(event)),
    serialized: (event, members) => {
      dest.write(`{"level":"info","time":"${new Date().toISOString()}"${bound}${members ? `,${members}` : ''},"event":"${event}"}\n`);
    },
    with: (bindings) => {
      const json = JSON.stringify(bindings);
      return wrap(l.child(bindings), json === '{}' ? bound : `${bound},${json.slice(1, -1)}`);
    },
    flush: () => dest.flushSync(),
  });
  return wrap(log, '');
}
