/**
 * The daemon's local control socket: root-only (0600 in a 0700 directory), one JSON
 * request line in, one JSON answer line out.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { Server, createConnection, createServer } from 'node:net';
import { dirname } from 'node:path';

export interface SessionSummary {
  id: string;
  protocol: string;
  workload?: string;
  target?: string;
  pid?: number;
  comm?: string;
  since: string;
  queries: number;
}

export interface DaemonStatus {
  pid: number;
  since: string;
  cgroup: string;
  pinDir: string;
  links: number;
  egress: 'open' | 'lockdown';
  /** how unix-socket connects to databases are refused, or 'not refused' */
  unixSockets: string;
  packetSockets: 'refused' | 'not refused';
  /** why an optional BPF program is not attached */
  missing: string[];
  targets: { name: string; protocol: string; address: string }[];
  sessions: SessionSummary[];
  /** the daemon's process.memoryUsage(), in bytes: what each live session costs shows in heapUsed */
  memory: { heapUsed: number; heapTotal: number; rss: number; external: number; arrayBuffers: number };
}

const MAX_REQUEST = 64 * 1024;

/** More operations than status, each answering a parsed request (approvals). */
export type ControlHandler = (req: Record<string, unknown>) => Promise<unknown> | unknown;

export class ControlServer {
  private server?: Server;

  constructor(
    private readonly path: string,
    private readonly status: () => DaemonStatus,
    private readonly handlers: Record<string, ControlHandler> = {},
  ) {}

  listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    rmSync(this.path, { force: true }); // a stale socket from a crashed daemon
    const server = createServer((c) => {
      let buf = '';
      c.setEncoding('utf8');
      c.on('error', () => {});
      c.on('data', (d: string) => {
        buf += d;
        if (buf.length > MAX_REQUEST) return void c.destroy();
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        void this.handle(buf.slice(0, nl)).then((answer) => c.end(`${JSON.stringify(answer)}\n`));
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        chmodSync(this.path, 0o600);
        resolve();
      });
    });
  }

  private async handle(line: string): Promise<unknown> {
    let req: Record<string, unknown>;
    try {
      req = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return { ok: false, error: 'request is not JSON' };
    }
    if (req.op === 'status') {
      // a measurement wants the live heap, not garbage: collect first when the runtime allows (node --expose-gc)
      if (req.gc === true) (globalThis as { gc?: () => void }).gc?.();
      return { ok: true, status: this.status() };
    }
    const handler = typeof req.op === 'string' ? this.handlers[req.op] : undefined;
    if (!handler) return { ok: false, error: `unknown op ${JSON.stringify(req.op)}` };
    try {
      return { ok: true, ...((await handler(req)) as object) };
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      rmSync(this.path, { force: true });
    });
  }
}

/** Asks a running daemon; rejects when none answers on `path`. */
export function controlRequest(path: string, op: string, timeoutMs = 3000, fields: Record<string, unknown> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let buf = '';
    c.setEncoding('utf8');
    c.setTimeout(timeoutMs, () => c.destroy(new Error('the daemon did not answer in time')));
    c.on('connect', () => c.write(`${JSON.stringify({ ...fields, op })}\n`));
    c.on('data', (d: string) => (buf += d));
    c.on('error', reject);
    c.on('end', () => {
      try {
        const res = JSON.parse(buf) as { ok: boolean; error?: string };
        if (!res.ok) reject(new Error(res.error));
        else resolve(res);
      } catch {
        reject(new Error('malformed answer from the daemon'));
      }
    });
  });
}
