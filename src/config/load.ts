/**
 * Reads and validates the Interlock YAML file.
 *
 * Validation runs on the plain JS value (doc.toJS()); a side table maps every
 * field path ("targets[0].upstream.password") to its offset in the text, so any
 * error can name its line and column without threading YAML nodes through the checks.
 */
import { readFileSync } from 'node:fs';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { endpointKey } from './targets.js';
import { DEFAULT_LIMITS } from './limits.js';
import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type {
  HostPort,
  EgressAllowDef,
  InterlockConfig,
  MaskingRuleDef,
  PolicyDef,
  RecordingConfig,
  PostgresUpstream,
  RuleDef,
  SshUpstream,
  KubernetesUpstream,
  ApprovalsConfig,
  LimitsConfig,
  SecretRef,
  TargetDef,
  WorkloadDef,
} from './types.js';

export const PROTOCOLS = ['postgres', 'ssh', 'kubernetes'] as const;
export const KUBE_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'] as const;
export const SSH_CHANNELS = ['shell', 'exec', 'sftp', 'port-forward', 'remote-forward', 'agent-forward', 'x11'] as const;
const POSTGRES_MATCH_KEYS = ['statements', 'relations', 'functions'] as const;
const SSH_MATCH_KEYS = ['commands', 'channels', 'paths'] as const;
const KUBE_MATCH_KEYS = ['verbs', 'apiGroups', 'resources', 'namespaces', 'names'] as const;
export const RULE_ACTIONS = ['allow', 'deny', 'approve'] as const;
export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'copy_to', 'copy_from', 'create', 'alter', 'drop',
  'truncate', 'grant', 'revoke', 'set', 'transaction', 'explain', 'call', 'do', 'other', 'function_write',
] as const;
export const DETECTORS = ['email', 'credit_card', 'iban', 'ssn', 'phone', 'jwt', 'aws_key', 'gcp_key', 'azure_key', 'private_key'] as const;
export const MASKING_STRATEGIES = ['redact', 'partial', 'hash'] as const;

const NAME = /^[a-z0-9][a-z0-9._-]*$/i;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;
const DURATION = /^[1-9]\d*[smh]$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class ConfigError extends Error {
  override name = 'ConfigError';
  /** '' until the error has been placed in a file (e.g. when thrown by parseHostPort on its own) */
  readonly file: string;
  readonly line?: number;
  readonly column?: number;

  constructor(
    /** dotted path such as targets[0].upstream.password; '' for file-level problems */
    readonly field: string,
    /** what is wrong, without the location prefix */
    readonly problem: string,
    where: { file?: string; line?: number; column?: number } = {},
  ) {
    const loc = [where.file, where.line, where.line === undefined ? undefined : where.column]
      .filter((x) => x !== undefined && x !== '')
      .join(':');
    super([loc, field, problem].filter((x) => x).join(': '));
    this.file = where.file ?? '';
    this.line = where.line;
    this.column = where.column;
  }
}

export function loadConfig(file: string): InterlockConfig {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new ConfigError('', `cannot read config file: ${why}`, { file: abs });
  }
  return parseConfig(text, abs);
}

export function parseConfig(text: string, file: string): InterlockConfig {
  const lc = new LineCounter();
  // prettyErrors off: we format the location ourselves from err.pos
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const placed = (field: string, problem: string, offset: number | undefined) => {
    const lp = offset === undefined ? undefined : lc.linePos(offset);
    return new ConfigError(field, problem, { file, line: lp?.line, column: lp?.col });
  };

  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw placed('', `invalid YAML: ${e.message}`, e.pos[0]);
  }
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (e) {
    throw placed('', `invalid YAML: ${(e as Error).message}`, undefined); // e.g. alias bombs
  }

  const offsets = fieldOffsets(doc);
  try {
    return buildConfig(raw, resolve(file));
  } catch (e) {
    if (!(e instanceof ConfigError) || e.file) throw e;
    // a missing field has no offset of its own: report it where its nearest ancestor is
    let f = e.field;
    while (!offsets.has(f) && f !== '') f = parentPath(f);
    throw placed(e.field, e.problem, offsets.get(f));
  }
}

/**
 * "127.0.0.3:5432" or "[::1]:5432"; with hostnames, also "db.internal:5432".
 * IPv6 always needs brackets and a port, so "::ffff:127.0.0.3" is rejected.
 * Throws a ConfigError for `field` (without file/line; parseConfig adds those).
 */
export function parseHostPort(s: string, field = 'address', opts: { hostnames?: boolean } = {}): HostPort {
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') fail(field, `expected [IPv6]:port like [::1]:5432, found "${s}"`);
    host = s.slice(1, end);
    portText = s.slice(end + 2);
    if (isIP(host) !== 6) fail(field, `"${host}" is not an IPv6 address`);
  } else {
    const parts = s.split(':');
    if (parts.length === 1) fail(field, `expected host:port like 127.0.0.3:5432, found "${s}" (no port)`);
    if (parts.length > 2) fail(field, `"${s}": an IPv6 address needs brackets and a port, like [::1]:5432`);
    [host, portText] = parts as [string, string];
    checkHost(host, field, opts.hostnames ?? false);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
  if (port < 1 || port > 65535) fail(field, `port "${portText}" is not a number from 1 to 65535`);
  return { host, port };
}

// ---------------------------------------------------------------------------
// The config tree

const TOP_KEYS = ['agents', 'proxy', 'intercept', 'bpf', 'control', 'workloads', 'targets', 'policies', 'audit', 'recording', 'ssh', 'tls', 'approvals', 'limits'];

function buildConfig(raw: unknown, source: string): InterlockConfig {
  const top = fields(raw ?? {}, '', TOP_KEYS, 'a mapping at the top level');
  // checked in the usual document order, so the first error reported is the first one a reader meets
  const agentFields = top.sub('agents', ['cgroup', 'egress', 'allow', 'denyUnixSockets']);
  const agents = {
    cgroup: agentFields.req('cgroup', cgroupPath),
    egress: agentFields.opt('egress', oneOf(['open', 'lockdown'] as const, 'egress mode'), 'open'),
    allow: agentFields.opt('allow', list(egressAllow), []),
    denyUnixSockets: agentFields.opt('denyUnixSockets', list(unixSocketPath), []),
  };
  if (agents.allow.length && agents.egress !== 'lockdown') fail(agentFields.path('allow'), 'an allow-list only means something with egress: lockdown');
  const proxyFields = top.sub('proxy', ['ports', 'loginTimeout']);
  const proxyPorts = proxyFields.sub('ports', ['postgres', 'ssh', 'kubernetes']);
  const proxy = {
    ports: { postgres: proxyPorts.opt('postgres', port, 15432), ssh: proxyPorts.opt('ssh', port, 15422), kubernetes: proxyPorts.opt('kubernetes', port, 15443) },
    loginTimeoutMs: durationMs(proxyFields.opt('loginTimeout', duration, '30s')),
  };
  if (proxy.ports.ssh === proxy.ports.postgres) fail(proxyPorts.path('ssh'), `same port as proxy.ports.postgres (${proxy.ports.postgres})`);
  if (proxy.ports.kubernetes === proxy.ports.postgres || proxy.ports.kubernetes === proxy.ports.ssh) fail(proxyPorts.path('kubernetes'), 'same port as another protocol\'s');
  const interceptPorts = top.sub('intercept', ['ports']).sub('ports', ['postgres', 'ssh', 'kubernetes']);
  const intercept = {
    ports: {
      postgres: interceptPorts.opt('postgres', list(port), [5432]),
      ssh: interceptPorts.opt('ssh', list(port), [22]),
      kubernetes: interceptPorts.opt('kubernetes', list(port), [6443]),
    },
  };
  const bpf = { pinDir: top.sub('bpf', ['pinDir']).opt('pinDir', absPath, '/sys/fs/bpf/interlock') };
  const control = { socket: top.sub('control', ['socket']).opt('socket', absPath, '/run/interlock/control.sock') };

  const workloads = top.opt('workloads', list(workload), []);
  unique(workloads, 'workloads');
  const targets = top.opt('targets', list(target), []);
  unique(targets, 'targets');
  const byAddress = new Map<string, number>();
  targets.forEach((t, i) => {
    const key = endpointKey(t.address.host, t.address.port);
    const j = byAddress.get(key);
    if (j !== undefined) fail(`targets[${i}].address`, `same address as targets[${j}] ("${targets[j]!.name}")`);
    byAddress.set(key, i);
  });
  const known = { workloads: new Set(workloads.map((w) => w.name)), targets: new Set(targets.map((t) => t.name)) };
  const policies = top.opt('policies', list(policy(known)), []);
  unique(policies, 'policies');
  const audit = { file: top.sub('audit', ['file']).opt('file', absPath) };
  const recording = recordingConfig(top.sub('recording', ['enabled', 'dir', 'key', 'flush', 'maxSessionBytes', 'bufferBytes', 'retention', 'onBackpressure']));

  const ssh = { hostKey: top.sub('ssh', ['hostKey']).opt('hostKey', absPath, '/etc/interlock/ssh_host_ed25519_key') };
  const tlsFields = top.sub('tls', ['caCert', 'caKey']);
  const tls = { caCert: tlsFields.opt('caCert', absPath, '/etc/interlock/node-ca.crt'), caKey: tlsFields.opt('caKey', absPath, '/etc/interlock/node-ca.key') };

  const approvals = top.has('approvals') ? approvalsConfig(top.sub('approvals', ['store', 'oidc', 'webhooks', 'link'])) : undefined;
  const limits = limitsConfig(top.sub('limits', LIMIT_KEYS));

  return { source, agents, proxy, intercept, bpf, control, workloads, targets, policies, audit, recording, ssh, tls, approvals, limits };
}

const LIMIT_KEYS = [
  'maxMessageBytes', 'maxUpstreamMessageBytes', 'partialMessageTimeout', 'upstreamConnectTimeout',
  'maxRequestBodyBytes', 'maxHeaderBytes', 'upstreamResponseTimeout', 'maxCommandBytes', 'maxSessionsPerWorkload',
];

function limitsConfig(l: Fields): LimitsConfig {
  const d = DEFAULT_LIMITS;
  const size = (min: number, max: number) => (v: unknown, f: string) => byteSize(v, f, min, max);
  const ms = (max: string) => (v: unknown, f: string) => {
    const n = durationMs(duration(v, f));
    if (n > durationMs(max)) fail(f, `${v} is longer than the ${max} this can be`);
    return n;
  };
  return {
    // PostgreSQL's own bound on a message is 1 GB
    maxMessageBytes: l.opt('maxMessageBytes', size(1 << 10, 2 ** 30), d.maxMessageBytes),
    maxUpstreamMessageBytes: l.opt('maxUpstreamMessageBytes', size(1 << 20, 2 ** 30), d.maxUpstreamMessageBytes),
    partialMessageTimeoutMs: l.opt('partialMessageTimeout', ms('1h'), d.partialMessageTimeoutMs),
    upstreamConnectTimeoutMs: l.opt('upstreamConnectTimeout', ms('10m'), d.upstreamConnectTimeoutMs),
    maxRequestBodyBytes: l.opt('maxRequestBodyBytes', size(1 << 10, 2 ** 30), d.maxRequestBodyBytes),
    maxHeaderBytes: l.opt('maxHeaderBytes', size(1 << 10, 1 << 20), d.maxHeaderBytes),
    upstreamResponseTimeoutMs: l.opt('upstreamResponseTimeout', ms('1h'), d.upstreamResponseTimeoutMs),
    // one SSH packet carries at most 35000 bytes, the command with it
    maxCommandBytes: l.opt('maxCommandBytes', size(64, 32 << 10), d.maxCommandBytes),
    maxSessionsPerWorkload: l.opt('maxSessionsPerWorkload', (v, f) => integer(v, f, 1, 1_000_000), d.maxSessionsPerWorkload),
  };
}

function approvalsConfig(a: Fields): ApprovalsConfig {
  const oidc = a.req('oidc', (v, f) => {
    const o = fields(v, f, ['issuer', 'clientId', 'groupsClaim', 'scope']);
    return {
      issuer: o.req('issuer', url),
      clientId: o.req('clientId', str),
      groupsClaim: o.opt('groupsClaim', str, 'groups'),
      scope: o.opt('scope', str, 'openid profile email groups'),
    };
  });
  return {
    store: a.opt('store', absPath, '/var/lib/interlock/approvals.jsonl'),
    oidc,
    webhooks: a.opt('webhooks', list((v, f) => ({ url: fields(v, f, ['url']).req('url', url) })), []),
    link: a.opt('link', url),
  };
}

function url(v: unknown, f: string): string {
  const s = str(v, f, 'a URL');
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    fail(f, `"${s}" is not a URL`);
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && /^(127\.|\[::1\]|localhost$)/.test(u.hostname))) fail(f, `"${s}" must be https (http only on loopback)`);
  return s;
}

function recordingConfig(r: Fields): RecordingConfig {
  const flush = r.sub('flush', ['ms', 'bytes']);
  const retention = r.sub('retention', ['days', 'totalBytes']);
  return {
    enabled: r.opt('enabled', bool, true),
    dir: r.opt('dir', absPath, '/var/lib/interlock/recordings'),
    keyFile: r.sub('key', ['file']).opt('file', absPath, '/etc/interlock/recording.key'),
    flushMs: flush.opt('ms', (v, f) => integer(v, f, 1, 60_000), 200),
    flushBytes: flush.opt('bytes', (v, f) => byteSize(v, f, 1024, 64 << 20), 64 * 1024),
    maxSessionBytes: r.opt('maxSessionBytes', (v, f) => byteSize(v, f, 1 << 20, 2 ** 50), 2 ** 30),
    bufferBytes: r.opt('bufferBytes', (v, f) => byteSize(v, f, 64 * 1024, 2 ** 34), 16 << 20),
    retention: {
      days: retention.opt('days', (v, f) => integer(v, f, 1, 36_500), 90),
      totalBytes: retention.opt('totalBytes', (v, f) => byteSize(v, f, 1 << 20, 2 ** 60), 50 * 2 ** 30),
    },
    onBackpressure: r.opt('onBackpressure', oneOf(['block', 'end'] as const, 'onBackpressure'), 'block'),
  };
}

function workload(v: unknown, f: string): WorkloadDef {
  const m = fields(v, f, ['name', 'match', 'groups', 'oidc']);
  const name = m.req('name', objectName);
  if (name.toLowerCase() === 'unknown') fail(m.path('name'), '"unknown" is reserved for connections no workload matches');
  const match = m.req('match', (v, f) => {
    const mm = fields(v, f, ['cgroup', 'uid']);
    if (!mm.has('cgroup') && !mm.has('uid')) fail(f, 'needs at least one of cgroup or uid');
    return { cgroup: mm.opt('cgroup', cgroupPath), uid: mm.opt('uid', uid) };
  });
  const oidc = m.opt('oidc', (v, f) => {
    const o = fields(v, f, ['issuer', 'clientId', 'clientSecret', 'groupsClaim', 'rolesClaim', 'scope', 'resource']);
    return {
      issuer: o.req('issuer', url), clientId: o.req('clientId', str), clientSecret: o.req('clientSecret', secretRef),
      groupsClaim: o.opt('groupsClaim', str, 'groups'), rolesClaim: o.opt('rolesClaim', str, 'roles'),
      scope: o.opt('scope', str), resource: o.opt('resource', str),
    };
  });
  return { name, match, groups: m.opt('groups', list(str), []), ...(oidc ? { oidc } : {}) };
}

function target(v: unknown, f: string): TargetDef {
  const m = fields(v, f, ['name', 'protocol', 'address', 'upstream', 'serverName']);
  const name = m.req('name', objectName);
  const protocol = m.req('protocol', oneOf(PROTOCOLS, 'protocol'));
  const address = m.req('address', (v, f) => parseHostPort(str(v, f, 'a string like 127.0.0.3:5432'), f));
  if (m.has('serverName') && protocol !== 'kubernetes') fail(m.path('serverName'), 'only applies to kubernetes targets');
  if (protocol === 'kubernetes') {
    const serverNames = m.opt('serverName', (v, f) => (Array.isArray(v) ? list(str)(v, f) : [str(v, f)]), [] as string[]);
    return { name, protocol, address, serverNames, upstream: m.req('upstream', kubeUpstream(address)) };
  }
  if (protocol === 'ssh') return { name, protocol, address, upstream: m.req('upstream', sshUpstream(address)) };
  return { name, protocol, address, upstream: m.req('upstream', upstream(address)) };
}

function upstreamHostPort(m: Fields, address: HostPort): HostPort {
  if (m.has('address')) {
    if (m.has('host') || m.has('port')) fail(m.path('address'), 'give either address or host/port, not both');
    return m.req('address', (v, f) => parseHostPort(str(v, f, 'a string like build.internal:22'), f, { hostnames: true }));
  }
  // by default the proxy connects to the very address agents dialed
  return { host: m.opt('host', host, address.host), port: m.opt('port', port, address.port) };
}

function kubeUpstream(address: HostPort) {
  return (v: unknown, f: string): KubernetesUpstream => {
    const m = fields(v, f, ['address', 'host', 'port', 'token', 'clientCert', 'clientKey', 'ca', 'serverName']);
    const hp = upstreamHostPort(m, address);
    const token = m.opt('token', secretRef);
    const fileRef = (v: unknown, f: string) => ({ file: fields(v, f, ['file'], 'a mapping like { file: /etc/interlock/x.pem }').req('file', absPath) });
    const clientCert = m.opt('clientCert', fileRef);
    const clientKey = m.opt('clientKey', secretRef);
    if (!token && !clientCert) fail(f, 'needs token or clientCert/clientKey (the credential interlock presents)');
    if (token && clientCert) fail(m.path('clientCert'), 'give either token or clientCert/clientKey, not both');
    if (clientCert && !clientKey) fail(m.path('clientKey'), 'missing required field (clientCert needs its key)');
    return { ...hp, token, clientCert, clientKey, ca: m.req('ca', fileRef), serverName: m.opt('serverName', str) };
  };
}

function sshUpstream(address: HostPort) {
  return (v: unknown, f: string): SshUpstream => {
    const m = fields(v, f, ['address', 'host', 'port', 'user', 'privateKey', 'password', 'knownHosts', 'agentUsers', 'env']);
    const hp = upstreamHostPort(m, address);
    const user = m.req('user', str);
    const privateKey = m.opt('privateKey', secretRef);
    const password = m.opt('password', secretRef);
    if (!privateKey && !password) fail(f, 'needs privateKey or password (the credential interlock logs in with)');
    const knownHosts = m.req('knownHosts', (v, f) => ({ file: fields(v, f, ['file'], 'a mapping like { file: /etc/interlock/host.known_hosts }').req('file', absPath) }));
    return {
      ...hp, user, privateKey, password, knownHosts,
      agentUsers: m.opt('agentUsers', list(str), [user]),
      env: m.opt('env', list(str), ['LANG', 'LC_*']),
    };
  };
}

function upstream(address: HostPort) {
  return (v: unknown, f: string): PostgresUpstream => {
    const m = fields(v, f, ['address', 'host', 'port', 'user', 'password', 'database']);
    const hp = upstreamHostPort(m, address);
    return { ...hp, user: m.req('user', str), password: m.opt('password', secretRef), database: m.opt('database', str) };
  };
}

function secretRef(v: unknown, f: string): SecretRef {
  const m = fields(v, f, ['file', 'env'], 'a mapping like { file: /path } or { env: NAME } (passwords are never written inline)');
  if (m.has('file') === m.has('env')) fail(f, 'give exactly one of file or env');
  if (m.has('file')) return { file: m.req('file', absPath) };
  return {
    env: m.req('env', (v, f) => {
      const s = str(v, f);
      if (!ENV_NAME.test(s)) fail(f, `"${s}" is not a valid environment variable name`);
      return s;
    }),
  };
}

function policy(known: { workloads: Set<string>; targets: Set<string> }) {
  return (v: unknown, f: string): PolicyDef => {
    const m = fields(v, f, ['name', 'subjects', 'targets', 'rules', 'masking']);
    const name = m.req('name', objectName);
    const subjects = m.req('subjects', (v, f) => {
      const s = fields(v, f, ['groups', 'workloads']);
      const groups = s.opt('groups', list(str), []);
      const workloads = s.opt('workloads', list(ref(known.workloads, 'workload')), []);
      if (groups.length === 0 && workloads.length === 0) fail(f, 'needs at least one group or workload');
      return { groups, workloads };
    });
    const targets = m.req('targets', (v, f) => {
      const ts = list(ref(known.targets, 'target'))(v, f);
      if (ts.length === 0) fail(f, 'needs at least one target');
      return ts;
    });
    return { name, subjects, targets, rules: m.opt('rules', list(rule), []), masking: m.opt('masking', list(masking), []) };
  };
}

function rule(v: unknown, f: string): RuleDef {
  const m = fields(v, f, ['action', 'match', 'message', 'approvers', 'timeout']);
  const action = m.req('action', oneOf(RULE_ACTIONS, 'action'));
  const mm = m.sub('match', ['statements', 'relations', 'access', 'functions', 'pattern', 'commands', 'channels', 'paths', 'verbs', 'apiGroups', 'resources', 'namespaces', 'names']);
  const match: RuleDef['match'] = {
    statements: mm.opt('statements', list(oneOf(STATEMENT_KINDS, 'statement kind'))),
    relations: mm.opt('relations', list(str)),
    access: mm.opt('access', oneOf(['read', 'write'] as const, 'access')),
    functions: mm.opt('functions', list(str)),
    pattern: mm.opt('pattern', regex),
    commands: mm.opt('commands', list(str)),
    channels: mm.opt('channels', list(oneOf(SSH_CHANNELS, 'channel'))),
    paths: mm.opt('paths', list(str)),
    verbs: mm.opt('verbs', list(oneOf(KUBE_VERBS, 'verb'))),
    apiGroups: mm.opt('apiGroups', list((v, f) => (v === '' ? '' : str(v, f)))),
    resources: mm.opt('resources', list(str)),
    namespaces: mm.opt('namespaces', list((v, f) => (v === '' ? '' : str(v, f)))), // "": cluster scope
    names: mm.opt('names', list(str)),
  };
  // a rule speaks one protocol: filters the other protocol's engine does not read would make it match everything there
  const pgKey = POSTGRES_MATCH_KEYS.find((k) => mm.has(k));
  const sshKey = SSH_MATCH_KEYS.find((k) => mm.has(k));
  const kubeKey = KUBE_MATCH_KEYS.find((k) => mm.has(k));
  if (pgKey && sshKey) fail(mm.path(sshKey), `an SSH filter cannot share a rule with the PostgreSQL filter "${pgKey}"; write two rules`);
  if (kubeKey && pgKey) fail(mm.path(kubeKey), `a Kubernetes filter cannot share a rule with the PostgreSQL filter "${pgKey}"; write two rules`);
  // commands may go with Kubernetes filters: the command of a pods/exec request
  const sshOnly = (['channels', 'paths'] as const).find((k) => mm.has(k));
  if (kubeKey && sshOnly) fail(mm.path(sshOnly), `an SSH filter cannot share a rule with the Kubernetes filter "${kubeKey}"; write two rules`);
  if (mm.has('access') && !mm.has('relations') && !mm.has('paths')) fail(mm.path('access'), 'only applies with relations or paths');
  // catches approve-only settings left on a rule whose action was changed
  for (const k of ['approvers', 'timeout']) {
    if (m.has(k) && action !== 'approve') fail(m.path(k), 'only applies to action: approve');
  }
  return {
    action,
    match,
    message: m.opt('message', str),
    approvers: m.opt('approvers', list(str)),
    timeout: m.opt('timeout', duration),
  };
}

function masking(v: unknown, f: string): MaskingRuleDef {
  const m = fields(v, f, ['columns', 'detectors', 'strategy', 'allowFunctions']);
  const columns = m.opt('columns', list(str));
  const detectors = m.opt('detectors', list(oneOf(DETECTORS, 'detector')));
  const allowFunctions = m.opt('allowFunctions', list(str));
  if (!columns?.length && !detectors?.length && !allowFunctions?.length) fail(f, 'needs at least one of columns, detectors or allowFunctions');
  for (const [i, name] of (allowFunctions ?? []).entries()) if (!/^[^.\s]+\.[^.\s]+$/.test(name)) fail(`${f}.allowFunctions[${i}]`, `expected "schema.function", found ${JSON.stringify(name)}`);
  // a rule that only allows functions masks nothing: it needs no strategy
  const strategy = columns?.length || detectors?.length ? m.req('strategy', oneOf(MASKING_STRATEGIES, 'strategy')) : m.opt('strategy', oneOf(MASKING_STRATEGIES, 'strategy'), 'redact');
  return allowFunctions ? { columns, detectors, strategy, allowFunctions } : { columns, detectors, strategy };
}

// ---------------------------------------------------------------------------
// Small checks. Each takes the raw value and its field path, and returns the typed value or fails.

type Check<T> = (v: unknown, field: string) => T;

function fail(field: string, problem: string): never {
  throw new ConfigError(field, problem);
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a sequence';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  return `the ${typeof v} ${String(v)}`;
}

function expected(field: string, what: string, v: unknown): never {
  fail(field, `expected ${what}, found ${describe(v)}`);
}

function str(v: unknown, f: string, what = 'a string'): string {
  if (typeof v !== 'string') expected(f, what, v);
  if (v === '') fail(f, 'must not be empty');
  return v;
}

function list<T>(item: Check<T>): Check<T[]> {
  return (v, f) => {
    if (!Array.isArray(v)) expected(f, 'a sequence', v);
    return v.map((x, i) => item(x, `${f}[${i}]`));
  };
}

function oneOf<T extends string>(values: readonly T[], kind: string): Check<T> {
  return (v, f) => {
    const s = str(v, f);
    if (!(values as readonly string[]).includes(s)) fail(f, `unknown ${kind} "${s}" (valid: ${values.join(', ')})`);
    return s as T;
  };
}

function ref(names: Set<string>, kind: string): Check<string> {
  return (v, f) => {
    const s = str(v, f);
    if (!names.has(s)) fail(f, `unknown ${kind} "${s}" (defined: ${[...names].join(', ') || 'none'})`);
    return s;
  };
}

function integer(v: unknown, f: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    expected(f, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

const port: Check<number> = (v, f) => integer(v, f, 1, 65535);
const uid: Check<number> = (v, f) => integer(v, f, 0, 4294967294); // (uid_t)-1 means "no uid"

function objectName(v: unknown, f: string): string {
  const s = str(v, f);
  if (!NAME.test(s)) fail(f, `"${s}" is not a valid name (letters, digits, '.', '_', '-'; starting with a letter or digit)`);
  return s;
}

const ALLOW = /^(?:(tcp|udp)\s+)?(?:\[([0-9a-f:.]+)(?:\/(\d{1,3}))?\]|([0-9.]+)(?:\/(\d{1,2}))?):(\d{1,5}|\*)$/i;

/** "10.0.0.2:53", "udp 10.0.0.0/8:*", "tcp [2001:db8::/32]:443" */
export function egressAllow(v: unknown, f: string): EgressAllowDef {
  const s = str(v, f, 'an allow-list entry like "udp 10.0.0.2/32:53"').trim();
  const m = ALLOW.exec(s);
  if (!m) fail(f, `"${s}" is not [tcp|udp] CIDR:port (e.g. "udp 10.0.0.2/32:53", "tcp [2001:db8::/32]:443", port * for any)`);
  const v6 = m[2] !== undefined;
  const ip = v6 ? m[2] : m[4];
  if (v6 ? !isIPv6(ip) : !isIPv4(ip)) fail(f, `"${ip}" is not an IPv${v6 ? 6 : 4} address`);
  const bits = v6 ? 128 : 32;
  const prefix = m[v6 ? 3 : 5] === undefined ? bits : Number(m[v6 ? 3 : 5]);
  if (prefix > bits) fail(f, `prefix /${prefix} is longer than ${bits} bits`);
  const port = m[6] === '*' ? 0 : Number(m[6]);
  if (m[6] !== '*' && (port < 1 || port > 65535)) fail(f, `port ${m[6]} is out of range (1-65535, or *)`);
  return { ip, prefix, port, protocol: (m[1]?.toLowerCase() as 'tcp' | 'udp' | undefined) ?? 'any' };
}

function unixSocketPath(v: unknown, f: string): string {
  const s = absPath(v, f);
  if (Buffer.byteLength(s) > 107) fail(f, 'longer than a unix socket name can be (107 bytes)');
  return s;
}

function absPath(v: unknown, f: string): string {
  const s = str(v, f, 'an absolute path');
  if (!s.startsWith('/')) fail(f, `"${s}" is not an absolute path`);
  return s;
}

/** cgroup paths are relative to the cgroup2 mount; '..' would escape the subtree the daemon watches */
function cgroupPath(v: unknown, f: string): string {
  const s = str(v, f, 'a cgroup path like /agents.slice');
  if (!s.startsWith('/')) fail(f, `"${s}" must start with / (paths are relative to the cgroup2 mount)`);
  if (s.split('/').includes('..')) fail(f, `"${s}" must not contain '..'`);
  return s;
}

function host(v: unknown, f: string): string {
  const s = str(v, f, 'a hostname or IP address');
  checkHost(s, f, true);
  return s;
}

function checkHost(h: string, f: string, hostnames: boolean): void {
  if (isIP(h)) return;
  if (h === '') fail(f, 'missing host');
  if (/^[\d.]+$/.test(h)) fail(f, `"${h}" is not a valid IPv4 address`);
  if (!hostnames) {
    fail(f, `"${h}" is a hostname, but an IP address is required here (like 127.0.0.3:5432 or [::1]:5432): ` +
      'agents dial an IP address and interception matches on it; put hostnames in upstream');
  }
  if (!HOSTNAME.test(h)) fail(f, `"${h}" is not a valid hostname or IP address`);
}

function regex(v: unknown, f: string): string {
  const s = str(v, f, 'a regular expression string');
  try {
    new RegExp(s);
  } catch (e) {
    fail(f, (e as Error).message);
  }
  return s;
}

/** '30s' → 30000 (the string already passed `duration`) */
export function durationMs(d: string): number {
  const unit = { s: 1000, m: 60_000, h: 3_600_000 }[d[d.length - 1] as 's' | 'm' | 'h'];
  return Number(d.slice(0, -1)) * unit;
}

function bool(v: unknown, f: string): boolean {
  if (typeof v !== 'boolean') expected(f, 'true or false', v);
  return v;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$/;
const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** 65536, "64KiB", "1GiB", "50 GB" → bytes */
export function parseByteSize(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = SIZE.exec(v.trim());
  return m ? Math.round(Number(m[1]) * SIZE_UNITS[m[2] ?? 'B']!) : undefined;
}

function byteSize(v: unknown, f: string, min: number, max: number): number {
  const n = parseByteSize(v);
  if (n === undefined) expected(f, 'a size like 65536, 64KiB or 1GiB', v);
  if (n < min || n > max) fail(f, `${n} bytes is outside ${min}..${max}`);
  return n;
}

function duration(v: unknown, f: string): string {
  if (typeof v !== 'string' || !DURATION.test(v)) expected(f, 'a duration like 30s, 5m or 1h', v);
  return v;
}

function unique(items: { name: string }[], f: string): void {
  const seen = new Map<string, number>();
  items.forEach((it, i) => {
    const j = seen.get(it.name);
    if (j !== undefined) fail(`${f}[${i}].name`, `duplicate name "${it.name}" (also used by ${f}[${j}])`);
    seen.set(it.name, i);
  });
}

// ---------------------------------------------------------------------------
// Mappings with a fixed set of keys

const at = (f: string, k: string) => (f ? `${f}.${k}` : k);

class Fields {
  constructor(
    private readonly o: Record<string, unknown>,
    readonly field: string,
  ) {}

  path(k: string): string {
    return at(this.field, k);
  }

  /** null counts as absent: `password:` with nothing after it is the same as leaving it out */
  has(k: string): boolean {
    return Object.hasOwn(this.o, k) && this.o[k] != null;
  }

  req<T>(k: string, check: Check<T>): T {
    if (!this.has(k)) fail(this.path(k), Object.hasOwn(this.o, k) ? 'is empty, but a value is required' : 'missing required field');
    return check(this.o[k], this.path(k));
  }

  opt<T>(k: string, check: Check<T>): T | undefined;
  opt<T>(k: string, check: Check<T>, dflt: T): T;
  opt<T>(k: string, check: Check<T>, dflt?: T): T | undefined {
    return this.has(k) ? check(this.o[k], this.path(k)) : dflt;
  }

  /** an optional nested mapping; absent reads as empty so its own defaults apply */
  sub(k: string, keys: readonly string[]): Fields {
    return fields(this.has(k) ? this.o[k] : {}, this.path(k), keys);
  }
}

function fields(v: unknown, f: string, keys: readonly string[], what = 'a mapping'): Fields {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) expected(f, what, v);
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) fail(at(f, k), `unknown field (expected one of: ${keys.join(', ')})`);
  }
  return new Fields(v as Record<string, unknown>, f);
}

// ---------------------------------------------------------------------------
// Field path -> text offset

function fieldOffsets(doc: Document): Map<string, number> {
  const offsets = new Map<string, number>();
  const walk = (node: unknown, f: string, underKey: boolean): void => {
    if (isAlias(node)) node = node.resolve(doc);
    if (!isNode(node)) return;
    // a block mapping or sequence starts on the line after its key; the key's line reads better
    const block = (isMap(node) || isSeq(node)) && !node.flow;
    if (node.range && !(underKey && block)) offsets.set(f, node.range[0]);
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue; // non-string keys fail as unknown fields, reported at the parent
        const kf = at(f, String(pair.key.value));
        if (pair.key.range) offsets.set(kf, pair.key.range[0]);
        // an empty value has no useful position of its own; keep the key's
        if (!(isScalar(pair.value) && pair.value.value == null)) walk(pair.value, kf, true);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, `${f}[${i}]`, false));
    }
  };
  walk(doc.contents, '', false);
  return offsets;
}

function parentPath(f: string): string {
  const p = f.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
  return p === f ? '' : p;
}
