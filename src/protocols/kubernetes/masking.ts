/**
 * Masks Kubernetes API responses before they reach the agent. Pure; no I/O.
 *
 * - Secrets: every value of `data` / `stringData` is replaced, whatever the policy says (a Secret
 *   is sensitive by definition). Keys stay, and `data` values stay valid base64, so clients that
 *   decode them (kubectl describe, -o jsonpath with base64 -d) keep working.
 * - Everything else: the policy's content detectors run over string values (ConfigMap data, env
 *   values, args, annotations, CRD fields, status messages, table cells), replacing the detected
 *   substrings as the PostgreSQL masker does. Identity fields (metadata.name, uid, resourceVersion…)
 *   are left alone: masking them would break every later request that names the object.
 * - JSON held inside annotations (kubectl's last-applied-configuration is the whole applied object,
 *   Secrets included) is parsed, masked like a response and re-serialised.
 *
 * Only JSON (and plain-text logs) can be masked: protobuf and YAML answers are refused, and
 * `negotiateJson` rewrites a request's Accept header so the server answers JSON in the first place.
 */
import type { MaskingRuleDef } from '../../config/types.js';
import { getDetector } from '../../masking/detectors.js';
import { makeStrategy } from '../../masking/strategies.js';
import { maskText, type Scanner } from '../../masking/apply.js';
import { bump, type MaskCounts } from '../../masking/counts.js';

/** What a Secret value becomes (stringData); `data` holds its base64. */
export const SECRET_MARKER = '[interlock: redacted]';
export const SECRET_MARKER_BASE64 = Buffer.from(SECRET_MARKER, 'utf8').toString('base64');

/** Default bound on one watch event (or log line); the whole line must be held to mask it. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

/** Deeper than any real object; bounds the recursion on hostile or broken input. */
const MAX_DEPTH = 512;

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** metadata fields that identify or version an object: later requests name the object by them */
const IDENTITY_FIELDS: ReadonlySet<string> = new Set([
  'name',
  'generateName',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'selfLink',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'continue',
  'remainingItemCount',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

const NEWLINE = Buffer.from('\n');

type JsonObject = Record<string, unknown>;

export type MaskBodyResult = { body: Buffer; counts: MaskCounts } | { refuse: string };

/** The response cannot be masked; the proxy must not forward it (or must end the stream). */
export class UnmaskableResponseError extends Error {
  override readonly name = 'UnmaskableResponseError';
}

export interface KubeResponseMaskerOptions {
  /** the policy's masking rules; only their detectors apply (there are no columns here) */
  detectors: readonly MaskingRuleDef[];
  /** key for the `hash` strategy */
  hashKey: Buffer;
}

export class KubeResponseMasker {
  private readonly scanners: readonly Scanner[];

  constructor(opts: KubeResponseMaskerOptions) {
    this.scanners = scannersOf(opts.detectors, opts.hashKey);
  }

  /**
   * The masked value and what was masked. The input is not modified: changed objects and arrays
   * are copies, unchanged subtrees are shared, and an unchanged input comes back as is (`value === obj`).
   * Throws UnmaskableResponseError for values nested beyond any real object.
   */
  maskObject(obj: unknown): { value: unknown; counts: MaskCounts } {
    const counts: MaskCounts = {};
    return { value: this.walk(obj, undefined, 0, counts), counts };
  }

  /** A whole response body. Unchanged bodies come back as the same Buffer. */
  maskBody(contentType: string, body: Buffer): MaskBodyResult {
    if (body.length === 0) return { body, counts: {} };
    const media = parseMediaType(contentType);
    try {
      if (isJsonMedia(media.essence)) {
        return media.params.get('stream') === 'watch' ? this.maskWatchBody(body) : this.maskJsonBody(body);
      }
      if (media.essence === 'text/plain') return this.maskTextBody(body);
    } catch (err) {
      if (err instanceof UnmaskableResponseError) return { refuse: err.message };
      throw err;
    }
    const got = media.essence === '' ? 'no content type' : media.essence;
    return { refuse: `interlock: only JSON responses can be masked; the server answered with ${got}` };
  }

  /** One line of text (a log line): undefined when no detector found anything. */
  maskPlainText(text: string, counts: MaskCounts): string | undefined {
    return this.scan(text, undefined, counts);
  }

  private maskJsonBody(body: Buffer): MaskBodyResult {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return { refuse: 'interlock: the response is not valid JSON and cannot be masked' };
    }
    const { value, counts } = this.maskObject(parsed);
    if (value === parsed) return { body, counts };
    const trailer = body[body.length - 1] === 0x0a ? '\n' : '';
    return { body: Buffer.from(JSON.stringify(value) + trailer, 'utf8'), counts };
  }

  private maskWatchBody(body: Buffer): MaskBodyResult {
    const stream = new WatchStreamMasker(this);
    const out = [...stream.push(body), ...stream.end()];
    return { body: Buffer.concat(out), counts: stream.counts };
  }

  private maskTextBody(body: Buffer): MaskBodyResult {
    const counts: MaskCounts = {};
    const masked = this.scan(body.toString('utf8'), undefined, counts);
    return { body: masked === undefined ? body : Buffer.from(masked, 'utf8'), counts };
  }

  // -------------------------------------------------------------------------------------------
  // the walk: each step returns its input when nothing changed, so callers can tell cheaply

  private walk(v: unknown, label: string | undefined, depth: number, counts: MaskCounts): unknown {
    if (typeof v === 'string') return this.scan(v, label, counts) ?? v;
    if (typeof v === 'number') return this.number(v, label, counts);
    if (typeof v !== 'object' || v === null) return v;
    if (depth > MAX_DEPTH) throw new UnmaskableResponseError(`interlock: the response nests deeper than ${MAX_DEPTH} levels and cannot be masked`);
    if (Array.isArray(v)) return mapArray(v, (item) => this.walk(item, undefined, depth + 1, counts));
    return this.object(v as JsonObject, false, depth, counts);
  }

  /** An API object, a list, a table, an event or any nested JSON object. */
  private object(o: JsonObject, knownSecret: boolean, depth: number, counts: MaskCounts): JsonObject {
    const secret = knownSecret || isSecret(o);
    const table = isTable(o);
    return mapObject(o, (key, child) => {
      if (secret && (key === 'data' || key === 'stringData')) return redactSecretMap(child, key === 'data', counts);
      if (key === 'metadata' && isObject(child)) return this.metadata(child, depth + 1, counts);
      // typed lists leave kind off their items: a SecretList's items are Secrets by position
      if (key === 'items' && o.kind === 'SecretList' && Array.isArray(child)) {
        return mapArray(child, (item) => (isObject(item) ? this.object(item, true, depth + 2, counts) : this.walk(item, undefined, depth + 2, counts)));
      }
      if (key === 'rows' && table && Array.isArray(child)) return this.tableRows(child, nameColumns(o.columnDefinitions), depth + 1, counts);
      if (key === 'binaryData' && isObject(child)) return this.binaryMap(child, counts);
      return this.walk(child, labelOf(o, key), depth + 1, counts);
    });
  }

  private metadata(m: JsonObject, depth: number, counts: MaskCounts): JsonObject {
    return mapObject(m, (key, child) => {
      if (IDENTITY_FIELDS.has(key)) return child;
      if (key === 'annotations' && isObject(child)) return this.annotations(child, depth + 1, counts);
      return this.walk(child, key, depth + 1, counts);
    });
  }

  private annotations(a: JsonObject, depth: number, counts: MaskCounts): JsonObject {
    return mapObject(a, (key, value) => {
      if (typeof value !== 'string') return this.walk(value, key, depth + 1, counts);
      if (key === LAST_APPLIED || looksLikeJsonDocument(value)) return this.embeddedJson(key, value, depth + 1, counts);
      return this.scan(value, key, counts) ?? value;
    });
  }

  /** JSON text inside a string: masked as a document so Secrets in it are recognised as Secrets. */
  private embeddedJson(key: string, text: string, depth: number, counts: MaskCounts): string {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      if (key !== LAST_APPLIED) return this.scan(text, key, counts) ?? text;
      // it should be the applied object; unreadable, it may still hold one
      bump(counts, `annotation:${key}`);
      return SECRET_MARKER;
    }
    const masked = this.walk(parsed, undefined, depth + 1, counts);
    if (masked === parsed) return text;
    return JSON.stringify(masked) + (text.endsWith('\n') ? '\n' : '');
  }

  /**
   * meta.k8s.io Table rows: `object` is a PartialObjectMetadata or the full object (includeObject),
   * masked like any object; cells are scanned too, except the name column (an identity).
   */
  private tableRows(rows: unknown[], nameCells: ReadonlySet<number>, depth: number, counts: MaskCounts): unknown[] {
    return mapArray(rows, (row) => {
      if (!isObject(row)) return this.walk(row, undefined, depth + 1, counts);
      return mapObject(row, (key, child) => {
        if (key === 'cells' && Array.isArray(child)) {
          return mapArray(child, (cell, i) => (nameCells.has(i) ? cell : this.walk(cell, undefined, depth + 3, counts)));
        }
        return this.walk(child, key, depth + 2, counts);
      });
    });
  }

  /** ConfigMap binaryData: base64 values, scanned decoded. */
  private binaryMap(map: JsonObject, counts: MaskCounts): JsonObject {
    return mapObject(map, (key, value) => {
      if (typeof value !== 'string') return value;
      const bytes = Buffer.from(value, 'base64');
      const text = utf8OrNull(bytes);
      if (text !== null) {
        const masked = this.scan(text, key, counts);
        return masked === undefined ? value : Buffer.from(masked, 'utf8').toString('base64');
      }
      // binary content cannot take a splice safely (lengths, checksums): a hit replaces all of it
      return this.scan(bytes.toString('latin1'), key, counts) === undefined ? value : SECRET_MARKER_BASE64;
    });
  }

  /** Card numbers stored as JSON numbers: a hit turns the number into the masked string. */
  private number(n: number, label: string | undefined, counts: MaskCounts): unknown {
    if (!Number.isInteger(n) || Math.abs(n) < 1e7) return n; // shorter than anything a detector finds
    return this.scan(String(n), label, counts) ?? n;
  }

  /**
   * Detectors over one string value. With a label (the key it sits under, or an env var's name),
   * the value is scanned framed as `"label": "value"` so that detectors needing a label see it:
   * a 40-character AWS secret under AWS_SECRET_ACCESS_KEY, a GCP private_key_id. The quotes keep
   * hits from growing into the label; if one still reaches outside the value (the label itself
   * looks sensitive, a PEM block without its END line), the value is scanned on its own.
   */
  private scan(text: string, label: string | undefined, counts: MaskCounts): string | undefined {
    if (this.scanners.length === 0 || text.length === 0) return undefined;
    if (label === undefined) return maskText(text, this.scanners, false, counts);
    const head = `"${label}": "`;
    const found: MaskCounts = {};
    const framed = maskText(`${head}${text}"`, this.scanners, false, found);
    if (framed === undefined) return undefined;
    if (framed.length > head.length && framed.startsWith(head) && framed.endsWith('"')) {
      for (const [k, n] of Object.entries(found)) counts[k] = (counts[k] ?? 0) + n;
      return framed.slice(head.length, -1);
    }
    return maskText(text, this.scanners, false, counts);
  }
}

// ---------------------------------------------------------------------------------------------
// watch streams and followed logs: newline-delimited, arriving in arbitrary chunks

/** Splits a byte stream into lines; holds at most one partial line, bounded. */
class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly maxLineBytes: number,
    private readonly what: string,
  ) {}

  /** Complete lines, without their newline. 0x0a never occurs inside a UTF-8 sequence. */
  push(chunk: Buffer): Buffer[] {
    const lines: Buffer[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.ensureRoom(nl - start);
      const tail = chunk.subarray(start, nl);
      lines.push(this.pending.length ? Buffer.concat([...this.pending, tail]) : Buffer.from(tail));
      this.pending = [];
      this.pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.ensureRoom(chunk.length - start);
      this.pending.push(Buffer.from(chunk.subarray(start))); // a copy: the caller may reuse its chunk
      this.pendingBytes += chunk.length - start;
    }
    return lines;
  }

  /** The unterminated last line, if any. */
  end(): Buffer | null {
    if (this.pending.length === 0) return null;
    const rest = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    return rest;
  }

  private ensureRoom(more: number): void {
    if (this.pendingBytes + more > this.maxLineBytes) {
      throw new UnmaskableResponseError(`interlock: a ${this.what} is longer than ${this.maxLineBytes} bytes and cannot be masked`);
    }
  }
}

abstract class LineStreamMasker {
  /** accumulated over the whole stream */
  readonly counts: MaskCounts = {};
  private readonly lines: LineSplitter;

  protected constructor(maxLineBytes: number, what: string) {
    this.lines = new LineSplitter(maxLineBytes, what);
  }

  /** The masked complete lines in this chunk, each with its newline. Throws UnmaskableResponseError. */
  push(chunk: Buffer): Buffer[] {
    return this.lines.push(chunk).map((line) => Buffer.concat([this.maskLine(line), NEWLINE]));
  }

  /** At the end of the stream: the masked unterminated last line, if any (without a newline). */
  end(): Buffer[] {
    const rest = this.lines.end();
    return rest === null ? [] : [this.maskLine(rest)];
  }

  protected abstract maskLine(line: Buffer): Buffer;

  protected add(counts: MaskCounts): void {
    for (const [k, n] of Object.entries(counts)) this.counts[k] = (this.counts[k] ?? 0) + n;
  }
}

/**
 * A JSON watch stream (`application/json;stream=watch`): one `{"type": …, "object": …}` event per
 * line. Every event's object is masked, BOOKMARK and ERROR ones included (an ERROR's Status message
 * may name a user); unchanged events are forwarded byte for byte.
 */
export class WatchStreamMasker extends LineStreamMasker {
  constructor(
    private readonly masker: KubeResponseMasker,
    opts: { maxLineBytes?: number } = {},
  ) {
    super(opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, 'watch event');
  }

  protected maskLine(line: Buffer): Buffer {
    const text = line.toString('utf8');
    if (text.trim() === '') return line;
    let event: unknown;
    try {
      event = JSON.parse(text);
    } catch {
      throw new UnmaskableResponseError('interlock: a watch event is not valid JSON and cannot be masked');
    }
    const { value, counts } = this.masker.maskObject(event);
    this.add(counts);
    return value === event ? line : Buffer.from(JSON.stringify(value), 'utf8');
  }
}

/** Followed container logs (`pods/log?follow=true`, text/plain): detectors over each line. */
export class LogStreamMasker extends LineStreamMasker {
  constructor(
    private readonly masker: KubeResponseMasker,
    opts: { maxLineBytes?: number } = {},
  ) {
    super(opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, 'log line');
  }

  protected maskLine(line: Buffer): Buffer {
    const counts: MaskCounts = {};
    const masked = this.masker.maskPlainText(line.toString('utf8'), counts);
    this.add(counts);
    return masked === undefined ? line : Buffer.from(masked, 'utf8');
  }
}

// ---------------------------------------------------------------------------------------------
// content negotiation

/**
 * An Accept header the server will answer with JSON: Kubernetes protobuf entries become the same
 * entry in JSON (keeping `as=Table;v=…;g=…` and `stream=watch`, so the answer keeps its shape),
 * JSON entries stay, anything else (YAML, other protobufs, wildcards) is dropped. Nothing left: JSON.
 */
export function negotiateJson(accept: string | undefined): string {
  const kept: string[] = [];
  for (const entry of (accept ?? '').split(',')) {
    const media = parseMediaType(entry);
    let essence: string;
    if (isJsonMedia(media.essence)) essence = media.essence;
    else if (media.essence === 'application/vnd.kubernetes.protobuf') essence = 'application/json';
    else continue;
    const rewritten = [essence, ...media.rawParams].join(';');
    if (!kept.some((k) => k.toLowerCase() === rewritten.toLowerCase())) kept.push(rewritten);
  }
  return kept.length ? kept.join(',') : 'application/json';
}

interface MediaType {
  /** lower-cased type/subtype; '' when absent */
  essence: string;
  /** parameter names lower-cased, values as given */
  params: Map<string, string>;
  /** parameters as written ("as=Table"), whitespace trimmed */
  rawParams: string[];
}

function parseMediaType(value: string): MediaType {
  const [essence, ...rest] = value.split(';');
  const params = new Map<string, string>();
  const rawParams: string[] = [];
  for (const part of rest) {
    const p = part.trim();
    if (p === '') continue;
    rawParams.push(p);
    const eq = p.indexOf('=');
    if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
  }
  return { essence: essence.trim().toLowerCase(), params, rawParams };
}

function isJsonMedia(essence: string): boolean {
  return essence === 'application/json' || (essence.startsWith('application/') && essence.endsWith('+json'));
}

// ---------------------------------------------------------------------------------------------
// helpers

function scannersOf(rules: readonly MaskingRuleDef[], hashKey: Buffer): Scanner[] {
  // Rules scoped to SQL columns still apply everywhere: there are no columns here, and masking
  // more is the safe direction. The first rule naming a detector decides its strategy.
  const scanners: Scanner[] = [];
  const seen = new Set<string>();
  for (const rule of rules) {
    if (!rule.detectors?.length) continue;
    const strategy = makeStrategy(rule.strategy, hashKey);
    for (const name of rule.detectors) {
      if (seen.has(name)) continue;
      seen.add(name);
      scanners.push({ detector: getDetector(name), strategy, countKey: name });
    }
  }
  return scanners;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** kind Secret; or, kind left off (list items, some table rows), a typed object with data. */
function isSecret(o: JsonObject): boolean {
  if (o.kind === 'Secret') return true;
  return o.kind === undefined && typeof o.type === 'string' && isObject(o.metadata) && (isObject(o.data) || isObject(o.stringData));
}

function isTable(o: JsonObject): boolean {
  return o.kind === 'Table' && typeof o.apiVersion === 'string' && o.apiVersion.startsWith('meta.k8s.io/');
}

/** Indexes of a Table's name columns. */
function nameColumns(defs: unknown): ReadonlySet<number> {
  const out = new Set<number>();
  if (Array.isArray(defs)) defs.forEach((d, i) => isObject(d) && d.format === 'name' && out.add(i));
  return out;
}

/** An env var's value is labelled by the variable's name; any other value by its key. */
function labelOf(o: JsonObject, key: string): string {
  return key === 'value' && typeof o.name === 'string' ? o.name : key;
}

function looksLikeJsonDocument(text: string): boolean {
  const first = text.trimStart()[0];
  return first === '{' || first === '[';
}

function redactSecretMap(map: unknown, base64: boolean, counts: MaskCounts): unknown {
  if (map === null || map === undefined) return map;
  const marker = base64 ? SECRET_MARKER_BASE64 : SECRET_MARKER;
  if (!isObject(map)) {
    bump(counts, 'secret');
    return marker;
  }
  const keys = Object.keys(map);
  if (keys.length === 0) return map;
  for (let i = 0; i < keys.length; i++) bump(counts, 'secret');
  return Object.fromEntries(keys.map((k) => [k, marker]));
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function utf8OrNull(bytes: Buffer): string | null {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return null;
  }
}

/** The array with f applied; the same array when no element changed. */
function mapArray(arr: unknown[], f: (item: unknown, index: number) => unknown): unknown[] {
  let out: unknown[] | null = null;
  for (let i = 0; i < arr.length; i++) {
    const next = f(arr[i], i);
    if (next !== arr[i]) (out ??= arr.slice())[i] = next;
  }
  return out ?? arr;
}

/**
 * The object with f applied to each own value; the same object when none changed. Copies define
 * properties rather than assign them, so a key named "__proto__" stays a plain key.
 */
function mapObject(o: JsonObject, f: (key: string, value: unknown) => unknown): JsonObject {
  let out: JsonObject | null = null;
  for (const key of Object.keys(o)) {
    const next = f(key, o[key]);
    if (next === o[key]) continue;
    out ??= { ...o };
    Object.defineProperty(out, key, { value: next, writable: true, enumerable: true, configurable: true });
  }
  return out ?? o;
}
