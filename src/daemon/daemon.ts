/**
 * interlockd: attach the redirect, listen where it sends agents, and run one
 * protocol session per accepted connection. Stopping leaves the redirect pinned,
 * so agents are refused (never connected directly) until it comes back.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Server, createServer, isIPv4, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { EgressAllowDef, InterlockConfig, PolicyDef, TargetDef } from '../config/types.js';
import { initAnalysis } from '../policy/analysis.js';
import { compileEnforcement, type Enforcement } from './enforcement.js';
import { TargetIndex } from '../config/targets.js';
import { createAudit, type Audit } from '../audit/audit.js';
import { CgroupDirectory, cgroupOfProcess, findCgroup2Mount, isWithin } from '../identity/cgroups.js';
import { WorkloadMatcher } from '../identity/workloads.js';
import { Protocol, formatEndpoint, type AllowEntry } from '../interception/layout.js';
import { Redirect, type Coverage } from '../interception/redirect.js';
import { RefusalReporter } from './refusals.js';
import { StaleSocketWatch, findStaleSockets } from '../interception/stale-sockets.js';
import { CancelKeys, sendUpstreamCancel } from '../protocols/postgres/cancel.js';
import { PostgresSession } from '../protocols/postgres/session.js';
import { admit, type Admission, type AdmissionDeps } from './admission.js';
import { ControlServer, type DaemonStatus, type SessionSummary } from './control.js';
import { RecordingStore } from '../recording/store.js';
import { SshRuleSet } from '../policy/ssh-rules.js';
import { loadHostKey, type HostKey } from '../protocols/ssh/host-key.js';
import { SshSession } from '../protocols/ssh/session.js';
import { LazyRecording, NOT_RECORDED } from '../recording/recorder.js';
import { NodeCa } from '../tls/node-ca.js';
import { KubeProxy, type KubeConnection } from '../protocols/kubernetes/proxy.js';
import { KubeRuleSet } from '../policy/kube-rules.js';
import { KubeResponseMasker } from '../protocols/kubernetes/masking.js';
import type { KubernetesTargetDef } from '../config/types.js';
import { ApprovalError, ApprovalService, type Approver, type HoldContext, type Ticket } from '../approvals/service.js';
import { ApprovalStore } from '../approvals/store.js';
import { Webhooks } from '../approvals/webhooks.js';
import { IdTokenVerifier, WorkloadGroups } from '../identity/oidc.js';
import { readSecret } from '../config/targets.js';
import { durationMs } from '../config/load.js';
import { LIMIT_FIELDS } from '../config/limits.js';
import type { Decision } from '../policy/rules.js';

/** The loopback address the BPF program rewrites connections to (bpf/interlock.bpf.c). */
export const PROXY_HOST = '127.0.0.1';

interface LiveSession {
  summary: SessionSummary;
  session: { shutdown(reason: string): void };
}

/** how often the slice is checked for sockets older than their process's membership */
const STALE_SOCKET_CHECK_MS = 5_000;

export class Daemon {
  private audit!: Audit;
  private readonly sessions = new Map<string, LiveSession>();
  private readonly cancelKeys = new CancelKeys();
  private readonly enforcement = new Map<string, Enforcement>();
  private readonly sshJudges = new Map<string, SshRuleSet>();
  private hostKey!: HostKey;
  private kube?: KubeProxy;
  private readonly kubeEnforcement = new Map<string, { judge: KubeRuleSet; masker: KubeResponseMasker }>();
  /** keys the `hash` masking strategy: equal values hash alike within a daemon's lifetime */
  private readonly maskingKey = randomBytes(32);
  private readonly servers: Server[] = [];
  private redirect?: Redirect;
  private refusals?: RefusalReporter;
  private recordings?: RecordingStore;
  private approvals?: ApprovalService;
  private approverTokens?: IdTokenVerifier;
  /** per workload with an IdP client: its groups from client-credentials tokens */
  private readonly idpGroups = new Map<string, WorkloadGroups>();
  private readonly timers: NodeJS.Timeout[] = [];
  private control?: ControlServer;
  private admission!: AdmissionDeps;
  private cgroupPath = '';
  private readonly startedAt = new Date();
  private stopping = false;

  constructor(private readonly config: InterlockConfig, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { config } = this;
    if (process.getuid?.() !== 0) throw new Error('interlock run needs root (BPF attach, cgroup management); see `interlock doctor`');
    const mount = findCgroup2Mount();
    if (!mount) throw new Error('no cgroup2 hierarchy is mounted (interlock needs cgroup v2); see `interlock doctor`');
    const own = cgroupOfProcess();
    if (own !== undefined && isWithin(own, config.agents.cgroup)) {
      throw new Error(`interlock itself runs in ${own}, inside the agents' cgroup ${config.agents.cgroup}: its upstream connections would be redirected to itself. Run it outside (systemd: its own unit, not in agents.slice)`);
    }
    this.audit = createAudit(config.audit.file);
    if (config.recording.enabled) {
      this.recordings = RecordingStore.open(config.recording, (session, why) => this.audit.event('recording.failed', { session, why }));
      this.recordings.startRetention((removed) => this.audit.event('recording.retention', { removed }));
    }
    if (config.approvals) {
      const a = config.approvals;
      this.approvals = new ApprovalService(new ApprovalStore(a.store), {
        audit: (event, fields) => this.audit.event(event, fields),
        webhooks: new Webhooks(a.webhooks, (url, why) => this.audit.event('approval.notify-failed', { url, why })),
        link: a.link,
      });
      this.approverTokens = new IdTokenVerifier({
        issuer: a.oidc.issuer, audience: a.oidc.clientId, groupsClaim: a.oidc.groupsClaim,
        workloadClientIds: config.workloads.flatMap((w) => (w as { oidc?: { clientId: string } }).oidc?.clientId ?? []),
      });
    }
    await initAnalysis();
    this.hostKey = loadHostKey(config.ssh.hostKey, { create: true });
    this.cgroupPath = join(mount, config.agents.cgroup);
    mkdirSync(this.cgroupPath, { recursive: true });

    for (const w of config.workloads) {
      if (!w.oidc) continue;
      const o = w.oidc;
      const groups = new WorkloadGroups({
        issuer: o.issuer, clientId: o.clientId, clientSecret: readSecret(o.clientSecret) ?? '', groupsClaim: o.groupsClaim, rolesClaim: o.rolesClaim,
        scope: o.scope, resource: o.resource,
        onFailure: (why) => this.audit.event('workload.groups-dropped', { workload: w.name, issuer: o.issuer, why }),
      });
      this.idpGroups.set(w.name, groups);
      // keeps the token renewed ahead of expiry; groups() asks the IdP only when a renewal is due
      this.timers.push(setInterval(() => void groups.groups().catch(() => []), 1000).unref());
      // the first token before the first connection; a failure here already fails closed (no IdP groups)
      await Promise.race([groups.groups().catch(() => []), new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
    this.admission = {
      targets: new TargetIndex(config.targets),
      policies: config.policies,
      cgroups: new CgroupDirectory(mount, config.agents.cgroup),
      workloads: new WorkloadMatcher(config.workloads),
      idpGroups: (workload) => {
        const g = this.idpGroups.get(workload);
        if (!g) return [];
        void g.groups().catch(() => []); // renews in the background when due; admission never waits on the IdP
        return g.cached();
      },
    };

    // listen before redirecting, so the first redirected connection finds us
    await this.listen(config.proxy.ports.postgres, (s) => this.onConnection(s, 'postgres'));
    await this.listen(config.proxy.ports.ssh, (s) => this.onConnection(s, 'ssh'));
    const ca = NodeCa.load(config.tls.caCert, config.tls.caKey, { create: true });
    const kubeTargets = config.targets.filter((t): t is KubernetesTargetDef => t.protocol === 'kubernetes');
    this.kube = new KubeProxy(ca, kubeTargets, (socket) => this.admitKube(socket), (e) => this.log.error({ err: e }, 'could not start a kubernetes session'), config.limits);
    await this.kube.listen(PROXY_HOST, config.proxy.ports.kubernetes).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`cannot listen on ${PROXY_HOST}:${config.proxy.ports.kubernetes}: ${e.code === 'EADDRINUSE' ? 'the port is in use (another interlock?)' : e.message}`);
    });
    this.redirect = Redirect.attach(this.cgroupPath, config.bpf.pinDir);
    const proxyPort = (p: TargetDef['protocol']) => config.proxy.ports[p];
    this.redirect.syncTargets(config.targets.map((t) => ({ ip: t.address.host, port: t.address.port, proxyPort: proxyPort(t.protocol), protocol: Protocol[t.protocol] })));
    this.redirect.syncPorts([
      ...config.intercept.ports.postgres.map((port) => ({ port, proxyPort: config.proxy.ports.postgres, protocol: Protocol.postgres })),
      ...config.intercept.ports.ssh.map((port) => ({ port, proxyPort: config.proxy.ports.ssh, protocol: Protocol.ssh })),
      ...config.intercept.ports.kubernetes.map((port) => ({ port, proxyPort: config.proxy.ports.kubernetes, protocol: Protocol.kubernetes })),
    ]);
    this.redirect.syncEgress(config.agents.egress === 'lockdown', config.agents.allow.map(allowEntry));
    this.redirect.syncUnixDeny(config.agents.denyUnixSockets);
    const coverage = this.redirect.coverage;
    if (!coverage.unixByBoundName) this.log.warn({ why: coverage.missing }, 'unix sockets to databases are refused only by the path dialed, if at all: start agents with InaccessiblePaths= (see deploy/systemd)');
    const refusals = new RefusalReporter(this.redirect, (cgroupId, pid, uid) => {
      const cgroup = this.admission.cgroups.pathOf(cgroupId, pid);
      return { workload: this.admission.workloads.identify(cgroup, uid).workload, cgroup };
    }, (event, fields) => this.audit.event(event, fields));
    this.refusals = refusals;
    this.timers.push(setInterval(() => {
      try {
        refusals.drain();
      } catch (e) {
        this.log.error({ err: e }, 'reading refused attempts failed');
      }
    }, 200).unref());
    // a process that joined the slice holding a socket opened outside it is not redirected:
    // said in the trail as soon as it is seen (and by `interlock status`)
    const staleWatch = new StaleSocketWatch();
    let checking = false;
    this.timers.push(setInterval(() => {
      if (checking) return;
      checking = true;
      void findStaleSockets(config.agents.cgroup).then((now) => {
        checking = false;
        for (const x of staleWatch.fresh(now ?? [])) {
          this.audit.event('egress.bypass', {
            pid: x.pid, comm: x.comm, cgroup: x.processCgroup, workload: this.admission.workloads.identify(x.processCgroup, uidOf(x.pid)).workload,
            socketCgroup: x.socketCgroup, protocol: x.netid, local: x.local, peer: x.peer,
          });
        }
      });
    }, STALE_SOCKET_CHECK_MS).unref());
    this.control = new ControlServer(config.control.socket, () => this.status(), this.approvalHandlers());
    await this.control.listen();
    this.audit.event('redirect.attached', {
      cgroup: config.agents.cgroup, targets: config.targets.map((t) => t.name), egress: config.agents.egress,
      unixSockets: unixCoverage(coverage), packetSockets: coverage.packetSockets ? 'refused' : 'not refused',
      ...(coverage.missing.length ? { missing: coverage.missing } : {}),
    });
    this.log.info({ cgroup: config.agents.cgroup, pinDir: config.bpf.pinDir, postgres: `${PROXY_HOST}:${config.proxy.ports.postgres}`, ssh: `${PROXY_HOST}:${config.proxy.ports.ssh}` }, 'interlock ready');
  }

  private listen(port: number, onConnection: (s: Socket) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer({ noDelay: true }, onConnection);
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new Error(`cannot listen on ${PROXY_HOST}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use (another interlock?)' : e.message}`)),
      );
      server.listen({ host: PROXY_HOST, port, backlog: 1024 }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.log.error({ err: e }, 'listener error'));
        resolve();
      });
      this.servers.push(server);
    });
  }

  private onConnection(client: Socket, protocol: TargetDef['protocol']): void {
    if (this.stopping) return void client.destroy();
    client.on('error', () => {}); // the session installs its own; never let an early reset crash us
    try {
      if (protocol === 'ssh') this.startSshSession(client);
      else this.startPostgresSession(client);
    } catch (e) {
      // whatever went wrong concerns this connection only: drop it, keep serving
      this.log.error({ err: e }, 'could not start a session');
      client.destroy();
    }
  }

  /** Admission, with the target's protocol checked against the proxy port the flow came in on. */
  private admitFor(client: Socket, protocol: TargetDef['protocol']): Admission {
    const a = admit(this.takeFlow(client), this.admission);
    if (a.target && a.target.protocol !== protocol && !a.refusal) {
      return { ...a, policies: [], refusal: { code: '08004', message: `interlock: target ${a.target.name} speaks ${a.target.protocol}, not ${protocol}` } };
    }
    // one agent opening connections without end must not take every upstream slot from the others
    const workload = a.identity?.workload;
    const max = this.config.limits.maxSessionsPerWorkload;
    if (workload && !a.refusal && this.sessionsOf(workload) >= max) {
      this.audit.with(whoFields(undefined, a)).event('limit.exceeded', { limit: LIMIT_FIELDS.maxSessionsPerWorkload, max });
      return { ...a, policies: [], refusal: { code: '53300', message: `interlock: workload ${workload} has ${max} sessions open, the most ${LIMIT_FIELDS.maxSessionsPerWorkload} allows` } };
    }
    return a;
  }

  private sessionsOf(workload: string): number {
    let n = 0;
    for (const { summary } of this.sessions.values()) if (summary.workload === workload) n++;
    return n;
  }

  private startSshSession(client: Socket): void {
    const a = this.admitFor(client, 'ssh');
    const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const audit = this.audit.with(whoFields(id, a));
    const summary: SessionSummary = {
      id, protocol: 'ssh', workload: a.identity?.workload, target: a.target?.name, pid: a.origin?.pid,
      comm: a.origin?.comm, since: new Date().toISOString(), queries: 0,
    };
    const target = a.target?.protocol === 'ssh' ? a.target : undefined;
    const session = new SshSession({
      socket: client,
      hostKey: this.hostKey,
      target,
      refusal: a.refusal?.message,
      judge: a.refusal ? undefined : this.sshJudgeFor(a.policies),
      loginTimeoutMs: this.config.proxy.loginTimeoutMs,
      limits: this.config.limits,
      hooks: {
        audit: (event, fields) => {
          if (event === 'command') summary.queries++;
          audit.event(event, fields);
        },
        startRecording: (login) => this.beginRecording(id, 'ssh', a, login),
        requestApproval: (command, d) => this.askApproval({ session: id, workload: a.identity!.workload, target: a.target!.name, protocol: 'ssh' }, command, d),
        closed: () => this.sessions.delete(id),
      },
    });
    this.sessions.set(id, { summary, session });
  }

  /** A Kubernetes connection, before its TLS handshake: who it is, and what it may do. */
  private admitKube(socket: Socket): KubeConnection {
    if (this.stopping) throw new Error('stopping');
    socket.on('error', () => {});
    const a = this.admitFor(socket, 'kubernetes');
    const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const audit = this.audit.with(whoFields(id, a));
    const target = a.target?.protocol === 'kubernetes' ? a.target : undefined;
    const summary: SessionSummary = {
      id, protocol: 'kubernetes', workload: a.identity?.workload, target: a.target?.name, pid: a.origin?.pid,
      comm: a.origin?.comm, since: new Date().toISOString(), queries: 0,
    };
    const enforcement = a.refusal ? undefined : this.kubeEnforcementFor(a.policies);
    if (a.refusal) audit.event('connect.refused', { reason: a.refusal.message });
    const recording = new LazyRecording(() => this.beginRecording(id, 'kubernetes', a, {}));
    const conn: KubeConnection = {
      target, refusal: a.refusal?.message, judge: enforcement?.judge, masker: enforcement?.masker, recording, requests: 0,
      requestApproval: (command, d) => this.askApproval({ session: id, workload: a.identity!.workload, target: a.target!.name, protocol: 'kubernetes' }, command, d),
      audit: (event, fields) => {
        if (event === 'command') summary.queries++;
        audit.event(event, fields);
      },
      closed: () => {
        this.sessions.delete(id);
        if (conn.requests > 0) {
          audit.event('session.end', { reason: 'connection closed', requests: conn.requests });
          recording.end({ reason: 'connection closed', bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten, commands: conn.requests, rows: 0 });
        }
      },
    };
    if (!a.refusal) audit.event('session.start', {});
    this.sessions.set(id, { summary, session: { shutdown: () => socket.destroy() } });
    return conn;
  }

  private kubeEnforcementFor(policies: PolicyDef[]) {
    const key = policies.map((p) => p.name).join('\n');
    let e = this.kubeEnforcement.get(key);
    if (!e) {
      e = { judge: new KubeRuleSet(policies), masker: new KubeResponseMasker({ detectors: policies.flatMap((p) => p.masking), hashKey: this.maskingKey }) };
      this.kubeEnforcement.set(key, e);
    }
    return e;
  }

  private sshJudgeFor(policies: PolicyDef[]): SshRuleSet {
    const key = policies.map((p) => p.name).join('\n');
    let j = this.sshJudges.get(key);
    if (!j) this.sshJudges.set(key, (j = new SshRuleSet(policies)));
    return j;
  }

  private beginRecording(id: string, protocol: 'postgres' | 'ssh' | 'kubernetes', a: Admission, login: Record<string, unknown>) {
    if (!this.recordings) return NOT_RECORDED;
    const o = a.origin;
    return this.recordings.begin({
      session: id, protocol, workload: a.identity?.workload, groups: a.identity?.groups, target: a.target?.name,
      pid: o?.pid, uid: o?.uid, comm: o?.comm, ...processDetails(o?.pid), cgroup: a.identity?.cgroup,
      dst: o ? formatEndpoint(o.dstIp, o.dstPort) : undefined, login,
    });
  }

  private startPostgresSession(client: Socket): void {
    const a = this.admitFor(client, 'postgres');
    const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const audit = this.audit.with(whoFields(id, a));
    const summary: SessionSummary = {
      id, protocol: 'postgres', workload: a.identity?.workload, target: a.target?.name, pid: a.origin?.pid,
      comm: a.origin?.comm, since: new Date().toISOString(), queries: 0,
    };
    const session: PostgresSession = new PostgresSession({
      client,
      target: a.target?.protocol === 'postgres' ? a.target : undefined,
      refusal: a.refusal,
      ...(a.refusal ? {} : this.enforcementFor(a.policies)),
      loginTimeoutMs: this.config.proxy.loginTimeoutMs,
      limits: this.config.limits,
      hooks: {
        audit: (event, fields) => {
          if (event === 'query') summary.queries++;
          audit.event(event, fields);
        },
        auditSerialized: (event, members) => {
          summary.queries++;
          audit.serialized(event, members);
        },
        startRecording: (login) => this.beginRecording(id, 'postgres', a, login),
        requestApproval: (command, d) => this.askApproval({ session: id, workload: a.identity!.workload, target: a.target!.name, protocol: 'postgres' }, command, d),
        cancel: (pid, secret) => this.onCancel(pid, secret, a),
        registerCancelKey: (upstreamPid, upstreamSecret) =>
          this.cancelKeys.issue({ sessionId: id, workload: a.identity!.workload, target: a.target!, upstreamPid, upstreamSecret }),
        closed: () => {
          this.sessions.delete(id);
          this.cancelKeys.forget(id);
        },
      },
    });
    this.sessions.set(id, { summary, session });
  }

  /** Holds a command for approval in a session, or says an earlier approval's window covers it. */
  private askApproval(ctx: HoldContext, command: string, d: Decision): { granted: true } | { ticket: Ticket } | undefined {
    if (!this.approvals) return undefined;
    if (this.approvals.granted(ctx.workload, ctx.target, command)) return { granted: true };
    return { ticket: this.approvals.request(ctx, command, d.approvers ?? [], d.rule, d.timeout ? durationMs(d.timeout) : undefined) };
  }

  /** The control socket's approval operations: each needs a human's ID token, checked here. */
  private approvalHandlers() {
    const who = async (req: Record<string, unknown>): Promise<Approver> => {
      if (!this.approvals || !this.approverTokens) throw new ApprovalError('approvals are not configured (no approvals.oidc in the config)');
      if (typeof req.token !== 'string' || !req.token) throw new ApprovalError('an OIDC ID token is required');
      const h = await this.approverTokens.verify(req.token);
      return { subject: h.subject, name: h.email ?? h.name ?? h.subject, groups: h.groups };
    };
    const id = (req: Record<string, unknown>) => {
      if (typeof req.id !== 'string') throw new ApprovalError('which request? (an id like apr-…)');
      return req.id;
    };
    return {
      'approvals.list': async (req: Record<string, unknown>) => {
        await who(req);
        return { requests: this.approvals!.list({ all: req.all === true }) };
      },
      'approvals.show': async (req: Record<string, unknown>) => {
        await who(req);
        const r = this.approvals!.get(id(req));
        if (!r) throw new ApprovalError(`no approval request ${String(req.id)}`);
        return { request: r };
      },
      'approvals.approve': async (req: Record<string, unknown>) => {
        const approver = await who(req);
        const windowMs = typeof req.window === 'string' ? durationMs(req.window) : undefined;
        return { request: this.approvals!.approve(id(req), approver, windowMs) };
      },
      'approvals.reject': async (req: Record<string, unknown>) => {
        const approver = await who(req);
        if (typeof req.reason !== 'string' || !req.reason.trim()) throw new ApprovalError('a rejection needs --reason');
        return { request: this.approvals!.reject(id(req), approver, req.reason) };
      },
    };
  }

  /** Compiled rules and masking per set of policies, shared by every session they govern (with the verdict cache). */
  private enforcementFor(policies: PolicyDef[]): Enforcement {
    const key = policies.map((p) => p.name).join('\n');
    let e = this.enforcement.get(key);
    if (!e) {
      e = compileEnforcement(policies, this.maskingKey);
      this.enforcement.set(key, e);
    }
    return e;
  }

  /** The BPF record for this client; consumed, so each flow is attributed once. */
  private takeFlow(client: Socket) {
    const ip = client.remoteAddress, port = client.remotePort;
    if (!ip || !port || !this.redirect) return null;
    try {
      return this.redirect.takeFlow(ip, port);
    } catch (e) {
      this.log.error({ err: e }, 'flow lookup failed');
      return null;
    }
  }

  private onCancel(pid: number, secret: number, a: Admission): void {
    const entry = a.identity ? this.cancelKeys.find(pid, secret, a.identity.workload) : undefined;
    this.audit.with(whoFields(undefined, a)).event('cancel', { cancelled: entry?.sessionId, honoured: entry !== undefined });
    if (entry) void sendUpstreamCancel(entry);
  }

  status(): DaemonStatus {
    return {
      pid: process.pid,
      since: this.startedAt.toISOString(),
      cgroup: this.config.agents.cgroup,
      pinDir: this.config.bpf.pinDir,
      links: this.redirect ? Redirect.links(this.config.bpf.pinDir).length : 0,
      egress: this.config.agents.egress,
      unixSockets: this.redirect ? unixCoverage(this.redirect.coverage) : 'not refused',
      packetSockets: this.redirect?.coverage.packetSockets ? 'refused' : 'not refused',
      missing: this.redirect?.coverage.missing ?? [],
      targets: this.config.targets.map((t) => ({ name: t.name, protocol: t.protocol, address: `${t.address.host}:${t.address.port}` })),
      sessions: [...this.sessions.values()].map((s) => s.summary),
      memory: process.memoryUsage(),
    };
  }

  /** Stop accepting, end sessions with a proper error, keep the redirect pinned. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const s of this.servers) s.close();
    for (const t of this.timers) clearInterval(t);
    try {
      this.refusals?.drain(); // what was refused up to now still reaches the audit trail
    } catch {
      // the ring buffer is gone with the pins: nothing left to report
    }
    this.redirect?.close();
    this.kube?.close();
    for (const { session } of this.sessions.values()) session.shutdown('interlock is shutting down');
    const deadline = Date.now() + graceMs;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await this.control?.close();
    await this.recordings?.close();
    this.audit?.event('daemon.stop', { sessionsLeft: this.sessions.size });
    this.audit?.flush();
  }
}

/** The agent process's command line and executable, while it is still there to ask. */
function processDetails(pid: number | undefined): { cmdline?: string[]; exe?: string } {
  if (!pid) return {};
  const out: { cmdline?: string[]; exe?: string } = {};
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    out.cmdline = raw.split('\0').slice(0, raw.endsWith('\0') ? -1 : undefined);
  } catch {
    // the process is gone: its pid and comm from the redirect are all there is
  }
  try {
    out.exe = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    // same
  }
  return out;
}

function whoFields(session: string | undefined, a: Admission): Record<string, unknown> {
  const o = a.origin;
  return {
    session,
    workload: a.identity?.workload,
    groups: a.identity?.groups,
    target: a.target?.name,
    dst: o ? formatEndpoint(o.dstIp, o.dstPort) : undefined,
    pid: o?.pid,
    uid: o?.uid,
    comm: o?.comm,
    cgroup: a.identity?.cgroup,
  };
}

/** A config allow-list entry as the BPF trie stores it: IPv4 mapped into ::ffff:0:0/96. */
function allowEntry(a: EgressAllowDef): AllowEntry {
  const v4 = isIPv4(a.ip);
  return { ip: a.ip, prefix: v4 ? 96 + a.prefix : a.prefix, port: a.port, protocol: a.protocol === 'tcp' ? 6 : a.protocol === 'udp' ? 17 : 0 };
}

function unixCoverage(c: Coverage): string {
  return c.unixByBoundName ? 'refused by the name the server bound' : c.unixByDialedPath ? 'refused by the path dialed' : 'not refused';
}

/** The real uid of a process (-1 once it is gone): workloads may match on it. */
function uidOf(pid: number): number {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}
