/**
 * Runs a column's detectors over one text value and splices in the masked ranges.
 */
import type { Detector } from './detectors.js';
import type { Strategy } from './strategies.js';
import { bump, type MaskCounts } from './counts.js';
import { fitRange, stringSafe, stringTokens } from './json.js';

/** One detector with the strategy its rule gave it; countKey is the detector name. */
export interface Scanner {
  readonly detector: Detector;
  readonly strategy: Strategy;
  readonly countKey: string;
}

/**
 * The masked text, or undefined when no detector found anything (the common case, which
 * allocates nothing beyond what the detectors' pre-checks do). Overlapping ranges from different
 * detectors are merged and credited to the earliest (ties: the earlier rule). `json`: the value
 * is a JSON document and must stay one.
 */
export function maskText(text: string, scanners: readonly Scanner[], json: boolean, counts: MaskCounts): string | undefined {
  let hits: number[] | null = null;
  let ordered = true;
  for (let k = 0; k < scanners.length; k++) {
    const found = scanners[k].detector.find(text);
    if (found.length === 0) continue;
    if (hits === null) hits = [];
    else ordered = false;
    for (const r of found) hits.push(r[0], r[1], k);
  }
  if (hits === null) return undefined;
  const merged = merge(hits, ordered);
  return json ? spliceJson(text, merged, scanners, counts) : splice(text, merged, scanners, counts);
}

/** [start, end, scanner] triples, sorted by start, overlaps merged. */
function merge(hits: number[], ordered: boolean): number[] {
  let triples = hits;
  if (!ordered) {
    const idx = Array.from({ length: hits.length / 3 }, (_, i) => i);
    idx.sort((a, b) => hits[3 * a] - hits[3 * b] || hits[3 * a + 2] - hits[3 * b + 2]);
    triples = [];
    for (const i of idx) triples.push(hits[3 * i], hits[3 * i + 1], hits[3 * i + 2]);
  }
  const out: number[] = [triples[0], triples[1], triples[2]];
  for (let t = 3; t < triples.length; t += 3) {
    const last = out.length - 3;
    if (triples[t] < out[last + 1]) out[last + 1] = Math.max(out[last + 1], triples[t + 1]);
    else out.push(triples[t], triples[t + 1], triples[t + 2]);
  }
  return out;
}

function splice(text: string, merged: number[], scanners: readonly Scanner[], counts: MaskCounts): string {
  let out = '';
  let cursor = 0;
  for (let t = 0; t < merged.length; t += 3) {
    const [s, e, k] = [merged[t], merged[t + 1], merged[t + 2]];
    out += text.slice(cursor, s) + scanners[k].strategy(text.slice(s, e));
    bump(counts, scanners[k].countKey);
    cursor = e;
  }
  return out + text.slice(cursor);
}

function spliceJson(text: string, merged: number[], scanners: readonly Scanner[], counts: MaskCounts): string | undefined {
  const tokens = stringTokens(text);
  let out = '';
  let cursor = 0;
  let changed = false;
  for (let t = 0; t < merged.length; t += 3) {
    const k = merged[t + 2];
    const fit = fitRange(text, tokens, merged[t], merged[t + 1]);
    if (fit === 'whole') {
      bump(counts, scanners[k].countKey);
      return wholeJson(scanners[k].strategy, text);
    }
    if (fit === null) continue;
    const s = Math.max(fit.start, cursor); // a widened range may reach into the previous one
    if (s >= fit.end) continue;
    const masked = stringSafe(scanners[k].strategy(text.slice(s, fit.end)));
    out += text.slice(cursor, s) + (fit.quote ? `"${masked}"` : masked);
    bump(counts, scanners[k].countKey);
    cursor = fit.end;
    changed = true;
  }
  return changed ? out + text.slice(cursor) : undefined;
}

/** A whole JSON value masked: a JSON string holding the strategy's output. */
export function wholeJson(strategy: Strategy, text: string): string {
  return `"${stringSafe(strategy(text))}"`;
}
