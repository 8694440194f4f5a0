/**
 * Keeping JSON valid while masking inside it. Clients parse json/jsonb values (node-postgres
 * runs JSON.parse on them), so a replacement must not break the document:
 * - inside a string token, a range that starts or ends in the middle of an escape (\n, \", \u00e9)
 *   is moved to whole escapes, and the replacement is made string-safe;
 * - outside strings (a card number stored as a JSON number) the whole number token is replaced by
 *   a JSON string;
 * - a range that crosses string boundaries cannot be fixed locally: the caller masks the whole value.
 * Detection runs on the raw JSON text rather than on decoded strings so that label-based detectors
 * ("private_key_id": "…", "SecretAccessKey": "…") still see the label next to the value.
 */

/** Opening and closing quote offsets of every string token, flattened [open0, close0, …]. */
export function stringTokens(text: string): number[] {
  const out: number[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    if (text.charCodeAt(i) !== 34) continue;
    const open = i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 92) i += 2;
      else if (c === 34) break;
      else i++;
    }
    out.push(open, Math.min(i, n));
  }
  return out;
}

export interface JsonFit {
  start: number;
  end: number;
  /** the replacement must be wrapped in quotes (it replaces a bare token) */
  quote: boolean;
}

function isNumberChar(c: number): boolean {
  return (c >= 48 && c <= 57) || c === 45 || c === 43 || c === 46 || c === 101 || c === 69;
}

/** Where [start, end) may be replaced in `text`; null: nothing left to replace; 'whole': mask the whole value. */
export function fitRange(text: string, tokens: number[], start: number, end: number): JsonFit | null | 'whole' {
  for (let t = 0; t < tokens.length; t += 2) {
    const open = tokens[t];
    const close = tokens[t + 1];
    if (close < start) continue;
    if (open >= end) break;
    if (!(open < start && end <= close)) return 'whole';
    let s = start;
    let e = end;
    for (let i = open + 1; i < e; ) {
      if (text.charCodeAt(i) !== 92) {
        i++;
        continue;
      }
      const len = text.charCodeAt(i + 1) === 117 ? 6 : 2;
      if (i < s && i + len > s) s = i + len;
      else if (i >= s && i + len > e) e = Math.min(i + len, close);
      i += len;
    }
    return s < e ? { start: s, end: e, quote: false } : null;
  }
  let s = start;
  let e = end;
  while (s > 0 && isNumberChar(text.charCodeAt(s - 1))) s--;
  while (e < text.length && isNumberChar(text.charCodeAt(e))) e++;
  return { start: s, end: e, quote: true };
}

const UNSAFE_IN_STRING = /["\\\u0000-\u001f]/g;

/** Content that may stand between JSON quotes as is: quotes, backslashes and controls become '*'. */
export function stringSafe(s: string): string {
  UNSAFE_IN_STRING.lastIndex = 0;
  return UNSAFE_IN_STRING.test(s) ? s.replace(UNSAFE_IN_STRING, '*') : s;
}
