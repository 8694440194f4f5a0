/**
 * COPY TO masking, one CopyData row at a time (the server sends exactly one row per CopyData in
 * text and CSV formats, embedded newlines included). Fields are split on raw bytes — the
 * delimiter, quote and escape are single ASCII bytes, which never occur inside a UTF-8 multi-byte
 * sequence (this assumes client_encoding UTF8) — and only fields the plan touches are decoded.
 * Masked fields are re-encoded the way the server would have written them.
 *
 * Not handled here: binary COPY (the caller must refuse it or NULL-mask it itself) and the CSV
 * HEADER row (the caller forwards it unmasked: a column rule would otherwise mask the header's
 * column name).
 */
import type { ColumnPlan, RowPlan } from './plan.js';
import type { MaskCounts } from './counts.js';
import { maskTextValue } from './value.js';

export type CopyFormat = 'text' | 'csv';

/** COPY options as given in the statement; defaults are the server's. */
export interface CopyOptions {
  /** text: tab; csv: comma */
  delimiter?: string;
  /** text: \N; csv: the empty (unquoted) string */
  null?: string;
  /** csv only: double quote */
  quote?: string;
  /** csv only: defaults to the quote */
  escape?: string;
}

interface Edit {
  start: number;
  end: number;
  bytes: Buffer;
}

function oneByte(value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (value.length !== 1 || value.charCodeAt(0) > 127) throw new Error(`COPY ${what} must be a single ASCII character`);
  return value.charCodeAt(0);
}

/**
 * Masks one CopyData row (`line` is the CopyData body, including its trailing newline). Returns
 * the new body, or null when nothing changed; frame it with copyDataMessage.
 */
export function maskCopyLine(
  line: Buffer,
  format: CopyFormat,
  plan: RowPlan,
  counts: MaskCounts,
  opts: CopyOptions = {},
): Buffer | null {
  if (plan.touchesNothing) return null;
  const edits =
    format === 'text'
      ? textEdits(line, plan, counts, oneByte(opts.delimiter, 0x09, 'DELIMITER'), opts.null ?? '\\N')
      : csvEdits(
          line,
          plan,
          counts,
          oneByte(opts.delimiter, 0x2c, 'DELIMITER'),
          oneByte(opts.quote, 0x22, 'QUOTE'),
          oneByte(opts.escape ?? opts.quote, 0x22, 'ESCAPE'),
          opts.null ?? '',
        );
  if (edits === null) return null;
  const parts: Buffer[] = [];
  let r = 0;
  for (const e of edits) {
    parts.push(line.subarray(r, e.start), e.bytes);
    r = e.end;
  }
  parts.push(line.subarray(r));
  return Buffer.concat(parts);
}

/** A CopyData message ('d', length, body). */
export function copyDataMessage(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0x64;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function columnFor(plan: RowPlan, field: number): ColumnPlan | null {
  return field < plan.columns.length ? plan.columns[field] : plan.other;
}

function bodyEnd(line: Buffer): number {
  return line.length > 0 && line[line.length - 1] === 0x0a ? line.length - 1 : line.length;
}

// ---------------------------------------------------------------------------------------------
// text format: delimiter-separated, backslash escapes, \N for NULL

function textEdits(line: Buffer, plan: RowPlan, counts: MaskCounts, delim: number, nullString: string): Edit[] | null {
  const end = bodyEnd(line);
  const nullBytes = Buffer.from(nullString, 'utf8');
  let edits: Edit[] | null = null;
  let i = 0;
  for (let field = 0; ; field++) {
    const s = i;
    while (i < end && line[i] !== delim) i += line[i] === 0x5c ? 2 : 1;
    if (i > end) i = end;
    const col = columnFor(plan, field);
    if (col !== null && !line.subarray(s, i).equals(nullBytes)) {
      const masked = maskTextValue(decodeText(line, s, i), col, counts);
      if (masked !== undefined) {
        (edits ??= []).push({ start: s, end: i, bytes: masked === null ? nullBytes : encodeText(masked, delim) });
      }
    }
    if (i >= end) return edits;
    i++;
  }
}

const SIMPLE_ESCAPES: Record<number, number> = { 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 };

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** COPY text escapes (\b \f \n \r \t \v, \ooo octal, \xhh hex, \c = c) decoded to bytes, then UTF-8. */
function decodeText(line: Buffer, s: number, e: number): string {
  let first = s;
  while (first < e && line[first] !== 0x5c) first++;
  if (first === e) return line.toString('utf8', s, e);
  const out = Buffer.allocUnsafe(e - s);
  let w = 0;
  for (let i = s; i < e; ) {
    const b = line[i++];
    if (b !== 0x5c || i >= e) {
      out[w++] = b;
      continue;
    }
    const c = line[i++];
    if (SIMPLE_ESCAPES[c] !== undefined) out[w++] = SIMPLE_ESCAPES[c];
    else if (c >= 0x30 && c <= 0x37) {
      let v = c - 0x30;
      for (let k = 0; k < 2 && i < e && line[i] >= 0x30 && line[i] <= 0x37; k++) v = v * 8 + line[i++] - 0x30;
      out[w++] = v & 0xff;
    } else if (c === 0x78 && i < e && hexValue(line[i]) !== -1) {
      let v = hexValue(line[i++]);
      if (i < e && hexValue(line[i]) !== -1) v = v * 16 + hexValue(line[i++]);
      out[w++] = v;
    } else out[w++] = c;
  }
  return out.toString('utf8', 0, w);
}

/** As the server writes text-format fields: backslash, control characters and the delimiter escaped. */
function encodeText(value: string, delim: number): Buffer {
  let out = '';
  let from = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    let esc: string | undefined;
    if (c === 0x5c) esc = '\\\\';
    else if (c === 10) esc = '\\n';
    else if (c === 13) esc = '\\r';
    else if (c === 9) esc = '\\t';
    else if (c === 8) esc = '\\b';
    else if (c === 12) esc = '\\f';
    else if (c === 11) esc = '\\v';
    else if (c === delim) esc = '\\' + value[i];
    if (esc !== undefined) {
      out += value.slice(from, i) + esc;
      from = i + 1;
    }
  }
  return Buffer.from(from === 0 ? value : out + value.slice(from), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// CSV: delimiter-separated, quoted fields with doubled (or escape-prefixed) quotes; an unquoted
// field equal to the NULL string is NULL

function csvEdits(
  line: Buffer,
  plan: RowPlan,
  counts: MaskCounts,
  delim: number,
  quote: number,
  escape: number,
  nullString: string,
): Edit[] | null {
  let end = bodyEnd(line);
  if (end < line.length && end > 0 && line[end - 1] === 0x0d) end--; // CRLF row terminator
  let edits: Edit[] | null = null;
  let i = 0;
  for (let field = 0; ; field++) {
    const s = i;
    let quoted = false;
    let contentEnd = -1;
    if (i < end && line[i] === quote) {
      quoted = true;
      i++;
      while (i < end) {
        const b = line[i];
        if (b === escape && escape !== quote && i + 1 < end && (line[i + 1] === quote || line[i + 1] === escape)) i += 2;
        else if (b === quote && escape === quote && i + 1 < end && line[i + 1] === quote) i += 2;
        else if (b === quote) {
          contentEnd = i++;
          break;
        } else i++;
      }
      if (contentEnd === -1) contentEnd = i; // unterminated: take the rest
      while (i < end && line[i] !== delim) i++;
    } else {
      while (i < end && line[i] !== delim) i++;
    }
    const col = columnFor(plan, field);
    if (col !== null) {
      const raw = quoted ? unquote(line, s + 1, contentEnd, quote, escape) : line.toString('utf8', s, i);
      if (quoted || raw !== nullString) {
        const masked = maskTextValue(raw, col, counts);
        if (masked !== undefined) {
          const bytes =
            masked === null ? Buffer.from(nullString, 'utf8') : encodeCsv(masked, quoted, delim, quote, escape, nullString);
          (edits ??= []).push({ start: s, end: i, bytes });
        }
      }
    }
    if (i >= end) return edits;
    i++;
  }
}

function unquote(line: Buffer, s: number, e: number, quote: number, escape: number): string {
  const out = Buffer.allocUnsafe(e - s);
  let w = 0;
  for (let i = s; i < e; i++) {
    const b = line[i];
    if ((b === escape || b === quote) && i + 1 < e && (line[i + 1] === quote || line[i + 1] === escape)) out[w++] = line[++i];
    else out[w++] = b;
  }
  return out.toString('utf8', 0, w);
}

/** Quoted if it was, or if it must be (delimiter, quote, escape, CR/LF, or it reads as NULL). */
function encodeCsv(value: string, wasQuoted: boolean, delim: number, quote: number, escape: number, nullString: string): Buffer {
  const q = String.fromCharCode(quote);
  const x = String.fromCharCode(escape);
  const d = String.fromCharCode(delim);
  const needs =
    wasQuoted ||
    value === nullString ||
    value.includes(d) ||
    value.includes(q) ||
    value.includes(x) ||
    value.includes('\n') ||
    value.includes('\r');
  if (!needs) return Buffer.from(value, 'utf8');
  let body = '';
  for (const ch of value) body += ch === q || ch === x ? x + ch : ch;
  return Buffer.from(q + body + q, 'utf8');
}
