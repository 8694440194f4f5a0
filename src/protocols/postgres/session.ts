/**
 * One agent's PostgreSQL connection through the proxy.
 *
 *   startup   SSLRequest/GSSENCRequest → 'N'; StartupMessage checked (database, no
 *             replication); CancelRequest handed to the cancel registry
 *   login     upstream login with the vaulted credential; the client is never asked
 *             for a password; our own BackendKeyData replaces the server's
 *   relay     client messages framed (each query audited), server bytes streamed
 *
 * Any failure ends this session with an ErrorResponse and never throws out of it.
 */
import { Socket, connect } from 'node:net';
import type { LimitsConfig, PostgresTargetDef } from '../../config/types.js';
import { DEFAULT_LIMITS, LIMIT_FIELDS } from '../../config/limits.js';
import { readSecret } from '../../config/targets.js';
import { AuthError, UpstreamAuthenticator } from './auth.js';
import { authenticationOk, backendKeyData, errorResponse, negotiateProtocolVersion, readCString, readErrorFields } from './backend.js';
import { MessageFramer, MessageTooLarge, ProtocolError, type Frame } from './framer.js';
import { parseStartupPacket, serializeStartup } from './startup.js';
import { Denials, type Refusal } from './denial.js';
import { verdictJson, type Decision, type QueryVerdict } from '../../policy/rules.js';
import type { PathsInEffect } from '../../policy/search-path.js';
import { SessionSearchPath } from './search-path-state.js';
import type { Outcome, Ticket } from '../../approvals/service.js';
import type { Masker } from '../../masking/plan.js';
import { ResultMasker } from './results.js';
import { decideWithMasking } from './query-decision.js';
import { Backend, Frontend } from './message-types.js';
import { serialize } from 'pg-protocol';
import { CATALOG_WITH_LINEAGE_SQL, CatalogReader, FUNCTION_CATALOG_SQL, type Catalog } from './catalog.js';
import { catalogFunctionEffects, UNKNOWN_EFFECTS, type FunctionEffects } from '../../policy/function-effects.js';
import { LineageJudge } from '../../masking/lineage-judge.js';
import { NOT_RECORDED, type Pressure, type SessionRecording } from '../../recording/recorder.js';

const SSL_NO = Buffer.from('N');
/** what a client may pipeline behind a statement waiting for approval */
const MAX_HELD_BYTES = 16 << 20;

/** A statement held for approval: its ticket, and how to refuse it if it is not approved. */
interface Held {
  ticket: Ticket;
  command: string;
  refuse(r: Refusal): Buffer;
}
/** what a client may send ahead while its login is still under way */
const MAX_EARLY_BYTES = 1 << 20;

/** Startup parameters an agent may pass through; everything else (options, role tricks) is dropped. */
const FORWARDED_PARAMS = new Set([
  'application_name', 'client_encoding', 'datestyle', 'timezone', 'intervalstyle', 'extra_float_digits',
]);

/** What the session asks of policy: one verdict per query text, under the search_paths that may be in effect. */
export interface StatementJudge {
  decideText(sql: string, searchPath?: PathsInEffect, effects?: FunctionEffects): QueryVerdict;
  /** it judges function calls by the catalog's volatility: the session reads the functions at login */
  readonly judgesFunctions?: boolean;
}

export interface SessionHooks {
  /** audit trail for this session; fields are merged with the session's who/what */
  audit(event: 'session.start' | 'session.end' | 'query' | 'masked' | 'connect.refused' | 'limit.exceeded', fields: Record<string, unknown>): void;
  /** the same, from fields already serialized as JSON members (the per-statement path) */
  auditSerialized(event: 'query', members: string): void;
  /** the session is starting (login details known): where it records what happens */
  startRecording(login: { clientUser?: string; database?: string; upstreamUser: string }): SessionRecording;
  /**
   * A statement needs a human's approval: `granted` when an earlier approval's window
   * covers it, a ticket to wait on, or undefined when approvals are not set up (refused).
   */
  requestApproval?(command: string, decision: Decision): { granted: true } | { ticket: Ticket } | undefined;
  /** a CancelRequest arrived on this connection */
  cancel(processId: number, secretKey: number): void;
  /** issue the key the client will use to cancel, remembering the upstream one */
  registerCancelKey(upstreamPid: number, upstreamSecret: number): { processId: number; secretKey: number };
  closed(): void;
}

export interface PostgresSessionOptions {
  client: Socket;
  /** undefined: refuse every startup with `refusal` */
  target?: PostgresTargetDef;
  refusal?: { code: string; message: string };
  /** decides every statement; required for a session that is not refused */
  judge?: StatementJudge;
  /** masks what comes back; undefined or empty: results stream through untouched */
  masker?: Masker;
  hooks: SessionHooks;
  /** how long a client may take from connect to a ready session, at most (default 30 s): no idle half-open startups */
  loginTimeoutMs?: number;
  /** message sizes and timeouts (default DEFAULT_LIMITS) */
  limits?: LimitsConfig;
}

const UPSTREAM_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

type Phase = 'startup' | 'login' | 'catalog' | 'relay' | 'closed';

export class PostgresSession {
  private phase: Phase = 'startup';
  private readonly client: Socket;
  private upstream?: Socket;
  private readonly limits: LimitsConfig;
  private readonly fromClient: MessageFramer;
  /** server messages over the limit stream through when nothing needs to look inside them */
  private readonly fromUpstream: MessageFramer;
  /** startup and login must be done by then */
  private loginDeadline?: NodeJS.Timeout;
  /** when the client's unfinished message began (performance.now()), 0 when none is pending */
  private partialSince = 0;
  /** the client's messages framed so far, when partialSince was set: a later count means a newer message */
  private partialAfterFrames = 0;
  private clientFrames = 0;
  private partialTimer?: NodeJS.Timeout;
  private auth?: UpstreamAuthenticator;
  private bytesIn = 0;
  private bytesOut = 0;
  private queries = 0;
  private rows = 0;
  private rec: SessionRecording = NOT_RECORDED;
  /** the recording's disk is behind: both sides wait */
  private heldForRecording = false;
  /** a statement waits for approval: client messages after it wait in the framer */
  private heldForApproval?: Ticket;
  private readonly denials = new Denials();
  /** which search_path the server reads unqualified names under */
  private readonly searchPath = new SessionSearchPath();
  private results?: ResultMasker;
  /** column masking's check of each statement, and the lineage of its outputs; set while column rules apply */
  private lineage?: LineageJudge;
  /** function volatility from the catalog, for the judge; undefined when it does not judge functions */
  private functionEffects?: FunctionEffects;
  /** tables as the server's catalog listed them at login; undefined when not needed or not readable */
  private catalog?: Catalog;
  /** the catalog's rows while they arrive; undefined once read, or when it could not be */
  private catalogReader?: CatalogReader;
  private heldReady?: Buffer;
  private endReason = 'client closed';
  /** the upstream database the session logged in to */
  private database = '';
  private started = false;
  private ended = false;

  constructor(private readonly opts: PostgresSessionOptions) {
    this.client = opts.client;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.fromClient = new MessageFramer({ startup: true, maxMessageBytes: this.limits.maxMessageBytes });
    this.fromUpstream = new MessageFramer({ maxMessageBytes: this.limits.maxUpstreamMessageBytes, reportOversized: true });
    this.client.setNoDelay(true);
    // a deadline, not an idle timeout: a client trickling a byte at a time must not hold a login open
    const loginMs = opts.loginTimeoutMs ?? 30_000;
    this.loginDeadline = setTimeout(() => {
      this.loginDeadline = undefined;
      if (this.phase !== 'relay' && this.phase !== 'closed') this.fail({ severity: 'FATAL', code: '08006', message: `login took too long (over ${loginMs / 1000} s, proxy.loginTimeout)` });
    }, loginMs);
    this.client.on('data', (chunk) => this.guard(() => this.onClientData(chunk)));
    this.client.on('error', (e) => this.close(`client error: ${e.message}`));
    this.client.on('end', () => this.close('client closed'));
    this.client.on('close', () => this.close(this.endReason));
  }

  /** End the session from outside (daemon stopping): tell the client why. */
  shutdown(message: string): void {
    if (this.ended) return;
    this.fail({ severity: 'FATAL', code: '57P01', message });
    this.upstream?.destroy(); // a backend busy in a query would hold a half-closed socket open
  }

  // --- client side -------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    // after the end, what still arrives is read and dropped: the peer gets our error, not a reset
    if (this.ended) return;
    this.bytesIn += chunk.length;
    this.fromClient.push(chunk);
    if (this.phase === 'relay') {
      this.relayClientMessages();
      return this.watchPartialMessage();
    }
    while (this.phase === 'startup') {
      const f = this.fromClient.next();
      if (!f) break;
      this.onStartupMessage(f);
    }
    // anything sent before login finished waits in the framer until relay begins: its size is checked now
    this.fromClient.checkNext();
    if (this.fromClient.bufferedBytes > MAX_EARLY_BYTES) throw new ProtocolError('too much data before the session was ready');
  }

  /**
   * Slowloris: a message the client has begun must be complete within partialMessageTimeout.
   * Idle time between messages is the agent's business and never cut. Per read this costs a
   * comparison; the clock is read only when a new message is left unfinished, and one timer
   * per session is (re)armed at most once per timeout period.
   */
  private watchPartialMessage(): void {
    if (this.fromClient.bufferedBytes === 0) {
      this.partialSince = 0;
      return;
    }
    if (this.partialSince !== 0 && this.partialAfterFrames === this.clientFrames) return; // the same message, still coming
    this.partialSince = performance.now();
    this.partialAfterFrames = this.clientFrames;
    if (!this.partialTimer) this.partialTimer = setTimeout(() => this.onPartialTimer(), this.limits.partialMessageTimeoutMs);
  }

  private onPartialTimer(): void {
    this.partialTimer = undefined;
    if (this.ended || this.partialSince === 0) return;
    const limit = this.limits.partialMessageTimeoutMs;
    const now = performance.now();
    // while we do not read (upstream or recording back-pressure, a statement held for approval) the wait is ours
    if (this.client.isPaused() || this.heldForApproval) this.partialSince = now;
    const left = this.partialSince + limit - now;
    if (left > 0) {
      this.partialTimer = setTimeout(() => this.onPartialTimer(), left);
      return;
    }
    const seconds = limit / 1000;
    this.opts.hooks.audit('limit.exceeded', { limit: LIMIT_FIELDS.partialMessageTimeoutMs, seconds, bufferedBytes: this.fromClient.bufferedBytes });
    this.fail({ severity: 'FATAL', code: '08P01', message: `interlock: a message was left unfinished for over ${seconds} s (${LIMIT_FIELDS.partialMessageTimeoutMs}); the session ends` });
  }

  private onStartupMessage(f: Frame): void {
    const packet = parseStartupPacket(f.payload);
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc':
        // loopback to a local proxy: no TLS toward the agent (the upstream leg is ours)
        this.client.write(SSL_NO);
        return;
      case 'cancel':
        this.opts.hooks.cancel(packet.processId, packet.secretKey);
        this.close('cancel request');
        return;
      case 'startup':
        this.negotiate(packet.protocolVersion, packet.params);
        this.onStartup(packet.params);
        return;
    }
  }

  /** We speak 3.0: a client asking for a newer minor version or _pq_ options is told so, as the server would. */
  private negotiate(version: number, params: Record<string, string>): void {
    const options = Object.keys(params).filter((k) => k.startsWith('_pq_.'));
    if ((version & 0xffff) > 0 || options.length) this.client.write(negotiateProtocolVersion(0, options));
  }

  private onStartup(params: Record<string, string>): void {
    const { target, refusal, hooks } = this.opts;
    this.fromClient.setStartupMode(false);
    if (!target || refusal) {
      hooks.audit('connect.refused', { reason: refusal?.message, clientUser: params.user, database: params.database });
      return this.fail({ severity: 'FATAL', code: refusal?.code ?? '28000', message: refusal?.message ?? 'refused' });
    }
    if (!this.opts.judge) return this.fail({ severity: 'FATAL', code: '28000', message: `interlock: no policy decides statements for target ${target.name}` });
    if (params.replication !== undefined && params.replication !== 'false' && params.replication !== '0') {
      hooks.audit('connect.refused', { reason: 'replication connection', clientUser: params.user });
      return this.fail({ severity: 'FATAL', code: '28000', message: `replication connections are not allowed through interlock (target ${target.name})` });
    }
    const wanted = params.database ?? params.user;
    const served = target.upstream.database;
    if (served !== undefined && wanted !== served) {
      hooks.audit('connect.refused', { reason: `database "${wanted}" is not served`, clientUser: params.user, database: wanted });
      return this.fail({ severity: 'FATAL', code: '3D000', message: `database "${wanted}" is not served by target ${target.name} (it serves "${served}")` });
    }
    let password: string | undefined;
    try {
      password = readSecret(target.upstream.password);
    } catch (e) {
      return this.fail({ severity: 'FATAL', code: '28000', message: `interlock cannot log in to target ${target.name}: ${(e as Error).message}` });
    }
    // the login search_path (LOGIN_SEARCH_PATH), which the session follows from here
    const upstreamParams: Record<string, string> = { user: target.upstream.user, database: served ?? wanted, search_path: 'public' };
    const dropped: string[] = [];
    for (const [k, v] of Object.entries(params)) {
      if (k === 'user' || k === 'database') continue;
      if (FORWARDED_PARAMS.has(k.toLowerCase())) upstreamParams[k] = v;
      else dropped.push(k);
    }
    this.started = true;
    this.database = upstreamParams.database;
    hooks.audit('session.start', { clientUser: params.user, database: upstreamParams.database, upstreamUser: target.upstream.user, droppedParams: dropped.length ? dropped : undefined });
    this.rec = hooks.startRecording({ clientUser: params.user, database: upstreamParams.database, upstreamUser: target.upstream.user });
    this.rec.onPressure = (p, why) => this.onRecordingPressure(p, why);
    this.phase = 'login';
    this.auth = new UpstreamAuthenticator(target.upstream.user, password);
    this.connectUpstream(serializeStartup(upstreamParams));
  }

  private relayClientMessages(): void {
    if (this.heldForApproval) {
      // pipelined messages wait behind the held statement, bounded
      this.fromClient.checkNext();
      if (this.fromClient.bufferedBytes > MAX_HELD_BYTES) throw new ProtocolError('too much data sent while a statement waits for approval');
      return;
    }
    const up = this.upstream!;
    up.cork();
    try {
      for (let f = this.fromClient.next(); f; f = this.fromClient.next()) {
        this.clientFrames++;
        this.searchPath.clientMessage(f.type);
        this.rec.input(f.raw);
        let out: Buffer | Held = f.raw;
        if (f.type === Frontend.Query) out = this.onQuery(f);
        else if (f.type === Frontend.Parse) out = this.onParse(f);
        else if (f.type === Frontend.FunctionCall) out = this.onFunctionCall();
        if (!Buffer.isBuffer(out)) return this.hold(f, out);
        if (!this.toUpstream(out)) this.client.pause();
        if (f.type === Frontend.Terminate) {
          this.endReason = 'client terminated';
          up.end();
        }
      }
    } finally {
      up.uncork();
    }
  }

  /**
   * One client message (or its replacement) to the server. Result masking follows the
   * protocol from it, and may put a Describe of its own before an Execute.
   */
  private toUpstream(message: Buffer): boolean {
    const up = this.upstream!;
    const before = this.results?.sent(message);
    if (before) up.write(before);
    return up.write(message);
  }

  /** The bytes to send upstream for a simple Query: itself, or its denial; or a hold. */
  private onQuery(f: Frame): Buffer | Held {
    const sql = readCString(f.payload, 0)[0];
    const d = this.decide(sql, 'simple');
    if (d && 'ticket' in d) return { ticket: d.ticket, command: sql, refuse: (r) => this.denials.query(r) };
    return d ? this.denials.query(d) : f.raw;
  }

  /** Parse is where the extended protocol is decided; Bind/Execute of a refused statement find nothing. */
  private onParse(f: Frame): Buffer | Held {
    const [name, next] = readCString(f.payload, 0);
    const [sql] = readCString(f.payload, next);
    const d = this.decide(sql, 'extended', name || undefined);
    if (d && 'ticket' in d) return { ticket: d.ticket, command: sql, refuse: (r) => this.denials.parse(name, r) };
    if (d) return this.denials.parse(name, d);
    // masking must know every statement it may describe: past its bounds, no new ones
    const full = this.results?.refusesParse(name, sql);
    if (full) {
      this.opts.hooks.audit('limit.exceeded', { limit: 'prepared statements', from: 'agent', statement: name });
      return this.denials.parse(name, { message: full });
    }
    return f.raw;
  }

  /**
   * The statement waits upstream-unsent while a human decides; then it runs (its results
   * flow as usual) or is refused as any denial is, so the protocol stays in sync.
   */
  private hold(f: Frame, held: Held): void {
    this.heldForApproval = held.ticket;
    this.opts.hooks.audit('query', { protocol: 'hold', query: held.command, approval: held.ticket.id, message: 'waiting for approval' });
    held.ticket.outcome.then((o: Outcome) => this.guard(() => {
      if (this.ended) return;
      this.heldForApproval = undefined;
      this.rec.note({ k: 'approval', command: held.command, outcome: o.state === 'approved' ? 'approved' : o.state === 'rejected' ? 'rejected' : 'timed out', by: o.by, reason: o.reason });
      const bytes = o.approved
        ? f.raw
        : held.refuse({ message: o.state === 'rejected' ? `interlock: rejected by ${o.by ?? 'an approver'}: ${o.reason ?? 'no reason given'}` : `interlock: ${o.reason ?? 'approval timed out'}` });
      if (!this.toUpstream(bytes)) this.client.pause();
      this.relayClientMessages(); // what the client sent meanwhile
      this.watchPartialMessage();
    }));
  }

  /** The fastpath FunctionCall names a function by oid only: it is never allowed. */
  private onFunctionCall(): Buffer {
    this.queries++;
    const message = 'interlock: fastpath function calls are not allowed';
    this.opts.hooks.audit('query', { protocol: 'function-call', decision: 'deny', message });
    this.rec.decision('(fastpath function call)', 'function-call', [], 'deny', undefined, message);
    return this.denials.query({ message });
  }

  /** Audits the verdict; returns what to tell the agent when the statement must not run. */
  private decide(sql: string, protocol: 'simple' | 'extended', statement?: string): Refusal | { ticket: Ticket } | undefined {
    this.queries++;
    const verdict = this.opts.judge!.decideText(sql, this.searchPath.pathsFor(protocol), this.functionEffects);
    const { kinds } = verdict;
    const paths = this.searchPath.pathsDuring(verdict, protocol);
    let { decision, copies } = decideWithMasking(sql, verdict, { masker: this.opts.masker, catalog: this.catalog, lineage: this.lineage, paths, preparedAs: statement });
    const pathRefusal = decision.action === 'deny' ? undefined : this.searchPath.admit(verdict, protocol, statement);
    if (pathRefusal) {
      decision = { action: 'deny', message: pathRefusal };
      copies = undefined;
    }
    const verdictMembers = decision === verdict.decision ? verdict.auditJson : verdictJson(kinds, decision);
    const statementMember = statement === undefined ? '' : `,"statement":${JSON.stringify(statement)}`;
    this.opts.hooks.auditSerialized('query', `"protocol":"${protocol}"${statementMember},"query":${JSON.stringify(sql)},${verdictMembers}`);
    this.rec.decision(sql, protocol, kinds, decision.action, decision.rule, decision.message, statement);
    if (decision.action === 'approve') {
      const asked = this.opts.hooks.requestApproval?.(sql, decision);
      if (asked && 'ticket' in asked) return asked;
      if (!asked) return { message: `interlock: ${decision.message}`, detail: decision.rule ? `rule ${decision.rule}` : undefined };
      // granted by an earlier approval's time window: runs like an allowed statement
    } else if (decision.action !== 'allow') return { message: `interlock: ${decision.message}`, detail: decision.rule ? `rule ${decision.rule}` : undefined };
    for (const c of copies ?? []) this.results!.expectCopy(c.copy, c.columns);
    return undefined;
  }

  // --- upstream side -----------------------------------------------------------

  private connectUpstream(startup: Buffer): void {
    const target = this.opts.target!;
    const { host, port } = target.upstream;
    // reads land in one shared buffer and are copied out at their real size: no 64 KiB
    // allocation per read, no stream machinery between the socket and the framer
    const up = connect({
      host, port,
      onread: {
        buffer: UPSTREAM_READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          this.guard(() => this.onUpstreamData(Buffer.from(buf.subarray(0, n))));
          return true;
        },
      },
    });
    this.upstream = up;
    up.setNoDelay(true);
    const connectMs = this.limits.upstreamConnectTimeoutMs;
    up.setTimeout(connectMs, () => {
      if (this.phase === 'login' || this.phase === 'catalog') {
        this.fail({ severity: 'FATAL', code: '08006', message: `target ${target.name} (${host}:${port}) did not answer within ${connectMs / 1000} s (${LIMIT_FIELDS.upstreamConnectTimeoutMs})` });
      }
    });
    // bound, not closed over: the closures below live as long as the session, the startup packet need not
    up.once('connect', up.write.bind(up, startup));
    up.on('error', (e: NodeJS.ErrnoException) => {
      if (this.phase === 'login') {
        this.fail({ severity: 'FATAL', code: '08006', message: `target ${target.name} (${host}:${port}) is unreachable: ${e.code ?? e.message}` });
      } else this.close(`upstream error: ${e.message}`);
    });
    const gone = () => {
      if (this.phase === 'login') this.fail({ severity: 'FATAL', code: '08006', message: `target ${target.name} closed the connection during login` });
      else this.close('upstream closed');
    };
    up.on('end', gone);
    up.on('close', gone);
    up.on('drain', () => this.heldForRecording || this.client.resume());
    this.client.on('drain', () => this.heldForRecording || up.resume());
  }

  private onUpstreamData(chunk: Buffer): void {
    if (this.ended) return;
    this.fromUpstream.push(chunk);
    while (this.phase === 'login' || this.phase === 'catalog') {
      const f = this.fromUpstream.next();
      if (!f) {
        if (this.fromUpstream.oversized >= 0) this.upstreamTooLarge('during login');
        break;
      }
      if (this.phase === 'login') this.onLoginMessage(f);
      else this.onCatalogMessage(f);
    }
    if ((this.phase as Phase) === 'relay') this.relayUpstream();
  }

  /**
   * Whole frames, and between them any message over maxUpstreamMessageBytes that needs no
   * looking into (a row no masking touches, COPY data): those are passed on in pieces as
   * they arrive, so their size never becomes memory here.
   */
  private relayUpstream(): void {
    const framer = this.fromUpstream;
    this.client.cork();
    try {
      for (;;) {
        if (framer.passing !== 0) {
          for (let piece = framer.nextPiece(); piece; piece = framer.nextPiece()) this.toClient(piece);
          if (framer.passing !== 0) return; // the rest of it is still to come
        }
        this.relayUpstreamFrames();
        const type = framer.oversized;
        if (type < 0) return;
        if (!this.passesUnread(type)) this.upstreamTooLarge('in a result that must be held whole to be masked');
        if (type === Backend.DataRow) this.rows++;
        framer.passThrough();
      }
    } finally {
      this.client.uncork();
    }
  }

  /** Can this server message go to the agent without anyone reading it? */
  private passesUnread(type: number): boolean {
    if (type !== Backend.DataRow && type !== Backend.CopyData) return false;
    return this.results ? this.results.passesUnread(type) : true;
  }

  private upstreamTooLarge(where: string): never {
    const f = this.fromUpstream;
    const type = String.fromCharCode(f.oversized);
    this.opts.hooks.audit('limit.exceeded', { limit: LIMIT_FIELDS.maxUpstreamMessageBytes, from: 'upstream', messageType: type, bytes: f.oversizedBytes, max: f.limit });
    throw new ProtocolError(
      `target ${this.opts.target!.name} sent a message "${type}" of ${f.oversizedBytes} bytes ${where}, over the limit of ${f.limit} bytes ` +
      `(${LIMIT_FIELDS.maxUpstreamMessageBytes}); the session ends`, '54000');
  }

  /**
   * Frames in, masked frames out (the caller corks the client). Untouched frames that lie
   * next to each other in memory leave as one write; only a rewritten message breaks the run.
   */
  private relayUpstreamFrames(): void {
    const results = this.results;
    let run: Buffer | undefined;
    let runEnd = 0;
    const flush = () => {
      if (run) this.toClient(run.length === runEnd - run.byteOffset ? run : Buffer.from(run.buffer, run.byteOffset, runEnd - run.byteOffset));
      run = undefined;
    };
    for (let f = this.fromUpstream.next(); f; f = this.fromUpstream.next()) {
      if (f.type === Backend.DataRow) this.rows++;
      let out = results ? results.frame(f) : f.raw;
      if (f.type === Backend.ReadyForQuery || f.type === Backend.ErrorResponse) this.searchPath.serverMessage(f.type, f.payload);
      if (f.type === Backend.ErrorResponse) {
        // read even when masking drops the error (the client is told the server skipped to Sync): it answers a denial
        const ours = this.denials.rewrite(f);
        if (ours && out.length !== 0) out = ours;
      }
      if (out.length === 0) continue;
      if (out === f.raw && run && out.buffer === run.buffer && out.byteOffset === runEnd) {
        runEnd += out.length;
        continue;
      }
      flush();
      if (out === f.raw) {
        run = out;
        runEnd = out.byteOffset + out.length;
      } else this.toClient(out);
    }
    flush();
  }

  /** Rows of our own catalog query (oid, schema, table, columns): what masking rules need to know of tables. */
  private onCatalogMessage(f: Frame): void {
    if (f.type === Backend.DataRow) {
      this.catalogReader?.row(f.payload);
    } else if (f.type === Backend.CommandComplete) {
      this.catalogReader?.resultDone();
    } else if (f.type === Backend.ErrorResponse) {
      this.catalogReader = undefined; // unresolved tables then match every table segment: more masking, not less
    } else if (f.type === Backend.ReadyForQuery) {
      const { target } = this.opts;
      this.catalog = this.catalogReader?.finish(`${target!.name}\n${this.database}`);
      this.catalogReader = undefined;
      const ready = this.heldReady!;
      this.heldReady = undefined;
      this.becomeReady(ready);
    }
  }

  private onLoginMessage(f: Frame): void {
    const target = this.opts.target!;
    switch (f.type) {
      case Backend.Authentication: {
        let step;
        try {
          step = this.auth!.respond(f.payload);
        } catch (e) {
          if (!(e instanceof AuthError)) throw e;
          return this.fail({ severity: 'FATAL', code: '28000', message: `interlock could not log in to target ${target.name}: ${e.message}` });
        }
        if (step.reply) this.upstream!.write(step.reply);
        if (step.done) this.client.write(authenticationOk());
        return;
      }
      case Backend.ErrorResponse: {
        const e = readErrorFields(f.payload);
        return this.fail({ severity: 'FATAL', code: e.C ?? '28000', message: `target ${target.name} refused interlock's login: ${e.M ?? 'no reason given'}` });
      }
      case Backend.BackendKeyData: {
        // the agent gets a key of ours: a cancel must come back through interlock
        if (f.payload.length < 8) throw new ProtocolError('BackendKeyData too short');
        const mine = this.opts.hooks.registerCancelKey(f.payload.readInt32BE(0), f.payload.readInt32BE(4));
        this.client.write(backendKeyData(mine.processId, mine.secretKey));
        return;
      }
      case Backend.ReadyForQuery:
        this.auth = undefined; // its SCRAM state is a login's, not an idle session's, to hold
        const columnRules = this.opts.masker?.hasColumnRules === true;
        if (columnRules || this.opts.judge?.judgesFunctions) {
          // the agent waits one round trip more while we learn the tables masking rules name and the functions policy judges
          this.heldReady = Buffer.from(f.raw);
          this.catalogReader = new CatalogReader();
          this.phase = 'catalog';
          this.upstream!.write(serialize.query(columnRules ? CATALOG_WITH_LINEAGE_SQL : FUNCTION_CATALOG_SQL));
          return;
        }
        this.becomeReady(f.raw);
        return;
      default: // ParameterStatus, NoticeResponse, NegotiateProtocolVersion
        this.client.write(f.raw);
    }
  }

  /** ReadyForQuery to the client once its recording exists on disk: no command runs unrecorded. */
  private becomeReady(readyForQuery: Buffer): void {
    const go = () => this.guard(() => {
      if (this.ended) return;
      this.client.write(readyForQuery);
      this.enterRelay();
    });
    if (this.rec.whenStarted) this.rec.whenStarted(go);
    else go();
  }

  private enterRelay(): void {
    this.phase = 'relay';
    clearTimeout(this.loginDeadline); // an idle session is the agent's business from here on
    this.loginDeadline = undefined;
    this.upstream!.setTimeout(0);
    // a peer host that vanished (no FIN, no RST) is found by the kernel, not by a client waiting forever
    this.upstream!.setKeepAlive(true, 60_000);
    const masker = this.opts.masker;
    // column rules follow lineage: no catalog, no statement (fail closed)
    const lineage = masker?.hasColumnRules ? new LineageJudge(this.catalog?.lineage, masker.lineageRules) : undefined;
    // which calls may write, as this database's catalog says; none read: every call but the harmless built-ins (fail closed)
    if (this.opts.judge?.judgesFunctions) this.functionEffects = this.catalog?.lineage ? catalogFunctionEffects(this.catalog.lineage) : UNKNOWN_EFFECTS;
    this.lineage = lineage;
    if (masker && !masker.empty) {
      this.results = new ResultMasker(masker, this.catalog?.byOid, (tag, counts) => {
        this.opts.hooks.audit('masked', { tag, counts });
        this.rec.note({ k: 'masked', tag, counts });
        // each result's columns carry the masked sources lineage found at their positions
      }, lineage ? (sql, index) => lineage.outputs(sql, index) : undefined);
    }
    this.relayClientMessages(); // what the client sent ahead
    this.watchPartialMessage();
  }

  private toClient(bytes: Buffer): void {
    this.bytesOut += bytes.length;
    this.rec.output(bytes);
    if (!this.client.write(bytes)) this.upstream?.pause();
  }

  /** A disk that cannot keep up holds both sides (the agent simply waits) or ends the session. */
  private onRecordingPressure(p: Pressure, why: string): void {
    if (p === 'end') {
      return this.fail({ severity: 'FATAL', code: '57P01', message: `interlock ended this session: its recording cannot be kept (${why})` });
    }
    this.heldForRecording = p === 'block';
    if (this.heldForRecording) {
      this.client.pause();
      this.upstream?.pause();
    } else {
      this.client.resume();
      this.upstream?.resume();
    }
  }

  // --- endings -------------------------------------------------------------------

  /** Runs a handler so that nothing it throws escapes the session. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (e instanceof MessageTooLarge) this.refuseTooLarge(e);
      else if (e instanceof ProtocolError && e.code === '54000') this.fail({ severity: 'FATAL', code: e.code, message: `interlock: ${e.message}` });
      else if (e instanceof ProtocolError) this.fail({ severity: 'FATAL', code: e.code, message: `invalid message: ${e.message}` });
      else this.fail({ severity: 'FATAL', code: 'XX000', message: `interlock internal error: ${(e as Error).message}` });
    }
  }

  /** A message from the agent over its limit, seen from its header: refused before its body is read. */
  private refuseTooLarge(e: MessageTooLarge): void {
    const startup = e.type === 0;
    const field = startup ? undefined : LIMIT_FIELDS.maxMessageBytes;
    const what = startup ? 'startup packet' : `message "${String.fromCharCode(e.type)}"`;
    const message = `interlock: ${what} of ${e.length} bytes is over the limit of ${e.limit} bytes${field ? ` (${field})` : ''}; the session ends`;
    this.opts.hooks.audit(startup && !this.started ? 'connect.refused' : 'limit.exceeded', { reason: message, limit: field, from: 'agent', messageType: startup ? undefined : String.fromCharCode(e.type), bytes: e.length, max: e.limit });
    this.fail({ severity: 'FATAL', code: e.code, message });
  }

  private fail(err: { severity: 'FATAL' | 'ERROR'; code: string; message: string }): void {
    if (this.ended) return;
    this.endReason = err.message;
    if (!this.client.destroyed) this.client.end(errorResponse(err));
    this.close(err.message);
  }

  private close(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.heldForApproval?.cancel();
    clearTimeout(this.loginDeadline);
    clearTimeout(this.partialTimer);
    const loggedIn = this.phase === 'relay';
    this.phase = 'closed';
    if (this.endReason === 'client terminated') reason = this.endReason;
    // an upstream still logging in has nothing to finish: cut it now (it may not even be connected)
    if (this.upstream && !loggedIn) this.upstream.destroy();
    else if (this.upstream && !this.upstream.destroyed) this.upstream.end();
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
    // a peer that never reads its end would hold the socket: give it a moment, then cut
    setTimeout(() => {
      this.client.destroy();
      this.upstream?.destroy();
    }, 5000).unref();
    if (this.started) this.opts.hooks.audit('session.end', { reason, bytesIn: this.bytesIn, bytesOut: this.bytesOut, queries: this.queries, rows: this.rows });
    this.rec.end({ reason, bytesIn: this.bytesIn, bytesOut: this.bytesOut, commands: this.queries, rows: this.rows });
    this.opts.hooks.closed();
  }
}
