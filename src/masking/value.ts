/**
 * Masks one field value according to its ColumnPlan, on wire bytes (DataRow) or on text (COPY).
 *
 * Results: undefined = unchanged (forward the original bytes), null = send NULL instead,
 * otherwise the new value. Binary values that cannot carry a masked string become NULL:
 * a masked int8 has no valid int8 encoding, and rewriting inside an arbitrary binary format
 * (arrays, composites, bytea) could corrupt its internal lengths. Returned buffers may be shared
 * constants: callers copy them, never mutate them.
 */
import type { ColumnPlan } from './plan.js';
import { maskText, wholeJson } from './apply.js';
import { bump, type MaskCounts } from './counts.js';
import { REDACTED } from './strategies.js';

const REDACTED_TEXT = Buffer.from(REDACTED, 'utf8');
const REDACTED_JSON = Buffer.from(JSON.stringify(REDACTED), 'utf8');
const REDACTED_JSONB = Buffer.concat([Buffer.from([1]), REDACTED_JSON]);
const JSONB_VERSION = 1;

export function maskWireValue(buf: Buffer, start: number, end: number, col: ColumnPlan, counts: MaskCounts): Buffer | null | undefined {
  if (col.kind === 'whole') {
    bump(counts, col.countKey);
    return wholeWire(buf, start, end, col);
  }
  switch (col.codec) {
    case 'text':
    case 'json': {
      const masked = maskText(buf.toString('utf8', start, end), col.scanners, col.codec === 'json', counts);
      return masked === undefined ? undefined : Buffer.from(masked, 'utf8');
    }
    case 'jsonb': {
      if (end === start || buf[start] !== JSONB_VERSION) return anyHit(buf.toString('utf8', start, end), col, counts);
      const masked = maskText(buf.toString('utf8', start + 1, end), col.scanners, true, counts);
      return masked === undefined ? undefined : jsonb(masked);
    }
    case 'int8':
      return end - start === 8 ? anyHit(buf.readBigInt64BE(start).toString(), col, counts) : undefined;
    case 'numeric':
      return anyHit(numericText(buf, start, end), col, counts);
    case 'opaque':
      return anyHit(buf.toString('utf8', start, end), col, counts);
  }
}

/** COPY fields and other text-format values: undefined = unchanged, null = NULL. */
export function maskTextValue(text: string, col: ColumnPlan, counts: MaskCounts): string | null | undefined {
  const json = col.codec === 'json' || col.codec === 'jsonb';
  if (col.kind === 'whole') {
    bump(counts, col.countKey);
    return json ? wholeJson(col.strategy, text) : col.strategy(text);
  }
  return maskText(text, col.scanners, json, counts);
}

function wholeWire(buf: Buffer, start: number, end: number, col: ColumnPlan & { kind: 'whole' }): Buffer | null {
  switch (col.codec) {
    case 'text':
      return col.redact ? REDACTED_TEXT : Buffer.from(col.strategy(buf.toString('utf8', start, end)), 'utf8');
    case 'json':
      return col.redact ? REDACTED_JSON : Buffer.from(wholeJson(col.strategy, buf.toString('utf8', start, end)), 'utf8');
    case 'jsonb':
      if (col.redact) return REDACTED_JSONB;
      if (end === start || buf[start] !== JSONB_VERSION) return null;
      return jsonb(wholeJson(col.strategy, buf.toString('utf8', start + 1, end)));
    default:
      return null;
  }
}

/** For values that cannot be rewritten in place: NULL if any detector finds anything. */
function anyHit(text: string, col: ColumnPlan & { kind: 'scan' }, counts: MaskCounts): null | undefined {
  return maskText(text, col.scanners, false, counts) === undefined ? undefined : null;
}

function jsonb(text: string): Buffer {
  const out = Buffer.allocUnsafe(1 + Buffer.byteLength(text, 'utf8'));
  out[0] = JSONB_VERSION;
  out.write(text, 1, 'utf8');
  return out;
}

/**
 * Decimal rendering of a binary numeric (numeric_send: ndigits, weight, sign, dscale, then
 * base-10000 digits), enough for detectors to see the digits.
 */
export function numericText(buf: Buffer, start: number, end: number): string {
  if (end - start < 8) return '';
  const ndigits = buf.readUInt16BE(start);
  const weight = buf.readInt16BE(start + 2);
  const sign = buf.readUInt16BE(start + 4);
  const dscale = buf.readUInt16BE(start + 6);
  if (end - start < 8 + 2 * ndigits || sign === 0xc000 || sign >= 0xd000) return ''; // short, NaN, ±Infinity
  const digit = (d: number) => (d >= 0 && d < ndigits ? buf.readUInt16BE(start + 8 + 2 * d) : 0);
  let int = '';
  if (weight < 0) int = '0';
  else for (let d = 0; d <= weight; d++) int += d === 0 ? String(digit(d)) : String(digit(d)).padStart(4, '0');
  let frac = '';
  for (let d = weight + 1; frac.length < dscale; d++) frac += String(digit(d)).padStart(4, '0');
  return (sign === 0x4000 ? '-' : '') + int + (dscale > 0 ? '.' + frac.slice(0, dscale) : '');
}
