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
  /** groups (and roles) from the IdP, read from the workload's client-credentials token and merged in */
  oidc?: { issuer: string; clientId: string; clientSecret: SecretRef; groupsClaim: string; rolesClaim: string; scope?: string; resource?: string };
}

export interface PostgresUpstream extends HostPort {
  user: string;
  password?: SecretRef;
  /** the only database agents may ask for on this target; undefined: whatever the agent asks */
  database?: string;
}

export interface SshUpstream extends HostPort {
  /** the account interlock logs in as */
  user: string;
  privateKey?: SecretRef;
  password?: SecretRef;
  /** the upstream host key pin: an OpenSSH known_hosts file; a mismatch fails closed */
  knownHosts: { file: string };
  /** user names an agent may ask for (ssh NAME@host); default: [user] */
  agentUsers: string[];
  /** environment variables an agent may pass (env requests; globs); default LANG, LC_* */
  env: string[];
}

export interface KubernetesUpstream extends HostPort {
  /** bearer token interlock presents (the agent's own is stripped) */
  token?: SecretRef;
  /** or a client certificate and key (PEM files) */
  clientCert?: { file: string };
  clientKey?: SecretRef;
  /** the cluster CA the API server's certificate must chain to (PEM) */
  ca: { file: string };
  /** the name to verify the API server's certificate for (default: the upstream host) */
  serverName?: string;
}

export type TargetDef =
  | { name: string; protocol: 'postgres'; /** what agents dial: an IP literal and port */ address: HostPort; upstream: PostgresUpstream }
  | { name: string; protocol: 'ssh'; address: HostPort; upstream: SshUpstream }
  | {
      name: string;
      protocol: 'kubernetes';
      address: HostPort;
      /** extra DNS names for the serving certificate agents see (the address is always in it) */
      serverNames: string[];
      upstream: KubernetesUpstream;
    };

export type PostgresTargetDef = Extract<TargetDef, { protocol: 'postgres' }>;
export type SshTargetDef = Extract<TargetDef, { protocol: 'ssh' }>;
export type KubernetesTargetDef = Extract<TargetDef, { protocol: 'kubernetes' }>;

export type RuleAction = 'allow' | 'deny' | 'approve';

export interface RuleDef {
  action: RuleAction;
  match: {
    statements?: string[];
    relations?: string[];
    /** with relations: only relations accessed this way count (allow+read: the statement writes nothing) */
    access?: 'read' | 'write';
    functions?: string[];
    /** regular expression on the statement / command text */
    pattern?: string;
    /** SSH: globs over a shell command's parts ("program arg arg"), each part judged alone */
    commands?: string[];
    /** SSH: channel kinds (shell, exec, sftp, port-forward, remote-forward, agent-forward, x11) */
    channels?: string[];
    /** SSH: sftp/scp path globs (with access: read | write) */
    paths?: string[];
    /** Kubernetes: request verbs (get, list, watch, create, update, patch, delete, deletecollection) */
    verbs?: string[];
    /** Kubernetes: API groups ("" is the core group; globs) */
    apiGroups?: string[];
    /** Kubernetes: resources, with subresources as "pods/exec" (globs) */
    resources?: string[];
    /** Kubernetes: namespaces (globs); a cluster-scoped request has none */
    namespaces?: string[];
    /** Kubernetes: object names (globs) */
    names?: string[];
  };
  message?: string;
  approvers?: string[];
  timeout?: string;
}

export interface MaskingRuleDef {
  columns?: string[];
  detectors?: string[];
  strategy: 'redact' | 'partial' | 'hash';
  /** functions outside pg_catalog that may be called while column rules apply ("schema.name" globs): trusted not to return masked values */
  allowFunctions?: string[];
}

export interface PolicyDef {
  name: string;
  subjects: { groups: string[]; workloads: string[] };
  targets: string[];
  rules: RuleDef[];
  masking: MaskingRuleDef[];
}

/** One egress allow-list entry; port 0 means any port. */
export interface EgressAllowDef {
  ip: string;
  /** prefix length in the address family's own bits (/24 of IPv4, /64 of IPv6) */
  prefix: number;
  port: number;
  protocol: 'tcp' | 'udp' | 'any';
}

export interface InterlockConfig {
  /** absolute path of the file this was loaded from */
  source: string;
  agents: {
    /** relative to the cgroup2 mount, starts with '/' */
    cgroup: string;
    /** lockdown: every connect/datagram that is not intercepted or allow-listed is refused (default open) */
    egress: 'open' | 'lockdown';
    allow: EgressAllowDef[];
    /** unix socket names (as their server bound them) agents may not connect to, beside PostgreSQL's */
    denyUnixSockets: string[];
  };
  proxy: {
    /** loopback port per protocol that the redirect sends connections to (default postgres 15432, ssh 15422, kubernetes 15443) */
    ports: { postgres: number; ssh: number; kubernetes: number };
    /** connect to ready session, at most (default 30s): a silent client cannot hold a session open */
    loginTimeoutMs: number;
  };
  intercept: {
    /** every destination on these ports is intercepted, configured or not (default postgres [5432], ssh [22], kubernetes [6443]) */
    ports: { postgres: number[]; ssh: number[]; kubernetes: number[] };
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
  ssh: {
    /** the node's host key, shown to agents for every intercepted SSH target (created 0600 on first start) */
    hostKey: string;
  };
  tls: {
    /** the node CA that issues the serving certificates agents see for TLS targets (created on first start; key 0600) */
    caCert: string;
    caKey: string;
  };
  /** holding commands for a human's approval; undefined: `approve` rules refuse ("approval required") */
  approvals?: ApprovalsConfig;
  /** what one session may send or make interlock hold, and how long it may take */
  limits: LimitsConfig;
}

/**
 * Bounds per session, so that no agent's input (and no dead upstream) can exhaust the
 * daemon or hold a session forever. Defaults in DEFAULT_LIMITS (src/config/limits.ts).
 */
export interface LimitsConfig {
  /** PostgreSQL: the largest message an agent may send (Query, Parse, CopyData …); larger ends the session */
  maxMessageBytes: number;
  /** PostgreSQL: the largest server message held whole (to be masked); one that needs no masking streams through at any size */
  maxUpstreamMessageBytes: number;
  /** a PostgreSQL message or HTTP request that has begun must be complete within this; idle time between messages is not limited */
  partialMessageTimeoutMs: number;
  /** connecting to an upstream until it answers (PostgreSQL, SSH); an upstream that stays silent this long ends the login */
  upstreamConnectTimeoutMs: number;
  /** Kubernetes: the largest request body; larger is answered 413 */
  maxRequestBodyBytes: number;
  /** Kubernetes: request headers, all of them together */
  maxHeaderBytes: number;
  /** Kubernetes: the API server must begin its answer within this (504 otherwise); a started watch is not limited */
  upstreamResponseTimeoutMs: number;
  /** SSH: the longest exec command; longer ones are refused (the channel, not the session) */
  maxCommandBytes: number;
  /** sessions one workload may have open at once, all protocols together; more are refused */
  maxSessionsPerWorkload: number;
}

export interface ApprovalsConfig {
  /** durable record of requests (JSON lines, 0600; default /var/lib/interlock/approvals.jsonl) */
  store: string;
  /** who may approve: humans with an ID token from this issuer for this client, in a rule's approver group */
  oidc: { issuer: string; clientId: string; groupsClaim: string; scope: string };
  webhooks: { url: string }[];
  /** a link base shown in notifications (e.g. an approvals page) */
  link?: string;
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
