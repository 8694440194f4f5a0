/**
 * The Kubernetes API proxy: TLS toward agents with node-CA certificates (HTTP/2 or
 * HTTP/1.1, as the client offers), every request analysed like the API server's own
 * RequestInfo and decided by policy, the agent's credentials stripped and the vaulted
 * one injected, responses masked, exec/attach upgrades judged before they happen.
 *
 * One server for all agents: a connection's who and what (admission) is looked up by
 * its client address, taken from the BPF flow when the connection was accepted.
 */
import { ChunkQueue } from '../../util/chunk-queue.js';
import { connect as tlsConnect, type SecureContextOptions } from 'node:tls';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { Agent, request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { KubernetesTargetDef, LimitsConfig } from '../../config/types.js';
import { DEFAULT_LIMITS, LIMIT_FIELDS } from '../../config/limits.js';
import { readSecret } from '../../config/targets.js';
import type { Decision } from '../../policy/rules.js';
import type { SessionRecording } from '../../recording/recorder.js';
import type { NodeCa } from '../../tls/node-ca.js';
import { forbiddenStatus } from '../../policy/kube-rules.js';
import type { Ticket } from '../../approvals/service.js';
import { requestInfo, type RequestInfo } from './request-info.js';
import { KubeResponseMasker, LogStreamMasker, WatchStreamMasker, negotiateJson } from './masking.js';

/** What the proxy asks of policy. */
export interface KubeJudge {
  decide(info: RequestInfo): Decision;
}

/** Who is on a connection, decided once when it was accepted. */
export interface KubeConnection {
  target?: KubernetesTargetDef;
  /** set: every request is refused with this */
  refusal?: string;
  judge?: KubeJudge;
  masker?: KubeResponseMasker;
  audit(event: 'command' | 'masked' | 'session.start' | 'session.end' | 'limit.exceeded', fields: Record<string, unknown>): void;
  recording: SessionRecording;
  /** requests decided on this connection */
  requests: number;
  /** an `approve` decision: granted by an earlier window, a ticket to wait on, or undefined (refused) */
  requestApproval?(command: string, decision: Decision): { granted: true } | { ticket: Ticket } | undefined;
  closed(): void;
}

/** Responses masked in memory are bounded: a larger one is refused, not passed unmasked. */
const MAX_MASKED_BODY = 64 << 20;
/** hop-by-hop and credential headers never forwarded upstream */
/** Subresources whose requests become streams (WebSocket or SPDY) after a 101. */
const UPGRADABLE = new Set(['exec', 'attach', 'portforward']);
/** What an agent may send after its upgrade request before the API server has answered it. */
const MAX_BYTES_AHEAD_OF_UPGRADE = 1 << 20;
/** The longest upgrade answer head read before it is given up on. */
const MAX_UPGRADE_ANSWER_BYTES = 64 * 1024;

const DROP_REQUEST_HEADERS = new Set(['authorization', 'connection', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'content-length']);
const DROP_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'content-encoding', 'trailer', 'upgrade', 'proxy-connection']);

export class KubeProxy {
  private server?: Http2SecureServer;
  private readonly connections = new Map<string, KubeConnection>();
  private readonly agents = new Map<string, Agent>();

  constructor(
    private readonly ca: NodeCa,
    private readonly targets: KubernetesTargetDef[],
    /** called for each accepted TCP connection, before TLS */
    private readonly admit: (socket: Socket) => KubeConnection,
    /** a connection could not be admitted (the daemon logs it; the connection is dropped) */
    private readonly onError: (e: Error) => void = () => {},
    /** header and body sizes, request and upstream timeouts */
    private readonly limits: LimitsConfig = DEFAULT_LIMITS,
  ) {}

  listen(host: string, port: number): Promise<void> {
    const all = this.ca.serving(this.targets.flatMap((t) => [t.address.host, ...t.serverNames]).concat(this.targets.length ? [] : ['interlock']));
    const { partialMessageTimeoutMs, maxHeaderBytes } = this.limits;
    const server = createSecureServer({
      ...all,
      allowHTTP1: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      // a TLS handshake begun must finish like any message (Node's default would wait 120 s)
      handshakeTimeout: partialMessageTimeoutMs,
      // HTTP/2: the header block, decoded, all fields together
      settings: { maxHeaderListSize: maxHeaderBytes },
      // a name the agent asked for gets the certificate of the target that has it
      SNICallback: (servername, cb) => {
        const t = this.targets.find((x) => x.serverNames.includes(servername) || x.address.host === servername);
        cb(null, createSecureContext(t ? this.ca.serving([t.address.host, ...t.serverNames]) : all));
      },
    });
    this.server = server;
    // HTTP/1.1 (Node's HTTP/1 fallback reads these from the server object): headers, then the whole
    // request, must arrive within the bound (slowloris); responses are not timed
    Object.assign(server as unknown as Http1Fallback, {
      headersTimeout: partialMessageTimeoutMs,
      requestTimeout: partialMessageTimeoutMs,
      connectionsCheckingInterval: Math.min(5_000, partialMessageTimeoutMs),
      maxHeaderSize: maxHeaderBytes,
    } satisfies Http1Fallback);
    server.on('connection', (socket: Socket) => this.onConnection(socket));
    server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => this.guard(res, () => this.onRequest(req, res)));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('sessionError', () => {});
    server.on('tlsClientError', () => {}); // an agent that does not trust the node CA: its problem, logged by the client
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog: 1024 }, () => {
        server.removeAllListeners('error');
        server.on('error', () => {});
        resolve();
      });
    });
  }

  close(): void {
    this.server?.close();
    for (const a of this.agents.values()) a.destroy();
  }

  private onConnection(socket: Socket): void {
    socket.setNoDelay(true);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    let conn: KubeConnection;
    try {
      conn = this.admit(socket);
    } catch (e) {
      this.onError(e as Error);
      socket.destroy();
      return;
    }
    this.connections.set(key, conn);
    socket.once('close', () => {
      this.connections.delete(key);
      conn.closed();
    });
  }

  private connectionOf(socket: { remoteAddress?: string; remotePort?: number } | undefined): KubeConnection | undefined {
    return socket ? this.connections.get(`${socket.remoteAddress}:${socket.remotePort}`) : undefined;
  }

  // --- requests ----------------------------------------------------------------------

  private onRequest(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const conn = this.connectionOf(req.socket);
    const url = req.url ?? '/';
    if (!conn) return sendStatus(res, 403, 'Forbidden', 'interlock: this connection was not redirected by interlock');
    if (conn.refusal || !conn.target || !conn.judge) return sendStatus(res, 403, 'Forbidden', conn.refusal ?? 'interlock: no policy');
    // a body announced too large is refused before a byte of it is read (one of unknown length is counted as it flows)
    const announced = Number(req.headers['content-length'] ?? 0);
    if (announced > this.limits.maxRequestBodyBytes) return this.refuseBody(conn, req, res, announced);
    const info = requestInfo(req.method ?? 'GET', url);
    const decision: Decision = info.invalid ? { action: 'deny', message: `invalid request path: ${info.invalid}` } : conn.judge.decide(info);
    this.decided(conn, req.method ?? 'GET', url, info, decision);
    if (decision.action === 'approve') {
      // the request waits (its body too) while a human decides
      const command = `${req.method ?? 'GET'} ${url}`;
      const asked = conn.requestApproval?.(command, decision);
      if (!asked) return sendForbidden(res, info, decision);
      if ('granted' in asked) return this.forward(conn, req, res, info);
      req.pause();
      res.on('close', () => asked.ticket.cancel());
      void asked.ticket.outcome.then((o) => this.guard(res, () => {
        conn.recording.note({ k: 'approval', command, outcome: o.state === 'approved' ? 'approved' : o.state === 'rejected' ? 'rejected' : 'timed out', by: o.by, reason: o.reason });
        if (o.approved) {
          req.resume();
          return this.forward(conn, req, res, info);
        }
        const message = o.state === 'rejected' ? `rejected by ${o.by ?? 'an approver'}: ${o.reason ?? 'no reason given'}` : (o.reason ?? 'approval timed out');
        sendForbidden(res, info, { action: 'deny', message, rule: decision.rule });
      }));
      return;
    }
    if (decision.action !== 'allow') return sendForbidden(res, info, decision);
    this.forward(conn, req, res, info);
  }

  private decided(conn: KubeConnection, method: string, url: string, info: RequestInfo, d: Decision): void {
    conn.requests++;
    const command = `${method} ${url}`;
    conn.audit('command', {
      via: 'http', command, verb: info.verb, resource: info.subresource ? `${info.resource}/${info.subresource}` : info.resource || undefined,
      namespace: info.namespace || undefined, name: info.name || undefined, exec: info.command, decision: d.action, rule: d.rule,
      message: d.action === 'allow' ? undefined : d.message,
    });
    conn.recording.decision(command, 'http', [info.verb], d.action, d.rule, d.message);
  }

  /** 413 with a Status, audited; the connection is not kept for the rest of that body. */
  private refuseBody(conn: KubeConnection, req: Http2ServerRequest, res: Http2ServerResponse, bytes: number): void {
    const max = this.limits.maxRequestBodyBytes;
    conn.audit('limit.exceeded', { via: 'http', command: `${req.method ?? 'GET'} ${req.url ?? '/'}`, limit: LIMIT_FIELDS.maxRequestBodyBytes, bytes, max });
    if (res.headersSent) return void res.destroy();
    // HTTP/1.1: the unread rest of the body would be taken for the next request
    if (req.httpVersionMajor === 1) res.setHeader('connection', 'close');
    sendStatus(res, 413, 'RequestEntityTooLarge', `interlock: a request body of ${bytes} bytes is over the limit of ${max} bytes (${LIMIT_FIELDS.maxRequestBodyBytes})`);
  }

  /** Forwards once the connection's recording exists on disk: no request reaches the API server unrecorded. */
  private forward(conn: KubeConnection, req: Http2ServerRequest, res: Http2ServerResponse, info: RequestInfo): void {
    let now = true;
    const go = () => {
      if (now) return this.forwardRecorded(conn, req, res, info);
      req.resume();
      this.guard(res, () => this.forwardRecorded(conn, req, res, info));
    };
    if (!conn.recording.whenStarted) return go();
    now = false;
    let ran = false;
    conn.recording.whenStarted(() => {
      ran = true;
      go();
    });
    if (!ran) req.pause(); // the body waits with the request
  }

  private forwardRecorded(conn: KubeConnection, req: Http2ServerRequest, res: Http2ServerResponse, info: RequestInfo): void {
    const target = conn.target!;
    const { maxRequestBodyBytes, partialMessageTimeoutMs, upstreamResponseTimeoutMs } = this.limits;
    const headers = upstreamHeaders(req.headers, target, req.url ?? '/');
    const up = httpsRequest({
      host: target.upstream.host, port: target.upstream.port, method: req.method, path: req.url, headers,
      agent: this.agentFor(target), servername: target.upstream.serverName ?? (isIpLiteral(target.upstream.host) ? undefined : target.upstream.host),
    });
    // one reason the exchange ended early (ours); the upstream error that follows it is not news
    let cut = false;
    const endEarly = (code: number, reason: string, message: string) => {
      if (cut) return;
      cut = true;
      clearTimeout(bodyDeadline);
      clearTimeout(answerDeadline);
      up.destroy();
      if (!res.headersSent) sendStatus(res, code, reason, message);
      else res.destroy();
    };
    // the agent's body must be complete within the bound (it may flow only now: an approval held it)
    const bodyDeadline = req.readableEnded ? undefined : setTimeout(() => {
      conn.audit('limit.exceeded', { via: 'http', command: `${req.method} ${req.url}`, limit: LIMIT_FIELDS.partialMessageTimeoutMs });
      endEarly(408, 'Timeout', `interlock: the request body was not complete within ${partialMessageTimeoutMs / 1000} s (${LIMIT_FIELDS.partialMessageTimeoutMs})`);
    }, partialMessageTimeoutMs);
    req.once('end', () => clearTimeout(bodyDeadline));
    // the API server must begin its answer within the bound; a watch that has begun runs as long as it likes
    const answerDeadline = setTimeout(() => {
      endEarly(504, 'Timeout', `interlock: ${target.name} (${target.upstream.host}:${target.upstream.port}) did not answer within ${upstreamResponseTimeoutMs / 1000} s (${LIMIT_FIELDS.upstreamResponseTimeoutMs})`);
    }, upstreamResponseTimeoutMs);
    res.once('close', () => {
      clearTimeout(bodyDeadline);
      clearTimeout(answerDeadline);
      if (!cut && !up.destroyed && !up.writableFinished) up.destroy(); // the agent went away mid-request
    });
    up.on('error', (e) => {
      if (cut) return;
      clearTimeout(answerDeadline);
      if (!res.headersSent) sendStatus(res, 502, 'ServiceUnavailable', `interlock could not reach ${target.name} (${target.upstream.host}:${target.upstream.port}): ${e.message}`);
      else res.destroy();
    });
    let received = 0;
    req.on('data', (d: Buffer) => {
      received += d.length;
      if (received > maxRequestBodyBytes) {
        if (cut) return;
        this.refuseBody(conn, req, res, received);
        cut = true;
        clearTimeout(bodyDeadline);
        clearTimeout(answerDeadline);
        up.destroy();
        req.unpipe(up);
        req.destroy();
        return;
      }
      conn.recording.input(d);
    });
    req.pipe(up);
    up.on('response', (upRes) => {
      clearTimeout(answerDeadline);
      if (cut) return void upRes.destroy();
      this.guard(res, () => this.respond(conn, info, upRes, res));
    });
  }

  /** The upstream answer, masked: whole JSON bodies at once, watch streams event by event. */
  private respond(conn: KubeConnection, info: RequestInfo, upRes: IncomingMessage, res: Http2ServerResponse): void {
    const status = upRes.statusCode ?? 502;
    const contentType = String(upRes.headers['content-type'] ?? '');
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !DROP_RESPONSE_HEADERS.has(k)) headers[k] = v;
    const masker = conn.masker;
    const out = (b: Buffer) => {
      conn.recording.output(b);
      return res.write(b);
    };
    const stream = (through: { push(d: Buffer): Buffer[]; end(): Buffer[] }) => {
      res.writeHead(status, headers);
      upRes.on('data', (d: Buffer) => this.guard(res, () => {
        for (const b of through.push(d)) if (!out(b)) upRes.pause();
      }));
      res.on('drain', () => upRes.resume());
      upRes.on('end', () => this.guard(res, () => {
        for (const b of through.end()) out(b);
        res.end();
      }));
    };
    // API documents (OpenAPI, whose clients ask for protobuf) hold no object data: passed as they are
    if (isApiDocument(info)) return stream({ push: (d) => [d], end: () => [] });
    if (!contentType.startsWith('application/json') && !contentType.startsWith('text/plain') && upRes.headers['content-length'] !== '0' && contentType !== '') {
      // protobuf, yaml, anything we cannot read: refused rather than passed unmasked
      upRes.resume();
      return sendStatus(res, 406, 'NotAcceptable', `interlock: responses of type ${contentType} cannot be masked; ask for application/json`);
    }
    if (masker && info.verb === 'watch' && contentType.startsWith('application/json')) return stream(new WatchStreamMasker(masker));
    // logs (text/plain) stream line by line through the content detectors
    if (masker && contentType.startsWith('text/plain')) return stream(new LogStreamMasker(masker));
    if (!masker || !contentType.startsWith('application/json')) return stream({ push: (d) => [d], end: () => [] });
    const chunks: Buffer[] = [];
    let size = 0;
    upRes.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_MASKED_BODY) {
        upRes.destroy();
        return sendStatus(res, 502, 'InternalError', `interlock: a response over ${MAX_MASKED_BODY} bytes cannot be masked; narrow the request (limit, fieldSelector)`);
      }
      chunks.push(d);
    });
    upRes.on('end', () => this.guard(res, () => {
      if (size > MAX_MASKED_BODY) return;
      const masked = masker.maskBody(contentType, Buffer.concat(chunks, size));
      if ('refuse' in masked) return sendStatus(res, 502, 'InternalError', masked.refuse);
      if (Object.keys(masked.counts).length) conn.audit('masked', { verb: info.verb, resource: info.resource, counts: masked.counts });
      headers['content-length'] = String(masked.body.length);
      res.writeHead(status, headers);
      conn.recording.output(masked.body);
      res.end(masked.body);
    }));
  }

  // --- upgrades: exec, attach, portforward (WebSocket or SPDY over HTTP/1.1) --------------

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const conn = this.connectionOf(req.socket as Socket);
    const fail = (code: number, reason: string, message: string) => {
      const body = JSON.stringify(statusObject(code, reason, message));
      socket.end(`HTTP/1.1 ${code} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    if (!conn || conn.refusal || !conn.target || !conn.judge) return fail(403, 'Forbidden', conn?.refusal ?? 'interlock: this connection was not redirected by interlock');
    const url = req.url ?? '/';
    const info = requestInfo(req.method ?? 'GET', url);
    const decision: Decision = info.invalid ? { action: 'deny', message: `invalid request path: ${info.invalid}` } : conn.judge.decide(info);
    this.decided(conn, req.method ?? 'GET', url, info, decision);
    if (decision.action !== 'allow') return fail(403, 'Forbidden', forbiddenMessage(info, decision));
    // only these are streams: an Upgrade header on anything else (a GET of pods, h2c on /version) is no licence to relay raw bytes
    if (!info.isResourceRequest || !UPGRADABLE.has(info.subresource)) {
      return fail(400, 'BadRequest', 'interlock: only exec, attach and portforward requests may upgrade the connection');
    }
    const target = conn.target;
    // as for requests: the stream starts once the recording is on disk
    if (conn.recording.whenStarted) {
      let ran = false;
      conn.recording.whenStarted(() => {
        ran = true;
        socket.resume();
        this.upgradeRecorded(conn, target, req, socket, head, url, fail);
      });
      if (!ran) socket.pause();
      return;
    }
    this.upgradeRecorded(conn, target, req, socket, head, url, fail);
  }

  private upgradeRecorded(conn: KubeConnection, target: KubernetesTargetDef, req: IncomingMessage, socket: Duplex, head: Buffer, url: string,
    fail: (code: number, reason: string, message: string) => void): void {
    const headers = upstreamHeaders(req.headers, target, url);
    const upstream = tlsConnect({
      host: target.upstream.host, port: target.upstream.port, ...tlsOptions(target), ALPNProtocols: ['http/1.1'],
      servername: target.upstream.serverName ?? (isIpLiteral(target.upstream.host) ? undefined : target.upstream.host),
    });
    // until the API server says its first word (the upgrade's answer), a silent one is given up on
    const timeoutMs = this.limits.upstreamResponseTimeoutMs;
    const answerDeadline = setTimeout(() => {
      upstream.removeAllListeners('error');
      upstream.on('error', () => {});
      upstream.destroy();
      fail(504, 'Timeout', `interlock: ${target.name} did not answer within ${timeoutMs / 1000} s (${LIMIT_FIELDS.upstreamResponseTimeoutMs})`);
    }, timeoutMs);
    upstream.once('data', () => clearTimeout(answerDeadline));
    upstream.once('close', () => clearTimeout(answerDeadline));
    socket.once('close', () => clearTimeout(answerDeadline));
    upstream.on('error', (e) => fail(502, 'BadGateway', `interlock could not reach ${target.name}: ${e.message}`));
    upstream.on('secureConnect', () => {
      upstream.removeAllListeners('error');
      const lines = [`${req.method} ${url} HTTP/1.1`, `host: ${target.upstream.host}:${target.upstream.port}`, `connection: Upgrade`, `upgrade: ${req.headers.upgrade ?? ''}`];
      for (const [k, v] of Object.entries(headers)) for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      // nothing more of the agent's goes upstream until the API server has switched protocols (101):
      // bytes sent ahead could otherwise be read there as further requests, unjudged
      const ahead = new ChunkQueue();
      ahead.push(head);
      const early = (d: Buffer) => {
        ahead.push(d);
        if (ahead.length > MAX_BYTES_AHEAD_OF_UPGRADE) fail(400, 'BadRequest', `interlock: over ${MAX_BYTES_AHEAD_OF_UPGRADE} bytes sent before the upgrade was answered`);
      };
      socket.on('data', early);
      let answer = Buffer.alloc(0);
      const onAnswer = (d: Buffer) => {
        answer = Buffer.concat([answer, d]);
        const end = answer.indexOf('\r\n\r\n');
        if (end < 0) {
          if (answer.length > MAX_UPGRADE_ANSWER_BYTES) refuseAnswer('an answer without an end of headers');
          return;
        }
        upstream.off('data', onAnswer);
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer.toString('latin1', 0, Math.min(end, 64)))?.[1];
        if (status !== '101') return refuseAnswer(`status ${status ?? 'unreadable'}`);
        socket.off('data', early);
        conn.recording.output(answer);
        socket.write(answer);
        if (ahead.length) {
          const sentAhead = ahead.take(ahead.length);
          conn.recording.input(sentAhead);
          upstream.write(sentAhead);
        }
        this.relayStream(conn, socket, upstream);
      };
      // the API server did not switch protocols: its answer is not relayed raw, and the connection ends here
      const refuseAnswer = (what: string) => {
        upstream.off('data', onAnswer);
        upstream.removeAllListeners('error');
        upstream.on('error', () => {});
        upstream.destroy();
        fail(502, 'BadGateway', `interlock: ${target.name} did not switch protocols for this upgrade (${what}); the connection ends`);
      };
      upstream.on('data', onAnswer);
      upstream.on('end', () => socket.end());
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
    });
  }

  /** After a 101: the bytes are the stream's own (WebSocket or SPDY frames), recorded with their timing. */
  private relayStream(conn: KubeConnection, socket: Duplex, upstream: Duplex): void {
    socket.on('data', (d: Buffer) => {
      conn.recording.input(d);
      if (!upstream.write(d)) socket.pause();
    });
    upstream.on('data', (d: Buffer) => {
      conn.recording.output(d);
      if (!socket.write(d)) upstream.pause();
    });
    upstream.on('drain', () => socket.resume());
    socket.on('drain', () => upstream.resume());
    socket.on('end', () => upstream.end());
  }

  // --- upstream --------------------------------------------------------------------------

  private agentFor(target: KubernetesTargetDef): Agent {
    let a = this.agents.get(target.name);
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: 64, noDelay: true, ...tlsOptions(target) } as ConstructorParameters<typeof Agent>[0]);
      this.agents.set(target.name, a);
    }
    return a;
  }

  private guard(res: Http2ServerResponse, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!res.headersSent) sendStatus(res, 500, 'InternalError', `interlock internal error: ${(e as Error).message}`);
      else res.destroy();
    }
  }
}

/** What an HTTP/2 server with allowHTTP1 takes from itself for its HTTP/1.1 connections. */
interface Http1Fallback {
  headersTimeout: number;
  requestTimeout: number;
  /** how often those two are checked */
  connectionsCheckingInterval: number;
  maxHeaderSize: number;
}

/** TLS toward the cluster: its CA, and the client certificate when that is the credential. */
function tlsOptions(target: KubernetesTargetDef): SecureContextOptions {
  const u = target.upstream;
  const opts: SecureContextOptions = { ca: readFileSync(u.ca.file) };
  if (u.clientCert && u.clientKey) {
    opts.cert = readFileSync(u.clientCert.file);
    opts.key = readSecret(u.clientKey);
  }
  return opts;
}

/** The agent's headers minus credentials, impersonation and hop-by-hop ones; ours added. */
function upstreamHeaders(incoming: IncomingHttpHeaders, target: KubernetesTargetDef, url: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || k.startsWith(':') || DROP_REQUEST_HEADERS.has(k) || k.startsWith('impersonate-')) continue;
    out[k] = v;
  }
  // protobuf cannot be masked: ask for JSON (Table too) instead; API documents excepted (see isApiDocument)
  if (!url.startsWith('/openapi')) out.accept = negotiateJson(typeof incoming.accept === 'string' ? incoming.accept : undefined);
  const token = readSecret(target.upstream.token)?.trim();
  if (token) out.authorization = `Bearer ${token}`;
  const len = incoming['content-length'];
  if (len !== undefined) out['content-length'] = len;
  return out;
}

function isApiDocument(info: RequestInfo): boolean {
  return !info.isResourceRequest && (info.path.startsWith('/openapi/') || info.path === '/openapi');
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function statusObject(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function sendStatus(res: Http2ServerResponse, code: number, reason: string, message: string): void {
  const body = JSON.stringify(statusObject(code, reason, message));
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function forbiddenMessage(info: RequestInfo, d: Decision): string {
  return String((forbiddenStatus(info, d) as { message?: string }).message ?? d.message);
}

function sendForbidden(res: Http2ServerResponse, info: RequestInfo, d: Decision): void {
  const body = JSON.stringify(forbiddenStatus(info, d));
  res.writeHead(403, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}
