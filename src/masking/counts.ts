/**
 * Tallies of masked values, keyed by detector name ("email") or by the column a column rule
 * masked ("column:ssn"); accumulated across rows so the caller can audit a statement.
 */
export type MaskCounts = Record<string, number>;

export function bump(counts: MaskCounts, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}
