/**
 * Masking strategies: what a sensitive range (or a whole value) becomes.
 * Each is a pure string → string function; `hash` closes over its key.
 */
import { createHmac } from 'node:crypto';
import type { MaskingRuleDef } from '../config/types.js';

export type StrategyName = MaskingRuleDef['strategy'];
export type Strategy = (value: string) => string;

export const REDACTED = '[redacted]';

export const redact: Strategy = () => REDACTED;

const ALNUM = /[\p{L}\p{N}]/u;

function isAlnum(cp: number): boolean {
  if (cp < 128) return (cp >= 48 && cp <= 57) || (cp >= 65 && cp <= 90) || (cp >= 97 && cp <= 122);
  return ALNUM.test(String.fromCodePoint(cp));
}

/**
 * Keeps the last 4 characters; every earlier letter or digit becomes '*', separators stay so the
 * shape is still recognisable: "4111-1111-1111-1111" → "****-****-****-1111". Counted in code
 * points, so a masked character is one '*' whatever its UTF-16 length. Values of 4 characters or
 * fewer are all '*': keeping 4 of them would keep all of them. Likewise at most half of a value's
 * letters and digits are kept, so a short value ("!@a.io") never comes back unchanged.
 */
export function partial(value: string): string {
  const cps = Array.from(value);
  if (cps.length <= 4) return '*'.repeat(cps.length);
  const alnum = cps.map((ch) => isAlnum(ch.codePointAt(0)!));
  let budget = Math.min(4, Math.floor(alnum.filter(Boolean).length / 2));
  const keepFrom = cps.length - 4;
  for (let i = cps.length - 1; i >= 0; i--) {
    if (!alnum[i]) continue;
    if (i >= keepFrom && budget > 0) budget--;
    else cps[i] = '*';
  }
  return cps.join('');
}

/**
 * Keyed HMAC-SHA256, "h:" + the first 16 hex characters (64 bits). Equal inputs give equal
 * outputs, so joins and GROUP BY on a masked column still line up; without the key even a
 * small value space (SSNs) cannot be enumerated back.
 */
export function keyedHash(key: string | Uint8Array): Strategy {
  const k = Buffer.from(key);
  if (k.length === 0) throw new Error('the hash masking strategy needs a non-empty key');
  return (value) => 'h:' + createHmac('sha256', k).update(value, 'utf8').digest('hex').slice(0, 16);
}

/** The strategy called `name`; `hash` needs `hashKey`. */
export function makeStrategy(name: StrategyName, hashKey?: string | Uint8Array): Strategy {
  switch (name) {
    case 'redact':
      return redact;
    case 'partial':
      return partial;
    case 'hash':
      if (hashKey === undefined) throw new Error('a masking rule uses strategy "hash" but no hash key was given');
      return keyedHash(hashKey);
    default:
      throw new Error(`unknown masking strategy "${String(name)}"`);
  }
}
