/**
 * Kubernetes recordings, decoded and replayed as a request log. Pure: a recording in, strings out.
 *
 * A recording is one agent TCP connection. Each API request left a decision event (its method
 * and URL), then the bytes of its request body (`in`) and of its masked response (`out`). After
 * an exec, attach or portforward upgrade the connection carries the stream's own bytes: the
 * upstream's HTTP/1.1 101 answer, then WebSocket frames both ways. Exec and attach speak the
 * channel protocol (v4/v5.channel.k8s.io, or base64.channel.k8s.io in text frames): each
 * message starts with its channel, 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 255 close.
 *
 * The recording does not say which HTTP/2 stream bytes belong to, so bytes go to the latest
 * request forwarded before them (refused requests are answered by interlock and record no bytes).
 * That is exact for requests that follow each other, and for an upgraded connection, which
 * carries nothing else; requests in flight together have their bytes shown with the latest. A
 * request held for approval is forwarded when its approval is recorded, or at once when an
 * earlier approval still holds (no approval event follows it then).
 */
import type { DataEvent, DecisionEvent, EndEvent, RecordedEvent, Recording, StartEvent } from '../events.js';
import { requestInfo, type RequestInfo } from '../../protocols/kubernetes/request-info.js';

// ---------------------------------------------------------------- WebSocket frames

export interface WsFrame {
  fin: boolean;
  /** 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong */
  opcode: number;
  masked: boolean;
  /** unmasked */
  payload: Buffer;
}

export const WS_TEXT = 1;
export const WS_BINARY = 2;
export const WS_CLOSE = 8;
export const WS_PING = 9;
export const WS_PONG = 10;

/** A recorded frame longer than this is taken as a decoding error, not waited for. */
const MAX_FRAME_PAYLOAD = 1 << 30;

/**
 * Reads WebSocket frames (RFC 6455 §5.2) from bytes that arrive in arbitrary pieces: FIN, the
 * opcode, the mask bit, a 7-bit length or 126/127 for a 16- or 64-bit one, the masking key
 * (client frames are masked), the payload. Bytes of an unfinished frame wait for the next push.
 */
export class WsFrameReader {
  private chunks: Buffer[] = [];
  private total = 0;
  /** why the stream cannot be read any further; set once, then every push returns nothing */
  error?: string;

  push(bytes: Uint8Array): WsFrame[] {
    if (this.error !== undefined) return [];
    if (bytes.length) {
      this.chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      this.total += bytes.length;
    }
    const frames: WsFrame[] = [];
    for (let frame = this.next(); frame; frame = this.next()) frames.push(frame);
    return frames;
  }

  /** bytes of a frame not yet complete */
  get pending(): number {
    return this.total;
  }

  private next(): WsFrame | undefined {
    const head = this.peek(2);
    if (!head) return undefined;
    const masked = (head[1]! & 0x80) !== 0;
    const len7 = head[1]! & 0x7f;
    const lengthBytes = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const headerLength = 2 + lengthBytes + (masked ? 4 : 0);
    const header = this.peek(headerLength);
    if (!header) return undefined;
    const length = len7 === 126 ? header.readUInt16BE(2) : len7 === 127 ? Number(header.readBigUInt64BE(2)) : len7;
    if (length > MAX_FRAME_PAYLOAD) {
      this.error = `a frame claims ${length} bytes: not a WebSocket stream, or the recording lost bytes`;
      return undefined;
    }
    const whole = this.peek(headerLength + length);
    if (!whole) return undefined;
    const payload = Buffer.from(whole.subarray(headerLength, headerLength + length));
    if (masked) unmask(payload, header.subarray(2 + lengthBytes, headerLength));
    this.consume(headerLength + length);
    return { fin: (head[0]! & 0x80) !== 0, opcode: head[0]! & 0x0f, masked, payload };
  }

  /** The first n buffered bytes as one buffer, joining chunks only once that many are there. */
  private peek(n: number): Buffer | undefined {
    if (this.total < n) return undefined;
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks, this.total)];
    return this.chunks[0]!;
  }

  private consume(n: number): void {
    const first = this.chunks[0]!;
    this.total -= n;
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
  }
}

function unmask(payload: Buffer, key: Buffer): void {
  for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
}

export interface WsMessage {
  /** the opcode of the message's first frame (text, binary or a control frame) */
  opcode: number;
  payload: Buffer;
}

/** Joins fragmented messages; control frames, which may come between fragments, pass on at once. */
export class WsMessageReader {
  private readonly frames = new WsFrameReader();
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;

  get error(): string | undefined {
    return this.frames.error;
  }

  get pending(): number {
    return this.frames.pending + this.fragments.reduce((n, f) => n + f.length, 0);
  }

  push(bytes: Uint8Array): WsMessage[] {
    const messages: WsMessage[] = [];
    for (const f of this.frames.push(bytes)) {
      if (f.opcode >= 8) {
        messages.push({ opcode: f.opcode, payload: f.payload });
        continue;
      }
      if (f.opcode !== 0) {
        this.fragments = [];
        this.fragmentOpcode = f.opcode;
      }
      this.fragments.push(f.payload);
      if (f.fin) {
        messages.push({ opcode: this.fragmentOpcode, payload: Buffer.concat(this.fragments) });
        this.fragments = [];
      }
    }
    return messages;
  }
}

// ---------------------------------------------------------------- exec and attach streams

export type StreamChannel = 'stdin' | 'stdout' | 'stderr';

/** What one side of an upgraded stream said, message by message. `dir` is as recorded: in from the agent. */
export type StreamItem = { t: number; dir: 'in' | 'out' } & (
  | { kind: 'data'; channel: StreamChannel; text: string; bytes: number }
  | { kind: 'status'; status: string; exitCode?: number; message?: string }
  | { kind: 'resize'; width: number; height: number }
  | { kind: 'close-channel'; channel: string }
  | { kind: 'close'; code?: number; reason: string }
  | { kind: 'other'; channel: number; bytes: number }
  | { kind: 'problem'; message: string }
);

const CHANNEL_NAMES: Record<number, StreamChannel> = { 0: 'stdin', 1: 'stdout', 2: 'stderr' };
const STATUS_CHANNEL = 3;
const RESIZE_CHANNEL = 4;
/** v5: the client closes one of its channels (stdin at end of input) */
const CLOSE_CHANNEL = 255;

/** Turns the channel messages of exec/attach into items; text is decoded per channel, across messages. */
class ChannelDecoder {
  private readonly decoders = new Map<string, TextDecoder>();

  constructor(private readonly base64: boolean) {}

  items(m: WsMessage, t: number, dir: 'in' | 'out'): StreamItem[] {
    if (m.opcode === WS_CLOSE) return [{ t, dir, kind: 'close', ...closeReason(m.payload) }];
    if (m.opcode !== WS_TEXT && m.opcode !== WS_BINARY) return []; // ping, pong: keep-alive only
    const framed = this.unframe(m);
    if (!framed) return m.payload.length ? [{ t, dir, kind: 'problem', message: `a ${m.payload.length}-byte message without a channel` }] : [];
    const { channel, data } = framed;
    const name = CHANNEL_NAMES[channel];
    if (name) return data.length ? [{ t, dir, kind: 'data', channel: name, text: this.text(`${dir}${channel}`, data), bytes: data.length }] : [];
    if (channel === STATUS_CHANNEL) return [{ t, dir, kind: 'status', ...exitStatus(data) }];
    if (channel === RESIZE_CHANNEL) return [resize(data, t, dir)];
    if (channel === CLOSE_CHANNEL) return [{ t, dir, kind: 'close-channel', channel: data.length ? CHANNEL_NAMES[data[0]!] ?? String(data[0]) : '?' }];
    return [{ t, dir, kind: 'other', channel, bytes: data.length }];
  }

  private unframe(m: WsMessage): { channel: number; data: Buffer } | undefined {
    if (m.payload.length === 0) return undefined;
    if (!this.base64) return { channel: m.payload[0]!, data: m.payload.subarray(1) };
    // base64.channel.k8s.io: the channel as an ASCII digit, then base64
    const channel = m.payload[0]! - 0x30;
    return { channel, data: Buffer.from(m.payload.subarray(1).toString('latin1'), 'base64') };
  }

  private text(key: string, data: Buffer): string {
    let d = this.decoders.get(key);
    if (!d) this.decoders.set(key, (d = new TextDecoder('utf-8')));
    return d.decode(data, { stream: true });
  }
}

/** The Status object on channel 3: Success, or Failure with the exit code as a cause. Older protocols send plain text. */
function exitStatus(data: Buffer): { status: string; exitCode?: number; message?: string } {
  const text = data.toString('utf8');
  let s: { status?: unknown; message?: unknown; reason?: unknown; details?: { causes?: { reason?: unknown; message?: unknown }[] } };
  try {
    s = JSON.parse(text);
  } catch {
    return { status: 'Failure', message: text };
  }
  if (s.status === 'Success') return { status: 'Success', exitCode: 0 };
  const cause = s.details?.causes?.find((c) => c.reason === 'ExitCode');
  const code = cause ? Number(cause.message) : NaN;
  const message = typeof s.message === 'string' ? s.message : undefined;
  return { status: String(s.status ?? 'Failure'), ...(Number.isInteger(code) ? { exitCode: code } : {}), ...(message !== undefined ? { message } : {}) };
}

function resize(data: Buffer, t: number, dir: 'in' | 'out'): StreamItem {
  try {
    const size = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
    return { t, dir, kind: 'resize', width: Number(size.Width), height: Number(size.Height) };
  } catch {
    return { t, dir, kind: 'problem', message: 'a resize message that is not JSON' };
  }
}

function closeReason(payload: Buffer): { code?: number; reason: string } {
  if (payload.length < 2) return { reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') };
}

// ---------------------------------------------------------------- requests

/** Bytes recorded for a request, with the time and event index of each piece. */
interface Piece {
  t: number;
  index: number;
  b: Buffer;
}

export interface KubeUpgrade {
  /** the upstream's status line, e.g. "HTTP/1.1 101 Switching Protocols" */
  statusLine: string;
  switched: boolean;
  /** "websocket", "SPDY/3.1" … */
  upgrade?: string;
  /** the WebSocket subprotocol the server chose */
  subprotocol?: string;
  /** exec and attach over WebSocket: what each side said */
  items: StreamItem[];
  /** bytes after the HTTP answer, each way */
  bytesIn: number;
  bytesOut: number;
  /** the answer's body when the server did not switch */
  body?: Buffer;
  /** bytes of an unfinished frame at the end, or why the frames could not be read */
  problem?: string;
}

export interface KubeRequest {
  t: number;
  method: string;
  url: string;
  info: RequestInfo;
  decision: DecisionEvent;
  /** the request body as sent */
  sent: Buffer;
  /** the response body as the agent received it (after masking) */
  received: Buffer;
  upgrade?: KubeUpgrade;
  /** forwarded while a later request was too, before any bytes: its bytes are shown with the later one */
  overlapped?: boolean;
}

export type KubeSessionItem =
  | { kind: 'request'; request: KubeRequest }
  | { kind: 'event'; event: RecordedEvent }
  /** bytes before any forwarded request: nothing to show them with */
  | { kind: 'stray'; event: DataEvent };

interface OpenRequest {
  request: KubeRequest;
  sent: Piece[];
  received: Piece[];
  /** held for approval, and its outcome seen */
  settled?: boolean;
}

/** The recording's events as requests with their bytes, in order; other events as they are. */
export function decodeKubernetesSession(events: readonly RecordedEvent[]): KubeSessionItem[] {
  const items: KubeSessionItem[] = [];
  const waitsForApproval = ticketed(events);
  const forwardable: OpenRequest[] = [];
  /** requests that may have been forwarded, in the order they became so: bytes go to the last */
  let receiving: OpenRequest[] = [];
  /** requests that became so since bytes last arrived */
  let waiting: OpenRequest[] = [];
  const receive = (o: OpenRequest) => {
    receiving = [...receiving.filter((x) => x !== o), o];
    waiting = [...waiting.filter((x) => x !== o), o];
  };

  events.forEach((e, index) => {
    if (e.k === 'decision') {
      const o = openRequest(e);
      items.push({ kind: 'request', request: o.request });
      if (e.action === 'deny') return;
      forwardable.push(o);
      if (!waitsForApproval.has(index)) receive(o);
    } else if (e.k === 'in' || e.k === 'out') {
      const latest = receiving.at(-1);
      if (!latest) return void items.push({ kind: 'stray', event: e });
      for (const w of waiting) if (w !== latest) w.request.overlapped = true;
      waiting = [];
      (e.k === 'in' ? latest.sent : latest.received).push({ t: e.t, index, b: Buffer.from(e.b.buffer, e.b.byteOffset, e.b.byteLength) });
    } else if (e.k !== 'start') {
      items.push({ kind: 'event', event: e });
      if (e.k !== 'approval') return;
      const held = [...forwardable].reverse().find((o) => o.request.decision.action === 'approve' && !o.settled && o.request.decision.command === e.command);
      if (!held) return;
      held.settled = true;
      // rejected or timed out: refused by interlock, no bytes
      if (e.outcome === 'approved') receive(held);
    }
  });
  for (const o of forwardable) finish(o);
  return items;
}

/**
 * The approve decisions (by event index) whose outcome is recorded later: they waited for a human.
 * An approval answers the latest unanswered decision on the same request line before it.
 */
function ticketed(events: readonly RecordedEvent[]): Set<number> {
  const unanswered = new Map<string, number[]>();
  const answered = new Set<number>();
  events.forEach((e, index) => {
    if (e.k === 'decision' && e.action === 'approve') unanswered.set(e.command, [...(unanswered.get(e.command) ?? []), index]);
    else if (e.k === 'approval') {
      const decision = unanswered.get(e.command)?.pop();
      if (decision !== undefined) answered.add(decision);
    }
  });
  return answered;
}

function openRequest(e: DecisionEvent): OpenRequest {
  const space = e.command.indexOf(' ');
  const method = space < 0 ? e.command : e.command.slice(0, space);
  const url = space < 0 ? '' : e.command.slice(space + 1);
  const request: KubeRequest = { t: e.t, method, url, info: requestInfo(method, url), decision: e, sent: Buffer.alloc(0), received: Buffer.alloc(0) };
  return { request, sent: [], received: [] };
}

function finish(o: OpenRequest): void {
  const r = o.request;
  const first = o.received[0]?.b;
  if (isConnect(r.info) && first && /^HTTP\/1\.[01] /.test(first.subarray(0, 9).toString('latin1'))) {
    r.upgrade = readUpgrade(r.info, o.sent, o.received);
    return;
  }
  r.sent = join(o.sent);
  r.received = join(o.received);
}

function isConnect(info: RequestInfo): boolean {
  return info.isResourceRequest && info.apiGroup === '' && info.resource === 'pods' && ['exec', 'attach', 'portforward'].includes(info.subresource);
}

/** The upstream's HTTP answer, then (once switched) the stream. */
function readUpgrade(info: RequestInfo, sent: Piece[], received: Piece[]): KubeUpgrade {
  const all = join(received);
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) return { statusLine: firstLine(all), switched: false, items: [], bytesIn: 0, bytesOut: 0, problem: 'the HTTP answer is incomplete' };
  const lines = all.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  const statusLine = lines[0]!;
  const switched = / 101( |$)/.test(statusLine);
  const upgrade = headers.get('upgrade');
  const subprotocol = headers.get('sec-websocket-protocol');
  const base: KubeUpgrade = { statusLine, switched, ...(upgrade ? { upgrade } : {}), ...(subprotocol ? { subprotocol } : {}), items: [], bytesIn: total(sent), bytesOut: all.length - end - 4 };
  if (!switched) return { ...base, body: all.subarray(end + 4) };
  const outPieces = afterHeader(received, end + 4);
  if (upgrade?.toLowerCase() !== 'websocket') return { ...base, problem: `${upgrade ?? 'the upgraded'} stream is not decoded` };
  const stream = info.subresource === 'portforward' ? undefined : new ChannelDecoder(subprotocol?.startsWith('base64.') === true);
  const inSide = readSide(sent, 'in', stream);
  const outSide = readSide(outPieces, 'out', stream);
  const items = [...inSide.items, ...outSide.items].sort((a, b) => a.index - b.index).map((x) => x.item);
  const problems = [inSide.problem, outSide.problem].filter((p): p is string => p !== undefined);
  return { ...base, items, ...(problems.length ? { problem: problems.join('; ') } : {}) };
}

/** One direction's frames as items; portforward (no channel decoder) as byte counts per message. */
function readSide(pieces: Piece[], dir: 'in' | 'out', channels: ChannelDecoder | undefined): { items: { index: number; item: StreamItem }[]; problem?: string } {
  const reader = new WsMessageReader();
  const items: { index: number; item: StreamItem }[] = [];
  for (const p of pieces) {
    for (const m of reader.push(p.b)) {
      const decoded = channels
        ? channels.items(m, p.t, dir)
        : m.opcode === WS_CLOSE
          ? [{ t: p.t, dir, kind: 'close' as const, ...closeReason(m.payload) }]
          : m.opcode === WS_BINARY && m.payload.length
            ? [{ t: p.t, dir, kind: 'other' as const, channel: m.payload[0]!, bytes: m.payload.length - 1 }]
            : [];
      for (const item of decoded) items.push({ index: p.index, item });
    }
  }
  const who = dir === 'in' ? 'the agent' : 'the server';
  if (reader.error !== undefined) return { items, problem: `frames from ${who}: ${reader.error}` };
  if (reader.pending) return { items, problem: `frames from ${who}: ${reader.pending} bytes of an unfinished message at the end` };
  return { items };
}

/** The pieces from byte `offset` of their concatenation on. */
function afterHeader(pieces: Piece[], offset: number): Piece[] {
  const out: Piece[] = [];
  let skip = offset;
  for (const p of pieces) {
    if (skip >= p.b.length) {
      skip -= p.b.length;
      continue;
    }
    out.push({ ...p, b: p.b.subarray(skip) });
    skip = 0;
  }
  return out;
}

function join(pieces: Piece[]): Buffer {
  return pieces.length === 1 ? pieces[0]!.b : Buffer.concat(pieces.map((p) => p.b));
}

function total(pieces: Piece[]): number {
  return pieces.reduce((n, p) => n + p.b.length, 0);
}

function firstLine(b: Buffer): string {
  const s = b.subarray(0, 200).toString('latin1');
  const nl = s.indexOf('\r\n');
  return nl < 0 ? s : s.slice(0, nl);
}

// ---------------------------------------------------------------- bodies

/** Consecutive top-level JSON values (a body, or a watch stream's events); undefined if the text is not that. */
export function splitJsonValues(text: string): { values: unknown[]; unfinished: boolean } | undefined {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (depth === 0) {
      if (c === '{' || c === '[') {
        start = i;
        depth = 1;
      } else if (!/\s/.test(c!)) return undefined;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (--depth > 0) continue;
      try {
        values.push(JSON.parse(text.slice(start, i + 1)));
      } catch {
        return undefined;
      }
    }
  }
  return values.length || depth > 0 ? { values, unfinished: depth > 0 } : undefined;
}

/** "PodList, 3 items", "3 watch events (ADDED 2, DELETED 1)", "text, 12 lines" … */
export function describeBody(body: Buffer): string {
  const text = body.toString('utf8');
  const json = splitJsonValues(text);
  if (json) {
    const unfinished = json.unfinished ? ', the last one unfinished' : '';
    if (json.values.length === 1 && !json.unfinished) return describeObject(json.values[0]);
    if (json.values.length > 0 && json.values.every(isWatchEvent)) return `${plural(json.values.length, 'watch event')} (${watchTypes(json.values as WatchEvent[])})${unfinished}`;
    return `${plural(json.values.length, 'JSON document')}${unfinished}`;
  }
  if (isText(text)) return `text, ${plural(text.split('\n').length - (text.endsWith('\n') ? 1 : 0), 'line')}`;
  return 'binary';
}

interface WatchEvent {
  type: string;
  object: unknown;
}

function isWatchEvent(v: unknown): v is WatchEvent {
  return typeof v === 'object' && v !== null && typeof (v as WatchEvent).type === 'string' && 'object' in v;
}

function watchTypes(events: WatchEvent[]): string {
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
  return [...counts].map(([type, n]) => `${type} ${n}`).join(', ');
}

/** An API object by its kind: lists by their length, a Status by its outcome, an object by its name. */
function describeObject(v: unknown): string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'JSON';
  const o = v as Record<string, unknown>;
  const kind = typeof o.kind === 'string' ? o.kind : 'JSON object';
  if (kind === 'Status') {
    const reason = typeof o.reason === 'string' ? ` (${o.reason})` : '';
    return `Status ${String(o.status ?? '')}${reason}${typeof o.message === 'string' ? `: ${o.message}` : ''}`;
  }
  for (const [field, noun] of [['items', 'item'], ['rows', 'row'], ['groups', 'group'], ['resources', 'resource']] as const) {
    if (Array.isArray(o[field])) return `${kind}, ${plural((o[field] as unknown[]).length, noun)}`;
  }
  const name = (o.metadata as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? `${kind} ${JSON.stringify(name)}` : kind;
}

/** A request body on one line: compact JSON, or the text itself. */
function bodyPreview(body: Buffer): string | undefined {
  const text = body.toString('utf8');
  const json = splitJsonValues(text);
  if (json && json.values.length === 1 && !json.unfinished) return shorten(JSON.stringify(json.values[0]));
  return isText(text) ? shorten(oneLine(text.trim())) : undefined;
}

function isText(s: string): boolean {
  // control characters are text (terminal colours, bells): they are escaped when shown
  return !/[\ufffd\x00]/.test(s);
}

// ---------------------------------------------------------------- rendering

export interface KubernetesReplayOptions {
  /** print request and response bodies in full, under their request */
  bodies?: boolean;
}

const MAX_PREVIEW = 200;
/** where a request's second line starts: under the action */
const INDENT = ' '.repeat(9);

export function renderKubernetesReplay(rec: Recording, opts: KubernetesReplayOptions = {}): string {
  const blocks = [headerBlock(rec)];
  for (const item of decodeKubernetesSession(rec.events)) blocks.push(renderItem(item, opts));
  const end = footer(rec);
  if (end) blocks.push(end);
  return blocks.filter(Boolean).join('\n');
}

function renderItem(item: KubeSessionItem, opts: KubernetesReplayOptions): string {
  switch (item.kind) {
    case 'request':
      return renderRequest(item.request, opts);
    case 'stray':
      return `${stamp(item.event.t)}  ${item.event.k === 'in' ? '→' : '←'} ${plural(item.event.b.length, 'byte')} before any forwarded request\n`;
    case 'event':
      return renderEvent(item.event);
  }
}

/** `+0.123s  allow  GET /api/v1/namespaces/shop/pods  (list pods in shop)`, then what went each way. */
function renderRequest(r: KubeRequest, opts: KubernetesReplayOptions): string {
  const d = r.decision;
  const what = describeRequest(r.info);
  const lines = [`${stamp(r.t)}  ${d.action.padEnd(5)}  ${oneLine(d.command)}${what ? `  (${oneLine(what)})` : ''}`];
  if (d.action !== 'allow') lines.push(`${INDENT}${d.rule !== undefined ? `rule ${oneLine(d.rule)}` : 'no rule'}${d.message !== undefined ? `: ${oneLine(d.message)}` : ''}`);
  if (r.sent.length) lines.push(`${INDENT}→ ${sizeAnd(r.sent, bodyPreview(r.sent))}`);
  if (r.received.length) lines.push(`${INDENT}← ${sizeAnd(r.received, describeBody(r.received))}`);
  if (r.overlapped && !r.received.length) lines.push(`${INDENT}← no bytes of its own: requests overlapped, and their bytes are shown with the latest`);
  if (opts.bodies) lines.push(...fullBody('→', r.sent), ...fullBody('←', r.received));
  if (r.upgrade) lines.push(...renderUpgrade(r.upgrade, opts));
  return lines.join('\n') + '\n';
}

function renderUpgrade(u: KubeUpgrade, opts: KubernetesReplayOptions): string[] {
  const how = [u.upgrade === 'websocket' ? 'WebSocket' : u.upgrade, u.subprotocol].filter(Boolean).join(' ');
  const lines = [`${INDENT}← ${oneLine(u.statusLine)}${how ? ` (${oneLine(how)})` : ''}`];
  if (u.body?.length) lines.push(`${INDENT}← ${sizeAnd(u.body, describeBody(u.body))}`, ...(opts.bodies ? fullBody('←', u.body) : []));
  for (const item of u.items) lines.push(renderStreamItem(item));
  if (u.switched) lines.push(`${INDENT}stream: ${plural(u.bytesIn, 'byte')} from the agent, ${plural(u.bytesOut, 'byte')} to it`);
  if (u.problem !== undefined) lines.push(`${INDENT}!! ${oneLine(u.problem)}`);
  return lines;
}

/** One message of an exec or attach stream, under its request: `+0.130s    stdout  total 4`. */
function renderStreamItem(item: StreamItem): string {
  const arrow = item.dir === 'in' ? '→' : '←';
  const at = `${stamp(item.t)}    `;
  const line = (label: string, text: string) => `${at}${label.padEnd(7)} ${text}`;
  switch (item.kind) {
    case 'data': {
      const pad = ' '.repeat(at.length + 8);
      return line(item.channel, streamText(item.text).join(`\n${pad}`));
    }
    case 'status': {
      const code = item.exitCode !== undefined ? `exit ${item.exitCode}` : item.status;
      return line('status', `${code}${item.message !== undefined && item.exitCode !== 0 ? `: ${oneLine(item.message)}` : ''}`);
    }
    case 'resize':
      return line('resize', `${item.width}x${item.height}`);
    case 'close-channel':
      return line('close', `${arrow} ${item.channel} closed`);
    case 'close':
      return line('close', `${arrow} ${item.code ?? 'no code'}${item.reason ? ` ${oneLine(item.reason)}` : ''}`);
    case 'other':
      return line(`ch ${item.channel}`, `${arrow} ${plural(item.bytes, 'byte')}`);
    case 'problem':
      return line('!!', `${arrow} ${oneLine(item.message)}`);
  }
}

/** Terminal text as lines: CRLF read as a line end, other control characters escaped, no empty last line. */
function streamText(text: string): string[] {
  const lines = text.replace(/\r\n/g, '\n').split('\n').map((l) => escapeControls(l, true));
  if (lines.length > 1 && lines.at(-1) === '') lines.pop();
  return lines;
}

function renderEvent(e: RecordedEvent): string {
  switch (e.k) {
    case 'truncated':
      return `${stamp(e.t)}  !! recording truncated at ${plural(e.bytes, 'byte')}: nothing after this point was recorded\n`;
    case 'masked':
      return `${stamp(e.t)}  masked ${Object.entries(e.counts).map(([rule, n]) => `${oneLine(rule)} ${n}`).join(', ')}\n`;
    case 'approval':
      return `${stamp(e.t)}  approval ${e.outcome}${e.by !== undefined ? ` by ${oneLine(e.by)}` : ''}: ${oneLine(e.command)}\n`;
    case 'end':
      return ''; // the footer
    default: {
      const { t, ...rest } = e;
      return `${stamp(t)}  ${oneLine(JSON.stringify(rest))}\n`;
    }
  }
}

/** `list pods in shop`, `get deployments.apps "web" in shop`, `exec in pod "web-0" in shop: ls -l` */
export function describeRequest(info: RequestInfo): string {
  if (info.invalid !== undefined) return `invalid: ${info.invalid}`;
  if (!info.isResourceRequest) return '';
  // a namespace object's own namespace is itself: "get namespaces "shop"" says it all
  const where = info.namespace && info.resource !== 'namespaces' ? ` in ${info.namespace}` : '';
  const container = info.container !== undefined ? ` (container ${info.container})` : '';
  if (isConnect(info)) {
    const pod = `pod ${JSON.stringify(info.name)}${container}${where}`;
    if (info.subresource === 'exec') return `exec in ${pod}: ${info.command?.length ? shellJoin(info.command) : '(no command)'}`;
    if (info.subresource === 'attach') return `attach to ${pod}`;
    return `port-forward to ${pod}${info.ports?.length ? `, ports ${info.ports.join(', ')}` : ''}`;
  }
  const resource = info.apiGroup ? `${info.resource}.${info.apiGroup}` : info.resource;
  const object = `${resource}${info.subresource ? `/${info.subresource}` : ''}${info.name ? ` ${JSON.stringify(info.name)}` : ''}`;
  return `${info.verb} ${object}${where}`;
}

function sizeAnd(body: Buffer, what: string | undefined): string {
  return `${plural(body.length, 'byte')}${what ? `: ${oneLine(what)}` : ''}`;
}

function fullBody(arrow: string, body: Buffer): string[] {
  if (!body.length) return [];
  const text = body.toString('utf8');
  if (!isText(text)) return [`${INDENT}${arrow} (binary, not shown)`];
  return text.replace(/\n$/, '').split('\n').map((l) => `${INDENT}${arrow} | ${oneLine(l)}`);
}

function headerBlock(rec: Recording): string {
  const out: string[] = [];
  if (rec.problems.length > 0) {
    out.push('# !! INTEGRITY PROBLEMS: only what precedes the first problem verified and is shown');
    for (const p of rec.problems) out.push(`# !! ${oneLine(p)}`);
  }
  const s: StartEvent | undefined = rec.start;
  out.push(`# session ${oneLine(s?.session ?? rec.id)}`);
  if (!s) return [...out, '# (the start event is missing)', ''].join('\n');
  out.push(`# protocol ${s.protocol}, recorded on ${oneLine(s.node)}`);
  if (s.workload !== undefined || s.groups?.length) out.push(`# workload ${oneLine(s.workload ?? '(none)')}${s.groups?.length ? ` (groups: ${oneLine(s.groups.join(', '))})` : ''}`);
  if (s.target !== undefined || s.dst !== undefined) out.push(`# target ${oneLine(s.target ?? '(none)')}${s.dst ? ` (dialled ${oneLine(s.dst)})` : ''}`);
  const agent = [s.pid !== undefined ? `pid ${s.pid}` : '', s.uid !== undefined ? `uid ${s.uid}` : '', s.comm !== undefined ? `comm ${oneLine(s.comm)}` : ''].filter(Boolean);
  if (agent.length || s.cmdline?.length) out.push(`# agent ${agent.join(', ') || '(unknown)'}${s.cmdline?.length ? `: ${oneLine(shellJoin(s.cmdline))}` : ''}`);
  out.push(`# started ${Number.isFinite(s.at) ? new Date(s.at).toISOString() : String(s.at)}`);
  return out.join('\n') + '\n';
}

function footer(rec: Recording): string {
  const end: EndEvent | undefined = rec.end ?? rec.events.find((e): e is EndEvent => e.k === 'end');
  const out: string[] = [];
  if (end) out.push(`# ${offset(end.t)} end: ${oneLine(end.reason)}; ${plural(end.bytesIn, 'byte')} in, ${plural(end.bytesOut, 'byte')} out, ${plural(end.commands, 'request')}`);
  if (!rec.sealed) out.push('# recording incomplete: the session did not end cleanly (no seal)');
  return out.length ? out.join('\n') + '\n' : '';
}

// ---------------------------------------------------------------- small helpers

/** Milliseconds since the session started, as +1.234s. */
function offset(t: number): string {
  return `+${(t / 1000).toFixed(3)}s`;
}

function stamp(t: number): string {
  return offset(t);
}

function oneLine(s: string): string {
  return escapeControls(s, false);
}

/** Control characters escaped (tabs kept if asked): recorded text never moves the reader's cursor or colours the terminal. */
function escapeControls(s: string, keepTabs: boolean): string {
  return s.replace(/[\x00-\x1f\x7f\x9b]/g, (c) => {
    if (c === '\t') return keepTabs ? c : '\\t';
    return c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0');
  });
}

function shorten(s: string): string {
  return s.length > MAX_PREVIEW ? `${s.slice(0, MAX_PREVIEW - 1)}…` : s;
}

/** A command line as a shell would need it typed. */
function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
