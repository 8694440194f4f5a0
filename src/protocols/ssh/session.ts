/**
 * One agent's SSH connection through the proxy.
 *
 *   agent side   ssh2 server with the node's host key; the agent is who its cgroup says,
 *                so any authentication method is accepted (an offered key is logged by
 *                fingerprint, a password never stored) once the user name is allowed
 *   upstream     ssh2 client with the vaulted key, the host key checked against the pin
 *   channels     every exec / shell / subsystem / forwarding request decided by policy;
 *                allowed ones get an upstream channel of the same kind, bytes relayed
 *                both ways with exit status, signals, window changes and EOF
 *
 * Nothing an agent sends can throw out of here: failures end a channel or this session.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, ClientChannel, Connection, ServerChannel, Session } from 'ssh2';
import type { LimitsConfig, SshTargetDef } from '../../config/types.js';
import { DEFAULT_LIMITS, LIMIT_FIELDS } from '../../config/limits.js';
import { readSecret } from '../../config/targets.js';
import type { Decision } from '../../policy/rules.js';
import { NOT_RECORDED, type SessionRecording } from '../../recording/recorder.js';
import { envValueProblem, terminalNameProblem } from '../../policy/agent-values.js';
import { globToRegExp } from '../../util/glob.js';
import type { HostKey } from './host-key.js';
import { checkHostKey, parseKnownHosts } from './known-hosts.js';
import { SftpInspector, type PathAccess } from './sftp.js';
import type { Ticket } from '../../approvals/service.js';

/** What the session asks of policy. */
export interface SshJudge {
  decideExec(command: string): { decision: Decision; refused?: { part: string; decision: Decision } };
  decideChannel(kind: 'shell' | 'sftp' | 'port-forward' | 'remote-forward' | 'agent-forward' | 'x11'): Decision;
  decidePath(access: PathAccess, path: string): Decision;
}

export type SshAuditEvent = 'session.start' | 'session.end' | 'connect.refused' | 'command' | 'file' | 'limit.exceeded';

export interface SshSessionHooks {
  audit(event: SshAuditEvent, fields: Record<string, unknown>): void;
  startRecording(login: Record<string, unknown>): SessionRecording;
  /** an `approve` decision: granted by an earlier window, a ticket to wait on, or undefined (refused) */
  requestApproval?(command: string, decision: Decision): { granted: true } | { ticket: Ticket } | undefined;
  closed(): void;
}

export interface SshSessionOptions {
  socket: Socket;
  hostKey: HostKey;
  target?: SshTargetDef;
  /** set: every login is refused with this (unknown target, no policy) */
  refusal?: string;
  judge?: SshJudge;
  hooks: SshSessionHooks;
  /** from connect to an authenticated agent, at most (default 30 s): handshake included */
  loginTimeoutMs?: number;
  /** command size, upstream connect timeout (default DEFAULT_LIMITS) */
  limits?: LimitsConfig;
}

/** env requests: what one channel may set (names and values are echoed into the upstream's environment) */
const MAX_ENV_NAME_BYTES = 256;
const MAX_ENV_VALUE_BYTES = 4096;
const MAX_ENV_VARS = 64;
/** subsystem names are short ("sftp"); a long one is refused without echoing it whole into the audit trail */
const MAX_SUBSYSTEM_NAME_BYTES = 64;
/** how much of an over-long command or name the audit trail keeps */
const AUDIT_PREFIX_CHARS = 200;

type Pty = { term: string; cols: number; rows: number; width: number; height: number; modes?: Record<string, number> };

interface ChannelState {
  no: number;
  pty?: Pty;
  env: Record<string, string>;
  upstream?: ClientChannel;
}

/**
 * AES-GCM runs in OpenSSL (node:crypto) on both legs. OpenSSH clients pick the first of
 * their own list the server offers, and would pick chacha20-poly1305 (or AES-CTR with a
 * separate MAC) if offered: offering only GCM toward agents keeps bulk transfers fast.
 */
const AGENT_CIPHERS: ssh2.CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];
const UPSTREAM_CIPHERS: ssh2.CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes256-ctr'];

export class SshSession {
  private client?: Connection;
  private upstream?: ssh2.Client;
  private upstreamReady?: Promise<ssh2.Client>;
  /** the channels relaying now, so a recording that falls behind can hold them all */
  private readonly relays = new Set<{ agent: ServerChannel; up: ClientChannel }>();
  private recordingHeld = false;
  private rec: SessionRecording = NOT_RECORDED;
  private user = '';
  /** the key the agent offered, if it did: noted for the record, never used */
  private offeredKey?: string;
  private channels = 0;
  private commands = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private started = false;
  private ended = false;
  private endReason = 'agent closed';
  private readonly envAllowed: RegExp[];
  /** commands waiting for approval: closed as expired when the session ends */
  private readonly holds = new Set<Ticket>();
  private readonly limits: LimitsConfig;
  /** the handshake and the agent's authentication must be done by then */
  private loginDeadline?: NodeJS.Timeout;

  constructor(private readonly opts: SshSessionOptions) {
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.envAllowed = (opts.target?.upstream.env ?? []).map((g) => globToRegExp(g, ''));
    const banner = opts.refusal ? `interlock: ${opts.refusal}\n` : undefined;
    const server = new ssh2.Server({ hostKeys: [opts.hostKey.privateKey], ident: 'interlock', banner, algorithms: { cipher: AGENT_CIPHERS } }, (client) => this.onClient(client));
    server.on('error', () => {}); // per-connection errors arrive on the client object
    opts.socket.setNoDelay(true);
    // a deadline, not an idle timeout: an agent trickling its handshake a byte at a time is cut all the same
    const loginMs = opts.loginTimeoutMs ?? 30_000;
    this.loginDeadline = setTimeout(() => {
      this.loginDeadline = undefined;
      if (this.started || this.ended) return;
      const reason = `handshake and login took longer than ${loginMs / 1000} s (proxy.loginTimeout)`;
      this.refused({ reason });
      this.close(reason);
      opts.socket.destroy(); // nothing more to say to a peer that never finished its handshake
    }, loginMs);
    opts.socket.on('close', () => this.close(this.endReason));
    opts.socket.on('error', (e) => this.close(`agent connection error: ${e.message}`));
    server.injectSocket(opts.socket);
  }

  /** End the session from outside (daemon stopping). */
  shutdown(reason: string): void {
    this.close(reason);
  }

  private onClient(client: Connection): void {
    this.client = client;
    client.on('error', (e) => this.close(`agent connection error: ${e.message}`));
    client.on('authentication', (ctx) => this.guard(() => this.onAuthentication(ctx)));
    client.on('ready', () => this.guard(() => this.onReady()));
    client.on('session', (accept) => this.guard(() => this.onSessionChannel(accept())));
    client.on('tcpip', (accept, reject, info) => this.guard(() => this.onDirectTcpip(accept, reject, info)));
    client.on('request', (accept, reject, name) => this.guard(() => this.onGlobalRequest(accept, reject, name)));
    client.on('close', () => this.close(this.endReason));
  }

  private onAuthentication(ctx: AuthContext): void {
    const { target, refusal, judge, hooks } = this.opts;
    if (!target || refusal || !judge) {
      if (!this.started) this.refused({ reason: refusal ?? 'no policy', clientUser: ctx.username });
      return ctx.reject([]);
    }
    if (!target.upstream.agentUsers.includes(ctx.username)) {
      this.refused({ reason: `user "${ctx.username}" is not one agents may ask for on ${target.name}`, clientUser: ctx.username, allowed: target.upstream.agentUsers });
      return ctx.reject([]);
    }
    // identity is the cgroup's: whatever the agent offers is noted, never checked, never forwarded
    if (ctx.method === 'publickey') this.offeredKey = `${ctx.key.algo} ${fingerprint(ctx.key.data)}`;
    this.user = ctx.username;
    ctx.accept();
  }

  private onReady(): void {
    const target = this.opts.target!;
    this.started = true;
    clearTimeout(this.loginDeadline);
    this.loginDeadline = undefined;
    const login = { clientUser: this.user, upstreamUser: target.upstream.user, ...(this.offeredKey ? { offeredKey: this.offeredKey } : {}) };
    this.opts.hooks.audit('session.start', login);
    this.rec = this.opts.hooks.startRecording(login);
    this.rec.onPressure = (p, why) => {
      if (p === 'end') return this.close(`recording: ${why}`);
      // 'block': every channel stops reading until the disk catches up; SSH's own windows
      // then hold both ends back
      this.recordingHeld = p === 'block';
      for (const c of this.relays) {
        if (this.recordingHeld) {
          c.agent.pause();
          c.up.pause();
          c.up.stderr.pause();
        } else {
          c.agent.resume();
          c.up.resume();
          c.up.stderr.resume();
        }
      }
    };
    // no channel runs before the recording's start is on disk: nothing happens unrecorded
    const recorded = new Promise<void>((resolve) => (this.rec.whenStarted ? this.rec.whenStarted(resolve) : resolve()));
    this.upstreamReady = Promise.all([this.connectUpstream(), recorded]).then(([upstream]) => upstream);
    this.upstreamReady.catch(() => {}); // reported on each channel that needs it
  }

  private connectUpstream(): Promise<ssh2.Client> {
    const target = this.opts.target!;
    const up = target.upstream;
    return new Promise((resolve, reject) => {
      let privateKey: string | undefined, password: string | undefined, pins;
      try {
        privateKey = up.privateKey ? readSecret(up.privateKey) : undefined;
        password = up.password ? readSecret(up.password) : undefined;
        pins = parseKnownHosts(readFileSync(up.knownHosts.file, 'utf8'));
      } catch (e) {
        return reject(new Error(`cannot log in to ${target.name}: ${(e as Error).message}`));
      }
      let hostKeyProblem: string | undefined;
      const conn = new ssh2.Client();
      this.upstream = conn;
      let ready = false;
      conn.on('ready', () => {
        ready = true;
        resolve(conn);
      });
      conn.on('error', (e) => {
        if (ready) return this.close(`upstream ${target.name}: ${e.message}`); // e.g. keepalive unanswered
        const why = hostKeyProblem ?? e.message;
        this.refused({ reason: `upstream ${target.name}: ${why}`, hostKey: hostKeyProblem !== undefined });
        reject(new Error(`could not reach ${target.name} (${up.host}:${up.port}): ${why}`));
      });
      conn.on('close', () => {
        if (this.started) this.close('upstream closed');
      });
      conn.connect({
        host: up.host, port: up.port, username: up.user, privateKey, password, algorithms: { cipher: UPSTREAM_CIPHERS },
        // covers TCP connect, handshake and login: a silent upstream fails the channel that waits for it
        readyTimeout: this.limits.upstreamConnectTimeoutMs,
        // an upstream host that vanished mid-session is noticed, and the session ends
        keepaliveInterval: 30_000,
        hostVerifier: (key: Buffer) => {
          const check = checkHostKey(pins, up.host, up.port, key);
          if (!check.ok) hostKeyProblem = check.reason;
          return check.ok;
        },
      });
    });
  }

  // --- session channels ------------------------------------------------------------

  private onSessionChannel(session: Session): void {
    const state: ChannelState = { no: this.channels++, env: {} };
    session.on('pty', (accept, reject, info) => {
      // the terminal type becomes the remote $TERM: data of a checked shape, never code
      const termProblem = terminalNameProblem(String(info.term));
      if (termProblem) {
        this.opts.hooks.audit('command', { via: 'pty', command: `TERM=${clip(String(info.term))}`, decision: 'deny', message: termProblem });
        return reject?.();
      }
      state.pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height, modes: info.modes as Record<string, number> };
      this.rec.note({ k: 'resize', cols: info.cols, rows: info.rows, ch: state.no });
      accept?.();
    });
    session.on('env', (accept, reject, info) => {
      const key = String(info.key);
      const val = String(info.val);
      if (Buffer.byteLength(key) > MAX_ENV_NAME_BYTES || Buffer.byteLength(val) > MAX_ENV_VALUE_BYTES || Object.keys(state.env).length >= MAX_ENV_VARS) {
        this.opts.hooks.audit('limit.exceeded', { via: 'env', name: clip(key), bytes: Buffer.byteLength(val), max: MAX_ENV_VALUE_BYTES, maxVars: MAX_ENV_VARS });
        return reject?.();
      }
      const valueProblem = this.envAllowed.some((r) => r.test(info.key)) ? envValueProblem(key, val) : undefined;
      if (valueProblem) {
        this.opts.hooks.audit('command', { via: 'env', command: `${key}=…`, decision: 'deny', message: valueProblem });
        reject?.();
      } else if (this.envAllowed.some((r) => r.test(info.key))) {
        state.env[info.key] = info.val;
        accept?.();
      } else {
        this.opts.hooks.audit('command', { via: 'env', command: `${info.key}=…`, decision: 'deny', message: 'environment variable not on the target\'s allow-list' });
        reject?.();
      }
    });
    session.on('window-change', (accept, _reject, info) => {
      state.upstream?.setWindow(info.rows, info.cols, info.height, info.width);
      this.rec.note({ k: 'resize', cols: info.cols, rows: info.rows, ch: state.no });
      accept?.();
    });
    session.on('signal', (accept, _reject, info) => {
      state.upstream?.signal(info.name);
      accept?.();
    });
    session.on('auth-agent', (_accept, reject) => {
      this.refuseChannel('agent-forward', 'agent forwarding', reject);
    });
    session.on('x11', (_accept, reject) => {
      this.refuseChannel('x11', 'X11 forwarding', reject);
    });
    session.on('exec', (accept, _reject, info) => this.guard(() => this.onExec(state, accept, info.command)));
    session.on('shell', (accept) => this.guard(() => this.onShell(state, accept)));
    session.on('subsystem', (accept, reject, info) => this.guard(() => this.onSubsystem(state, accept, reject, info.name)));
  }

  private onExec(state: ChannelState, accept: () => ServerChannel, command: string): void {
    const bytes = Buffer.byteLength(command);
    const max = this.limits.maxCommandBytes;
    if (bytes > max) {
      // refused before any parsing: the channel ends, the session goes on
      const d: Decision = { action: 'deny', message: `command of ${bytes} bytes is over the limit of ${max} bytes (${LIMIT_FIELDS.maxCommandBytes})` };
      this.opts.hooks.audit('limit.exceeded', { via: 'exec', limit: LIMIT_FIELDS.maxCommandBytes, bytes, max });
      this.decided('exec', clip(command), d);
      return this.refuseWithStatus(accept(), d);
    }
    const verdict = this.opts.judge!.decideExec(command);
    const d = verdict.decision;
    this.decided('exec', command, d);
    const run = (channel: () => ServerChannel) =>
      this.withUpstream(channel, state, (up, done) => up.exec(command, { pty: state.pty ?? false, env: state.env }, done), { kind: 'exec', command });
    if (d.action === 'approve') return this.afterApproval(command, d, run, accept);
    if (d.action !== 'allow') return this.refuseWithStatus(accept(), d);
    run(accept);
  }

  /** The channel waits while a human decides; then it runs, or is refused like any denial. */
  private afterApproval(command: string, d: Decision, run: (channel: () => ServerChannel) => void, accept: () => ServerChannel): void {
    const asked = this.opts.hooks.requestApproval?.(command, d);
    if (!asked) return this.refuseWithStatus(accept(), d);
    if ('granted' in asked) return run(accept);
    // the channel is taken now: an agent that closes its input while it waits (ssh < /dev/null,
    // any script) would otherwise end a request nobody answered; its input waits in the channel
    const agent = accept();
    if (!agent) return;
    this.holds.add(asked.ticket);
    asked.ticket.outcome.then((o) => this.guard(() => {
      this.holds.delete(asked.ticket);
      if (this.ended) return;
      this.rec.note({ k: 'approval', command, outcome: o.state === 'approved' ? 'approved' : o.state === 'rejected' ? 'rejected' : 'timed out', by: o.by, reason: o.reason });
      if (o.approved) return run(() => agent);
      const message = o.state === 'rejected' ? `rejected by ${o.by ?? 'an approver'}: ${o.reason ?? 'no reason given'}` : (o.reason ?? 'approval timed out');
      this.refuseWithStatus(agent, { action: 'deny', message, rule: d.rule });
    }));
  }

  private onShell(state: ChannelState, accept: () => ServerChannel): void {
    const d = this.opts.judge!.decideChannel('shell');
    this.decided('shell', '(interactive shell)', d);
    if (d.action !== 'allow') return this.refuseWithStatus(accept(), d);
    const pty = state.pty;
    this.withUpstream(accept, state, (up, done) =>
      up.shell(pty ? { term: pty.term, cols: pty.cols, rows: pty.rows, width: pty.width, height: pty.height, modes: pty.modes } : false, { env: state.env }, done), { kind: 'shell' });
  }

  private onSubsystem(state: ChannelState, accept: () => ServerChannel, reject: () => void, name: string): void {
    if (name !== 'sftp') {
      const message = Buffer.byteLength(name) > MAX_SUBSYSTEM_NAME_BYTES
        ? `a subsystem name of ${Buffer.byteLength(name)} bytes is over the limit of ${MAX_SUBSYSTEM_NAME_BYTES}`
        : `subsystem "${name}" is not supported through interlock`;
      this.decided('subsystem', clip(name), { action: 'deny', message });
      return reject();
    }
    const d = this.opts.judge!.decideChannel('sftp');
    // path rules may still allow single operations when no rule allows sftp as a whole
    const pathRulesOnly = d.action !== 'allow';
    this.decided('sftp', 'sftp', pathRulesOnly ? { action: 'allow', message: 'sftp: every operation decided by path rules' } : d);
    const inspector = new SftpInspector(
      (access, path, op) => {
        // canonicalising a name reads nothing; the sftp client does it for "." before anything else
        if (op === 'realpath') return { allowed: true };
        const pd = this.opts.judge!.decidePath(access, path);
        return pd.action === 'allow' ? { allowed: true } : { allowed: false, message: `interlock: ${pd.message}` };
      },
      (e) => {
        this.rec.note({ k: 'file', ch: state.no, ...e });
        this.opts.hooks.audit('file', { ...e });
      },
    );
    this.withUpstream(accept, state, (up, done) => up.subsys('sftp', done), { kind: 'sftp' }, inspector);
  }

  /** Opens the upstream side of an allowed channel and relays; reports upstream trouble on the agent's stderr. */
  private withUpstream(
    accept: () => ServerChannel,
    state: ChannelState,
    open: (up: ssh2.Client, done: (err: Error | undefined, ch: ClientChannel) => void) => void,
    what: { kind: string; command?: string },
    sftp?: SftpInspector,
  ): void {
    const agent = accept();
    const fail = (why: string) => {
      agent.stderr.write(`interlock: ${why}\r\n`);
      agent.exit(255);
      agent.end();
    };
    if (!this.upstreamReady) return fail('the session is not ready');
    this.upstreamReady.then(
      (up) => {
        try {
          open(up, (err, ch) => {
            if (err) return fail(`${this.opts.target!.name} refused the ${what.kind} channel: ${err.message}`);
            state.upstream = ch;
            this.rec.note({ k: 'channel', ch: state.no, state: 'open', kind: what.kind, ...(what.command ? { command: what.command } : {}) });
            this.relay(agent, ch, state.no, sftp);
          });
        } catch (e) {
          fail((e as Error).message);
        }
      },
      (e: Error) => fail(e.message),
    );
  }

  /** Bytes both ways with back-pressure; exit status, signals and EOF passed on. */
  private relay(agent: ServerChannel, up: ClientChannel, no: number, sftp?: SftpInspector): void {
    let exit: { code?: number; signal?: string } = {};
    const toUpstream = (d: Buffer) => {
      if (!up.write(d)) agent.pause();
    };
    // sftp is recorded as file events (names, sizes, direction), not as file contents
    const record = !sftp;
    const toAgent = (d: Buffer, stderr = false) => {
      this.bytesOut += d.length;
      if (record) this.rec.output(d);
      if (!(stderr ? agent.stderr.write(d) : agent.write(d))) up.pause();
    };
    agent.on('data', (d: Buffer) => this.guardChannel(agent, () => {
      this.bytesIn += d.length;
      if (record) this.rec.input(d);
      if (!sftp) return toUpstream(d);
      const { toServer, toClient } = sftp.fromClient(d);
      for (const b of toServer) toUpstream(b);
      for (const b of toClient) toAgent(b);
    }));
    // a drained socket resumes its peer, unless the recording holds the session
    up.on('drain', () => this.recordingHeld || agent.resume());
    agent.on('drain', () => this.recordingHeld || up.resume());
    const relay = { agent, up };
    this.relays.add(relay);
    if (this.recordingHeld) {
      agent.pause();
      up.pause();
      up.stderr.pause();
    }
    agent.on('end', () => up.end()); // EOF from the agent: EOF upstream
    agent.on('close', () => up.close());
    agent.on('error', () => up.close());
    up.on('data', (d: Buffer) => this.guardChannel(agent, () => {
      if (!sftp) return toAgent(d);
      for (const b of sftp.fromServer(d)) toAgent(b);
    }));
    up.stderr.on('data', (d: Buffer) => toAgent(d, true));
    up.on('exit', (code: number | null, signal?: string, core?: boolean, desc?: string) => {
      if (typeof code === 'number') {
        exit = { code };
        agent.exit(code);
      } else if (signal) {
        exit = { signal };
        agent.exit(signal.replace(/^SIG/, ''), core ?? false, desc ?? '');
      }
    });
    up.on('close', () => {
      this.relays.delete(relay);
      sftp?.close();
      this.rec.note({ k: 'channel', ch: no, state: 'close', ...(exit.code !== undefined ? { exitCode: exit.code } : {}), ...(exit.signal ? { exitSignal: exit.signal } : {}) });
      agent.end();
    });
  }

  // --- forwarding ------------------------------------------------------------------

  private onDirectTcpip(accept: () => ServerChannel, reject: () => void, info: { destIP: string; destPort: number }): void {
    const d = this.opts.judge!.decideChannel('port-forward');
    this.decided('port-forward', `${info.destIP}:${info.destPort}`, d);
    if (d.action !== 'allow' || !this.upstreamReady) return reject();
    this.upstreamReady.then(
      (up) =>
        up.forwardOut('127.0.0.1', 0, info.destIP, info.destPort, (err, ch) => {
          if (err) return reject();
          const agent = accept();
          this.relay(agent, ch, this.channels++);
        }),
      () => reject(),
    );
  }

  private onGlobalRequest(_accept: (() => void) | undefined, reject: (() => void) | undefined, name: string): void {
    if (name === 'tcpip-forward' || name === 'streamlocal-forward@openssh.com') {
      // remote forwarding would let the target reach into the agent's host: refused, even when a rule allows it (not supported yet)
      const d = this.opts.judge!.decideChannel('remote-forward');
      this.decided('remote-forward', name, d.action === 'allow' ? { action: 'deny', message: 'remote forwarding is not supported through interlock' } : d);
    }
    reject?.();
  }

  private refuseChannel(kind: 'agent-forward' | 'x11', what: string, reject: (() => void) | undefined): void {
    const d = this.opts.judge!.decideChannel(kind);
    this.decided(kind, what, d.action === 'allow' ? { action: 'deny', message: `${what} is not supported through interlock` } : d);
    reject?.();
  }

  // --- decisions -------------------------------------------------------------------

  private decided(via: string, command: string, d: Decision): void {
    this.commands++;
    this.opts.hooks.audit('command', { via, command, decision: d.action, rule: d.rule, message: d.action === 'allow' ? undefined : d.message });
    this.rec.decision(command, via, [via], d.action, d.rule, d.message);
  }

  /** A refused exec or shell: the reason on stderr, exit status 126, the connection stays usable. */
  private refuseWithStatus(agent: ServerChannel, d: Decision): void {
    const text = `interlock: ${d.message}${d.rule ? ` (rule ${d.rule})` : ''}\r\n`;
    this.rec.output(Buffer.from(text));
    agent.stderr.write(text);
    agent.exit(126);
    agent.end();
  }

  // --- endings ---------------------------------------------------------------------

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.close(`interlock internal error: ${(e as Error).message}`);
    }
  }

  /** A channel whose bytes cannot be handled ends alone; the session goes on. */
  private guardChannel(agent: ServerChannel, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      try {
        agent.stderr.write(`interlock: ${(e as Error).message}\r\n`);
        agent.exit(255);
        agent.end();
      } catch {
        // already gone
      }
    }
  }

  private refusalAudited = false;

  private refused(fields: Record<string, unknown>): void {
    this.refusalAudited = true;
    this.opts.hooks.audit('connect.refused', fields);
  }

  private close(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    clearTimeout(this.loginDeadline);
    for (const t of this.holds) t.cancel();
    try {
      this.client?.end();
    } catch {
      // already closed
    }
    this.upstream?.end();
    setTimeout(() => this.opts.socket.destroy(), 2000).unref();
    // a connection that ended before its session began (junk, a dropped handshake) is in the trail too
    if (!this.started && !this.refusalAudited) this.refused({ reason });
    if (this.started) {
      this.opts.hooks.audit('session.end', { reason, bytesIn: this.bytesIn, bytesOut: this.bytesOut, commands: this.commands });
      this.rec.end({ reason, bytesIn: this.bytesIn, bytesOut: this.bytesOut, commands: this.commands, rows: 0 });
    }
    this.opts.hooks.closed();
  }
}

/** At most AUDIT_PREFIX_CHARS of s, marked when cut: over-long input is named in the trail, not copied into it. */
function clip(s: string): string {
  return s.length <= AUDIT_PREFIX_CHARS ? s : `${s.slice(0, AUDIT_PREFIX_CHARS)}… (${s.length} characters)`;
}

function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}
