/** Finding the configured target an agent dialed, and reading its vaulted secret. */
import { readFileSync } from 'node:fs';
import type { SecretRef, TargetDef } from './types.js';
import { readAddress, writeAddress } from '../interception/layout.js';

/** Canonical "ip|port" key: the address as the BPF map holds it (v4-mapped folds to IPv4, IPv6 compressed). */
export function endpointKey(ip: string, port: number): string {
  const bytes = Buffer.alloc(16);
  writeAddress(ip, bytes, 0);
  return `${readAddress(bytes, 0)}|${port}`;
}

export class TargetIndex {
  private readonly byEndpoint = new Map<string, TargetDef>();

  constructor(readonly targets: TargetDef[]) {
    for (const t of targets) this.byEndpoint.set(endpointKey(t.address.host, t.address.port), t);
  }

  byAddress(ip: string, port: number): TargetDef | undefined {
    return this.byEndpoint.get(endpointKey(ip, port));
  }
}

/** Read at use, not at start, so a rotated secret takes effect on the next session. */
export function readSecret(ref: SecretRef | undefined): string | undefined {
  if (!ref) return undefined;
  if ('env' in ref) {
    const v = process.env[ref.env];
    if (v === undefined) throw new Error(`secret environment variable ${ref.env} is not set`);
    return v;
  }
  try {
    return readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new Error(`cannot read secret file ${ref.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
