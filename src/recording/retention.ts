/**
 * Which recordings retention removes. Pure: the store lists, this decides, the store
 * deletes. Age first, then the oldest until the total fits; a live session's
 * recording is never removed.
 */
export interface StoredRecording {
  id: string;
  size: number;
  mtimeMs: number;
}

export interface RetentionPolicy {
  days: number;
  totalBytes: number;
}

export function expiredRecordings(files: StoredRecording[], now: number, policy: RetentionPolicy, live: ReadonlySet<string>): string[] {
  const cutoff = now - policy.days * 86_400_000;
  const doomed = new Set<string>();
  let total = 0;
  for (const f of files) {
    if (f.mtimeMs < cutoff && !live.has(f.id)) doomed.add(f.id);
    else total += f.size;
  }
  const oldestFirst = files.filter((f) => !doomed.has(f.id) && !live.has(f.id)).sort((a, b) => a.mtimeMs - b.mtimeMs);
  for (const f of oldestFirst) {
    if (total <= policy.totalBytes) break;
    doomed.add(f.id);
    total -= f.size;
  }
  return [...doomed];
}
