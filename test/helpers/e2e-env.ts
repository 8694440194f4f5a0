/**
 * One end-to-end environment: a real PostgreSQL on 127.0.0.3:5432 (or `pgHost`), a config whose
 * policy the test chooses, the real daemon attached to a test-only agents' cgroup,
 * and helpers to run unmodified clients inside it.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findCgroup2Mount } from '../../src/identity/cgroups.js';
import { runAgent, type AgentResult } from './agent.js';
import { cli, startDaemon, type RunningDaemon } from './daemon.js';
import { startPostgres, type TestPostgres } from './postgres.js';

export interface E2EOptions {
  /** a name for the agents' cgroup, pin dir and temp dir (distinct per test file) */
  name: string;
  proxyPort: number;
  /** YAML of the analysts policy's rules, each line indented by 6 spaces */
  rules: string;
  /** YAML of the analysts policy's masking rules, each line indented by 6 spaces */
  masking?: string;
  /** more fields of the agents section (egress, allow ...), each line indented by 2 */
  agents?: string;
  /** extra YAML appended at the top level */
  extra?: string;
  /** more fields of the recording section (dir and key are the test's own), each line indented by 2 */
  recording?: string;
  /** more targets: YAML list items indented by 2 */
  targets?: string;
  /** more workloads / policies: YAML list items indented by 2 */
  workloads?: string;
  policies?: string;
  /** where the test's PostgreSQL listens (port 5432), and so the orders-db target's address; default 127.0.0.3 */
  pgHost?: string;
  /** the test PostgreSQL's max_connections; default 60 */
  maxConnections?: number;
  /** where recordings go (e.g. a small tmpfs the test mounted); default: recordings/ in the temp dir */
  recordingsDir?: string;
  /** node options for the daemon process (e.g. --expose-gc for memory measurements) */
  daemonNodeArgs?: string[];
}

/** Every statement kind but the opaque ones (function writes included): the foundation tests' "allow everything ordinary". */
export const ALLOW_ORDINARY =
  '      - { action: allow, match: { statements: [select, insert, update, delete, merge, copy_to, copy_from, create, alter, drop, truncate, set, transaction, explain, other, function_write] } }';

export class E2EEnv {
  root = '';
  pg!: TestPostgres;
  daemon!: RunningDaemon;
  auditFile = '';
  configFile = '';
  recordingsDir = '';
  recordingKey = '';
  readonly agents: string;
  readonly pinDir: string;
  readonly pgHost: string;
  private mount = '';

  constructor(private readonly opts: E2EOptions) {
    this.agents = `/interlock-${opts.name}.slice`;
    this.pinDir = `/sys/fs/bpf/interlock-${opts.name}`;
    this.pgHost = opts.pgHost ?? '127.0.0.3';
  }

  async start(): Promise<void> {
    this.mount = findCgroup2Mount()!;
    this.root = mkdtempSync(`/tmp/interlock-${this.opts.name}-`);
    chmodSync(this.root, 0o755);
    this.pg = startPostgres(join(this.root, 'pg'), { host: this.pgHost, maxConnections: this.opts.maxConnections });
    const secret = join(this.root, 'secrets', 'orders-db');
    mkdirSync(join(this.root, 'secrets'), { mode: 0o700 });
    writeFileSync(secret, `${this.pg.password}\n`, { mode: 0o600 });
    this.auditFile = join(this.root, 'audit.jsonl');
    this.configFile = join(this.root, 'interlock.yaml');
    this.recordingsDir = this.opts.recordingsDir ?? join(this.root, 'recordings');
    this.recordingKey = join(this.root, 'etc', 'recording.key');
    writeFileSync(this.configFile, `
agents:
  cgroup: ${this.agents}
${this.opts.agents ?? ''}
proxy:
  ports: { postgres: ${this.opts.proxyPort}, ssh: ${this.opts.proxyPort + 1000}, kubernetes: ${this.opts.proxyPort + 2000} }
  loginTimeout: 2s
bpf:
  pinDir: ${this.pinDir}
control:
  socket: ${this.root}/control.sock
workloads:
  - name: report-bot
    match: { cgroup: ${this.agents}/report-bot.service }
    groups: [analysts]
  - name: intern-bot
    match: { cgroup: ${this.agents}/intern-*.service }
${this.opts.workloads ?? ''}
targets:
  - name: orders-db
    protocol: postgres
    address: ${this.pgHost}:5432
    upstream:
      user: app
      password: { file: ${secret} }
      database: orders
  - name: dead-db
    protocol: postgres
    address: 127.0.0.5:5432
    upstream: { user: app, database: orders }
${this.opts.targets ?? ''}
policies:
  - name: analysts
    subjects: { groups: [analysts] }
    targets: [orders-db, dead-db]
    rules:
${this.opts.rules}
${this.opts.masking ? `    masking:\n${this.opts.masking}` : ''}
${this.opts.policies ?? ''}
audit:
  file: ${this.auditFile}
ssh:
  hostKey: ${this.root}/etc/ssh_host_ed25519_key
tls:
  caCert: ${this.root}/etc/node-ca.crt
  caKey: ${this.root}/etc/node-ca.key
recording:
  dir: ${this.recordingsDir}
  key: { file: ${this.recordingKey} }
${this.opts.recording ?? ''}
${this.opts.extra ?? ''}
`);
    this.daemon = await this.startDaemon();
  }

  /** the daemon on this environment's config (again, after a kill) */
  startDaemon(): Promise<RunningDaemon> {
    return startDaemon(this.configFile, 15_000, this.opts.daemonNodeArgs);
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
    if (this.configFile) cli(['detach', '--config', this.configFile]);
    this.pg?.stop();
    const agents = join(this.mount, this.agents);
    try {
      for (const d of readdirSync(agents, { withFileTypes: true })) if (d.isDirectory()) rmdirSync(join(agents, d.name));
      rmdirSync(agents);
    } catch {
      // a cgroup still busy is left for the next run
    }
    if (this.root) rmSync(this.root, { recursive: true, force: true });
  }

  /** the cgroup directory of an agent unit */
  cg(unit: string): string {
    return join(this.mount, this.agents, unit);
  }

  /** unmodified psql as the report-bot agent (or another unit), no password */
  psql(sql: string | string[], opts: { unit?: string; host?: string; extra?: string[]; env?: Record<string, string> } = {}): Promise<AgentResult> {
    const commands = (Array.isArray(sql) ? sql : [sql]).flatMap((c) => ['-c', c]);
    return runAgent(this.cg(opts.unit ?? 'report-bot.service'), 'psql',
      ['-h', opts.host ?? this.pgHost, '-p', '5432', '-U', 'whoever', '-d', 'orders', '-w', '-qAtX', ...commands, ...(opts.extra ?? [])], { env: opts.env });
  }
}
