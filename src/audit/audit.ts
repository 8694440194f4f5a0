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
  | 'daemon.stop';

export interface Audit {
  event(event: AuditEvent, fields?: Record<string, unknown>): void;
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
  const wrap = (l: Logger): Audit => ({
    event: (event, fields) => (fields ? l.info(fields, event) : l.info(event)),
    with: (bindings) => wrap(l.child(bindings)),
    flush: () => dest.flushSync(),
  });
  return wrap(log);
}
