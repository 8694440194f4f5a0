/**
 * The node's SSH host key: what agents' OpenSSH clients see for every intercepted
 * target, and trust through the known_hosts lines `interlock ssh-known-hosts` prints.
 * Created (ed25519, 0600) on first start; whoever reads it can impersonate targets
 * to agents, so it is root's alone.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';

export interface HostKey {
  /** OpenSSH private key text, as ssh2's Server takes it */
  privateKey: string;
  /** "ssh-ed25519 AAAA…" */
  publicKey: string;
}

export function loadHostKey(file: string, opts: { create: boolean }): HostKey {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const mode = fstatSync(fd).mode;
      if ((mode & 0o077) !== 0) throw new Error(`the SSH host key ${file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) {
      if ((e as NodeJS.ErrnoException).code) throw new Error(`cannot read the SSH host key ${file}: ${(e as NodeJS.ErrnoException).code}`);
      throw e;
    }
    text = createHostKey(file);
  }
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) throw new Error(`the SSH host key ${file} cannot be read: ${parsed.message}`);
  const key = Array.isArray(parsed) ? parsed[0]! : parsed;
  return { privateKey: text, publicKey: `${key.type} ${key.getPublicSSH().toString('base64')}` };
}

function createHostKey(file: string): string {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // ssh2's encoder now and then writes a key its own parser refuses (about 1 in 300): keep one that reads back
  let pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'interlock node host key' });
  for (let tries = 1; ssh2.utils.parseKey(pair.private) instanceof Error; tries++) {
    if (tries >= 20) throw new Error('could not generate a readable SSH host key');
    pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'interlock node host key' });
  }
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, pair.private);
  } finally {
    closeSync(fd);
  }
  return pair.private;
}
