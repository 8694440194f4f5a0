/**
 * Shared settings for the property-based fuzz tests (test/unit/fuzz-*.test.ts).
 *
 * The default run count keeps every fuzz file together well under a minute, so they run in CI
 * with the other unit tests. A longer run, on demand:
 *
 *   INTERLOCK_FUZZ_RUNS=200000 npx vitest run test/unit/fuzz-
 *
 * Each property also stops after a time limit (fast-check's interruptAfterTimeLimit), counted
 * as a pass for the runs made so far: INTERLOCK_FUZZ_TIME_LIMIT_MS, default 5 s, or 30 min when
 * INTERLOCK_FUZZ_RUNS is set. On failure fast-check reports the seed and the counterexample's
 * path; INTERLOCK_FUZZ_SEED replays a seed.
 */
import fc, { type Parameters } from 'fast-check';

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`);
  return n;
}

const RUNS = envInt('INTERLOCK_FUZZ_RUNS');
const SEED = envInt('INTERLOCK_FUZZ_SEED');
/** per property */
export const FUZZ_TIME_LIMIT_MS = envInt('INTERLOCK_FUZZ_TIME_LIMIT_MS') ?? (RUNS === undefined ? 5_000 : 30 * 60_000);
/** vitest's timeout for one fuzz test: its time limit plus room for shrinking a counterexample */
export const FUZZ_TEST_TIMEOUT_MS = FUZZ_TIME_LIMIT_MS + 60_000;

/**
 * fast-check parameters for one property. `defaultRuns` is the property's share of the CI
 * budget (costly properties take fewer); INTERLOCK_FUZZ_RUNS overrides it for every property.
 */
export function fuzz<T>(defaultRuns: number): Parameters<T> {
  return {
    numRuns: RUNS ?? defaultRuns,
    interruptAfterTimeLimit: FUZZ_TIME_LIMIT_MS,
    markInterruptAsFailure: false,
    ...(SEED !== undefined ? { seed: SEED } : {}),
  };
}


/** Cut points for splitting a byte stream into chunks; each is taken modulo the stream's length. */
export const cuts = (): fc.Arbitrary<number[]> => fc.array(fc.nat(), { maxLength: 12 });

/** `buf` split at the given points (sorted, duplicates dropped): no chunk is empty. */
export function split(buf: Buffer, at: readonly number[]): Buffer[] {
  if (buf.length === 0) return [];
  const points = [...new Set(at.map((p) => p % buf.length))].filter((p) => p > 0).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}

/** Arbitrary bytes as a Buffer. */
export const bytes = (maxLength = 256): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
