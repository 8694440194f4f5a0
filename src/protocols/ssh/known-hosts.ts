/**
 * OpenSSH known_hosts: the upstream host key pin, and the lines agents need to trust
 * the node. Pure: text in, answers out.
 *
 *   [markers] hostpatterns keytype base64-key [comment]
 *   hostpatterns: comma-separated globs (`!` negates), `[host]:port` for a port other
 *   than 22, or a hashed `|1|salt|hash` entry. `@revoked` lines refuse a key outright;
 *   `@cert-authority` lines are not used for pinning.
 */
import { createHmac } from 'node:crypto';
import { globToRegExp } from '../../util/glob.js';

interface Entry {
  marker?: '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
}

export function parseKnownHosts(text: string): Entry[] {
  const out: Entry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: Entry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as Entry['marker'];
    if (fields.length < 3) continue;
    out.push({ marker, patterns: fields[0]!, keyType: fields[1]!, key: Buffer.from(fields[2]!, 'base64') });
  }
  return out;
}

/** The name a known_hosts line uses for host:port. */
export function hostEntryName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let hit = false;
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!');
    const glob = negated ? p.slice(1) : p;
    if (globToRegExp(glob.toLowerCase(), '').test(name.toLowerCase())) {
      if (negated) return false;
      hit = true;
    }
  }
  return hit;
}

export type HostKeyCheck = { ok: true } | { ok: false; reason: string };

/** Is `key` (the raw public key blob the server presented) pinned for host:port? */
export function checkHostKey(entries: Entry[], host: string, port: number, key: Buffer): HostKeyCheck {
  const name = hostEntryName(host, port);
  const mine = entries.filter((e) => patternsMatch(e.patterns, name));
  if (mine.some((e) => e.marker === '@revoked' && e.key.equals(key))) return { ok: false, reason: `the host key of ${name} is marked @revoked` };
  const pinned = mine.filter((e) => e.marker === undefined);
  if (pinned.length === 0) return { ok: false, reason: `no host key is pinned for ${name}` };
  if (pinned.some((e) => e.key.equals(key))) return { ok: true };
  return { ok: false, reason: `the host key ${name} presented does not match the pinned key (${pinned.map((e) => e.keyType).join(', ')}): possible interception, refusing` };
}
