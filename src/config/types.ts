/** The validated, defaults-applied configuration. Produced only by loadConfig(). */

export type SecretRef = { file: string } | { env: string };

export interface HostPort {
  host: string;
  port: number;
}

export interface WorkloadDef {
  name: string;
  /** cgroup: exact path or glob, relative to the cgroup2 mount (e.g. /agents.slice/report-bot.service) */
  match: { cgroup?: string; uid?: number };
  groups: string[];
}

export interface PostgresUpstream extends HostPort {
  user: string;
  password?: SecretRef;
  /** the only database agents may ask for on this target; undefined: whatever the agent asks */
  database?: string;
}

export interface TargetDef {
  name: string;
  protocol: 'postgres';
  /** what agents dial: an IP literal and port */
  address: HostPort;
  upstream: PostgresUpstream;
}

export type RuleAction = 'allow' | 'deny' | 'approve';

export interface RuleDef {
  action: RuleAction;
  match: {
    statements?: string[];
    relations?: string[];
    /** with relations: only relations accessed this way count (allow+read: the statement writes nothing) */
    access?: 'read' | 'write';
    functions?: string[];
    pattern?: string;
  };
  message?: string;
  approvers?: string[];
  timeout?: string;
}

export interface MaskingRuleDef {
  columns?: string[];
  detectors?: string[];
  strategy: 'redact' | 'partial' | 'hash';
}

export interface PolicyDef {
  name: string;
  subjects: { groups: string[]; workloads: string[] };
  targets: string[];
  rules: RuleDef[];
  masking: MaskingRuleDef[];
}

export interface InterlockConfig {
  /** absolute path of the file this was loaded from */
  source: string;
  agents: {
    /** relative to the cgroup2 mount, starts with '/' */
    cgroup: string;
  };
  proxy: {
    /** loopback port per protocol that the redirect sends connections to (default postgres 15432) */
    ports: { postgres: number };
    /** connect to ready session, at most (default 30s): a silent client cannot hold a session open */
    loginTimeoutMs: number;
  };
  intercept: {
    /** every destination on these ports is intercepted, configured or not (default postgres [5432]) */
    ports: { postgres: number[] };
  };
  bpf: {
    /** where programs' links and maps are pinned (default /sys/fs/bpf/interlock) */
    pinDir: string;
  };
  control: {
    /** root-only unix socket for `interlock status` and friends (default /run/interlock/control.sock) */
    socket: string;
  };
  workloads: WorkloadDef[];
  targets: TargetDef[];
  policies: PolicyDef[];
  audit: {
    /** JSON lines; stdout when undefined */
    file?: string;
  };
  recording: RecordingConfig;
}

export interface RecordingConfig {
  /** default true: every session is recorded */
  enabled: boolean;
  /** one file per session; created 0700 (default /var/lib/interlock/recordings) */
  dir: string;
  /** the node's HMAC key; created 0600 on first start if missing (default /etc/interlock/recording.key) */
  keyFile: string;
  /** a session's pending events are written at least this often … (default 200 ms) */
  flushMs: number;
  /** … or as soon as this many bytes are pending (default 64 KiB) */
  flushBytes: number;
  /** recorded bytes per session, then a truncation marker; the session goes on (default 1 GiB) */
  maxSessionBytes: number;
  /** written-but-not-yet-on-disk bytes per session before onBackpressure applies (default 16 MiB) */
  bufferBytes: number;
  retention: { days: number; totalBytes: number };
  /** a disk that cannot keep up: hold the session until it does, or end it */
  onBackpressure: 'block' | 'end';
}
