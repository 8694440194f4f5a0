/**
 * Content detectors: find sensitive values inside free text, so "call alan@example.org" is
 * masked in place rather than wholesale.
 *
 * `find` returns [start, end) offsets in UTF-16 code units of `text`, ascending and
 * non-overlapping. Every detector runs a cheap pre-check (a character or digit count it cannot
 * do without) before any regex: this runs on every value of every scanned column, and most
 * values contain nothing. The empty result is a shared frozen array: callers must not mutate it.
 *
 * Global regexes below are module state (lastIndex); every user resets it first, and nothing
 * here yields between reset and use.
 */
import type { DETECTORS } from '../config/load.js';

export type DetectorName = (typeof DETECTORS)[number];
export type Range = [start: number, end: number];

export interface Detector {
  readonly name: DetectorName;
  find(text: string): readonly Range[];
}

const NONE: readonly Range[] = Object.freeze([]) as readonly Range[];

// ---------------------------------------------------------------------------------------------
// Character helpers (ASCII only: boundaries are about digits/letters glued to a candidate)

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** At least n ASCII digits somewhere in text (stops as soon as it has seen n). */
function hasDigits(text: string, n: number): boolean {
  let k = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57 && ++k >= n) return true;
  }
  return false;
}

/** Whole matches of a global regex, optionally only the span of capture group 1 (needs the d flag). */
function matches(re: RegExp, text: string, out: Range[] | null, group = 0): Range[] | null {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (group === 0) (out ??= []).push([m.index, m.index + m[0].length]);
    else {
      const span = m.indices?.[group];
      if (span) (out ??= []).push([span[0], span[1]]);
    }
    if (m[0].length === 0) re.lastIndex++;
  }
  return out;
}

function sorted(out: Range[] | null): readonly Range[] {
  if (out === null) return NONE;
  if (out.length > 1) out.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  // different patterns of one detector may overlap: keep the first of overlapping ranges, widened
  let w = 0;
  for (let r = 1; r < out.length; r++) {
    if (out[r][0] < out[w][1]) out[w][1] = Math.max(out[w][1], out[r][1]);
    else out[++w] = out[r];
  }
  out.length = w + 1;
  return out;
}

// ---------------------------------------------------------------------------------------------
// email: scan outwards from each '@' (linear; a regex anchored on the local part is quadratic
// on long runs of local-part characters)

const LOCAL_ASCII = new Uint8Array(128);
for (const ch of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-") {
  LOCAL_ASCII[ch.charCodeAt(0)] = 1;
}
const LETTER_OR_DIGIT = /[\p{L}\p{N}\p{M}]/u;

function isLocalChar(c: number): boolean {
  if (c < 128) return LOCAL_ASCII[c] === 1;
  if (c >= 0xd800 && c <= 0xdfff) return true; // astral halves: rarely punctuation, mask them along
  return LETTER_OR_DIGIT.test(String.fromCharCode(c));
}

// labels of letters/digits/hyphens, at least one dot, a last label that starts with a letter
const DOMAIN =
  /(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+\p{L}(?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])/uy;

function findEmails(text: string): readonly Range[] {
  let at = text.indexOf('@');
  if (at === -1) return NONE;
  let out: Range[] | null = null;
  let floor = 0;
  while (at !== -1) {
    let s = at;
    while (s > floor && isLocalChar(text.charCodeAt(s - 1))) s--;
    while (s < at && text.charCodeAt(s) === 46) s++; // a local part does not start with '.'
    let next = at + 1;
    if (s < at) {
      DOMAIN.lastIndex = at + 1;
      if (DOMAIN.test(text)) {
        const e = DOMAIN.lastIndex;
        (out ??= []).push([s, e]);
        floor = next = e;
      }
    }
    at = text.indexOf('@', next);
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------
// credit_card: runs of digit groups joined by single spaces/dashes; 13–19 digits, Luhn-valid

function luhn(text: string, groups: number[], a: number, b: number): boolean {
  let sum = 0;
  let double = false;
  let nonzero = false;
  for (let g = b; g >= a; g--) {
    for (let i = groups[2 * g + 1] - 1; i >= groups[2 * g]; i--) {
      let d = text.charCodeAt(i) - 48;
      if (d !== 0) nonzero = true;
      if (double) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
      double = !double;
    }
  }
  return nonzero && sum % 10 === 0; // all zeros passes Luhn but is a placeholder, not a card
}

/**
 * A digit run glued to letters or part of a decimal number is an identifier or amount, not a
 * card. Only a point makes a decimal: a comma separates the fields of rows, arrays, CSV and lists
 * (`(1,4111111111111111)`, `{4111111111111111,5500005555555559}`), where cards must still be found.
 */
function isolated(text: string, s: number, e: number): boolean {
  const before = s > 0 ? text.charCodeAt(s - 1) : 32;
  const after = e < text.length ? text.charCodeAt(e) : 32;
  if (isAsciiAlnum(before) || isAsciiAlnum(after)) return false;
  if (before === 46 && s > 1 && isDigit(text.charCodeAt(s - 2))) return false;
  if (after === 46 && e + 1 < text.length && isDigit(text.charCodeAt(e + 1))) return false;
  return true;
}

function findCards(text: string): readonly Range[] {
  if (!hasDigits(text, 13)) return NONE;
  let out: Range[] | null = null;
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    const groups: number[] = []; // [start, end) pairs of digit groups in this run
    let j = i;
    for (;;) {
      let k = j;
      while (k < n && isDigit(text.charCodeAt(k))) k++;
      groups.push(j, k);
      const sep = text.charCodeAt(k);
      if ((sep === 32 || sep === 45) && k + 1 < n && isDigit(text.charCodeAt(k + 1))) j = k + 1;
      else {
        j = k;
        break;
      }
    }
    if (isolated(text, i, j)) collectCards(text, groups, (out ??= []));
    i = j;
  }
  return out === null || out.length === 0 ? NONE : out;
}

/**
 * Cards inside one run: one unbroken group of 13–19 digits, or formatted groups of 3–6 digits
 * (the first 4–6: 4-4-4-4, 4-6-5, 4-4-4-4-3), which keeps dates and version-like runs (2-digit
 * groups) out. Every Luhn-valid window counts and overlapping ones are merged: when a card is
 * preceded by another digit group ("ref 1234 4111 1111 1111 1111") either window may be the card,
 * and masking both beats leaving most of one visible.
 */
function collectCards(text: string, groups: number[], out: Range[]): void {
  const count = groups.length / 2;
  const len = (g: number) => groups[2 * g + 1] - groups[2 * g];
  const add = (a: number, b: number) => {
    const s = groups[2 * a];
    const e = groups[2 * b + 1];
    const last = out[out.length - 1];
    if (last !== undefined && s <= last[1] && last[0] <= s) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  };
  for (let a = 0; a < count; a++) {
    const first = len(a);
    if (first >= 13 && first <= 19) {
      if (luhn(text, groups, a, a)) add(a, a);
    } else if (first >= 4 && first <= 6) {
      let total = first;
      for (let b = a + 1; b < count; b++) {
        const l = len(b);
        if (l < 3 || l > 6 || total + l > 19) break;
        total += l;
        if (total >= 13 && luhn(text, groups, a, b)) add(a, b);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// iban: country + 2 check digits + BBAN, optionally spaced; ISO 13616 length and mod-97 == 1

/** Lengths for the countries in the IBAN registry; others need 15–34. */
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, BY: 28, CH: 21,
  CR: 22, CY: 28, CZ: 24, DE: 22, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27,
  GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26,
  IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24,
  ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29,
  RO: 24, RS: 22, SA: 24, SC: 31, SE: 24, SI: 19, SK: 24, SM: 27, ST: 25, SV: 28, TL: 23, TN: 24,
  TR: 26, UA: 29, VA: 22, VG: 24, XK: 20,
};

// greedy: may run into following words; the length rule below cuts it back at a space
const IBAN_CANDIDATE = /(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}/g;

function ibanMod97(text: string, pos: number[], len: number): boolean {
  let r = 0;
  for (let k = 4; k < len + 4; k++) {
    const c = text.charCodeAt(pos[k % len]); // the first four characters move to the end
    if (c <= 57) r = (r * 10 + (c - 48)) % 97;
    else r = (r * 100 + ((c | 0x20) - 87)) % 97; // a/A = 10 … z/Z = 35
  }
  return r === 1;
}

function findIbans(text: string): readonly Range[] {
  if (text.length < 15) return NONE;
  let out: Range[] | null = null;
  const re = IBAN_CANDIDATE;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const pos: number[] = [];
    for (let i = m.index; i < m.index + m[0].length; i++) if (text.charCodeAt(i) !== 32) pos.push(i);
    // a shorter IBAN is only acceptable if what follows is separated by a space
    const cutOk = (len: number) => len === pos.length || pos[len] - pos[len - 1] > 1;
    const known = IBAN_LENGTHS[m[0].slice(0, 2).toUpperCase()];
    let found = 0;
    if (known !== undefined) {
      if (known <= pos.length && cutOk(known) && ibanMod97(text, pos, known)) found = known;
    } else {
      for (let len = Math.min(34, pos.length); len >= 15 && found === 0; len--) {
        if (cutOk(len) && ibanMod97(text, pos, len)) found = len;
      }
    }
    if (found === 0) re.lastIndex = m.index + 1;
    else {
      const end = pos[found - 1] + 1;
      (out ??= []).push([m.index, end]);
      re.lastIndex = end;
    }
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------
// ssn: US AAA-GG-SSSS; never-issued area 000/666/9xx, group 00 and serial 0000 are not SSNs

const SSN = /(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])/g;

function findSsns(text: string): readonly Range[] {
  if (text.length < 11 || text.indexOf('-') === -1) return NONE;
  let out: Range[] | null = null;
  SSN.lastIndex = 0;
  for (let m = SSN.exec(text); m !== null; m = SSN.exec(text)) {
    const s = m.index;
    const num = (from: number, to: number) => {
      let v = 0;
      for (let i = s + from; i < s + to; i++) v = v * 10 + text.charCodeAt(i) - 48;
      return v;
    };
    const area = num(0, 3);
    if (area === 0 || area === 666 || area >= 900 || num(4, 6) === 0 || num(7, 11) === 0) continue;
    (out ??= []).push([s, s + 11]);
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------
// phone: '+' international numbers (E.164, 8–15 digits, common separators) and formatted
// national numbers. Separators are required for national ones so that plain integers, and the
// grouping rules keep dates, SSNs and card numbers out.

/** NANP: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199; area code 2–9. */
const NANP =
  /(?<![\w+])(?<!\d[.-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}(?!\w)(?![.-]\d)/g;
/** France and similar: 06 12 34 56 78, 01.23.45.67.89 (one separator throughout). */
const PAIRS = /(?<![\w+])(?<!\d[ .-])0[1-9]([ .-])\d{2}(?:\1\d{2}){3}(?!\w)(?![ .-]\d)/g;
/** Trunk-prefix formats: 020 7946 0958, (030) 1234567, 07911 123456. */
const TRUNK = /(?<![\w+])(?<!\d[ .-])(?:\(0\d{1,4}\) ?|0\d{1,4}[ -])\d{3,8}(?:[ -]\d{3,4})?(?!\w)(?![ .-]\d)/g;

function isPhoneSep(c: number): boolean {
  return c === 32 || c === 45 || c === 46 || c === 40 || c === 41; // space - . ( )
}

/** From a '+': digit groups joined by at most two separators; the longest prefix of whole groups with ≤ 15 digits. */
function internationalAt(text: string, plus: number): number {
  const n = text.length;
  const before = plus > 0 ? text.charCodeAt(plus - 1) : 32;
  if (isAsciiAlnum(before) || before === 95 || before === 43) return -1;
  const first = text.charCodeAt(plus + 1);
  if (!(first >= 49 && first <= 57)) return -1;
  let i = plus + 1;
  let digits = 0;
  let end = -1;
  for (;;) {
    let k = i;
    while (k < n && isDigit(text.charCodeAt(k))) k++;
    if (digits + (k - i) > 15) break; // the next group would make it too long: stop before it
    digits += k - i;
    end = k;
    let s = k;
    while (s < n && s - k < 2 && isPhoneSep(text.charCodeAt(s))) s++;
    if (s === k || s >= n || !isDigit(text.charCodeAt(s))) break;
    i = s;
  }
  if (digits < 8 || end === -1) return -1;
  if (end < n && isAsciiAlnum(text.charCodeAt(end))) return -1;
  // a closing parenthesis right after the last digit belongs to the number
  return text.charCodeAt(end) === 41 && text.lastIndexOf('(', end) > plus ? end + 1 : end;
}

function findPhones(text: string): readonly Range[] {
  if (!hasDigits(text, 8)) return NONE;
  let out: Range[] | null = null;
  for (let p = text.indexOf('+'); p !== -1; p = text.indexOf('+', p + 1)) {
    const e = internationalAt(text, p);
    if (e !== -1) {
      (out ??= []).push([p, e]);
      p = e - 1;
    }
  }
  out = matches(NANP, text, out);
  out = matches(PAIRS, text, out);
  TRUNK.lastIndex = 0;
  for (let m = TRUNK.exec(text); m !== null; m = TRUNK.exec(text)) {
    let digits = 0;
    for (let i = 0; i < m[0].length; i++) if (isDigit(m[0].charCodeAt(i))) digits++;
    if (digits >= 9 && digits <= 12) (out ??= []).push([m.index, m.index + m[0].length]);
  }
  return sorted(out);
}

// ---------------------------------------------------------------------------------------------
// jwt: header.payload.signature in base64url; the header must decode to a JSON object with "alg".
// 'e' + 'y'/'w' is how '{' followed by '"', ' ' or a newline starts in base64.

const JWT =
  /(?<![A-Za-z0-9_.-])e[wy][A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)?/g;

function jwtHeader(segment: string): boolean {
  if (segment.length > 4096) return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) && 'alg' in header;
  } catch {
    return false;
  }
}

function findJwts(text: string): readonly Range[] {
  if (text.length < 16 || text.indexOf('.') === -1) return NONE;
  let out: Range[] | null = null;
  JWT.lastIndex = 0;
  for (let m = JWT.exec(text); m !== null; m = JWT.exec(text)) {
    if (jwtHeader(m[0].slice(0, m[0].indexOf('.')))) (out ??= []).push([m.index, m.index + m[0].length]);
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------
// aws_key: access key ids anywhere; 40-character secrets only next to a secret-key label (alone,
// 40 base64 characters are as likely a hash or a token of anything else)

const AWS_KEY_ID = /(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Za-z0-9])/g;
const AWS_SECRET =
  /(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key\\?["']?(?:\s*(?:[:=]|=>)\s*|\s+)\\?["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/dgi;

function findAwsKeys(text: string): readonly Range[] {
  if (text.length < 20) return NONE;
  let out = matches(AWS_KEY_ID, text, null);
  if (text.length >= 50 && (text.includes('ecret') || text.includes('ECRET'))) out = matches(AWS_SECRET, text, out, 1);
  return sorted(out);
}

// ---------------------------------------------------------------------------------------------
// gcp_key: API keys, and the "private_key_id" of service-account JSON (also when that JSON is
// itself escaped inside a string). Its "private_key" is a PEM block: see private_key.

const GCP_API_KEY = /AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g;
const GCP_KEY_ID = /\\?"private_key_id\\?"\s*:\s*\\?"([0-9a-fA-F]{16,64})\\?"/dg;

function findGcpKeys(text: string): readonly Range[] {
  let out: Range[] | null = null;
  if (text.includes('AIza')) out = matches(GCP_API_KEY, text, out);
  if (text.includes('private_key_id')) out = matches(GCP_KEY_ID, text, out, 1);
  return sorted(out);
}

// ---------------------------------------------------------------------------------------------
// azure_key: storage account keys, shared access keys and SAS tokens in connection strings/URLs

const AZURE =
  /(?:AccountKey|SharedAccessKey|SharedAccessSignature)=([^;\s"'<>\\]{16,})|[?&;]sig=([A-Za-z0-9%+/=_-]{16,})/dgi;

function findAzureKeys(text: string): readonly Range[] {
  if (text.length < 20 || text.indexOf('=') === -1) return NONE;
  let out: Range[] | null = null;
  AZURE.lastIndex = 0;
  for (let m = AZURE.exec(text); m !== null; m = AZURE.exec(text)) {
    const span = m.indices?.[1] ?? m.indices?.[2];
    if (span) (out ??= []).push([span[0], span[1]]);
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------
// private_key: the whole PEM block, BEGIN through END. A block without END (a truncated value)
// is masked to the end of the text: there is no telling where the key material stops.

const PEM_BEGIN = /-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----/g;

function findPrivateKeys(text: string): readonly Range[] {
  if (text.indexOf('-----BEGIN') === -1) return NONE;
  let out: Range[] | null = null;
  PEM_BEGIN.lastIndex = 0;
  for (let m = PEM_BEGIN.exec(text); m !== null; m = PEM_BEGIN.exec(text)) {
    const afterBegin = m.index + m[0].length;
    const endMarker = text.indexOf('-----END ', afterBegin);
    let end = text.length;
    if (endMarker !== -1) {
      const close = text.indexOf('-----', endMarker + 9);
      if (close !== -1) end = close + 5;
    }
    (out ??= []).push([m.index, end]);
    PEM_BEGIN.lastIndex = end;
  }
  return out ?? NONE;
}

// ---------------------------------------------------------------------------------------------

export const DETECTOR_MAP: Readonly<Record<DetectorName, Detector>> = Object.freeze({
  email: { name: 'email', find: findEmails },
  credit_card: { name: 'credit_card', find: findCards },
  iban: { name: 'iban', find: findIbans },
  ssn: { name: 'ssn', find: findSsns },
  phone: { name: 'phone', find: findPhones },
  jwt: { name: 'jwt', find: findJwts },
  aws_key: { name: 'aws_key', find: findAwsKeys },
  gcp_key: { name: 'gcp_key', find: findGcpKeys },
  azure_key: { name: 'azure_key', find: findAzureKeys },
  private_key: { name: 'private_key', find: findPrivateKeys },
});

/** The detector called `name`; throws for a name the config loader would not have accepted. */
export function getDetector(name: string): Detector {
  const d = Object.prototype.hasOwnProperty.call(DETECTOR_MAP, name) ? DETECTOR_MAP[name as DetectorName] : undefined;
  if (d === undefined) throw new Error(`unknown detector "${name}"`);
  return d;
}
