/**
 * The node's SSH host key: what agents' OpenSSH clients see for every intercepted
 * target, and trust through the known_hosts lines `interlock ssh-known-hosts` prints.
 * Created (ed25519, 0600) on first start; whoever reads it can impersonate targets
 * to agents, so it is root's alone.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { readPrivateFile } from '../../util/private-file.js';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';

export interface HostKey {
  /** OpenSSH private key text, as ssh2's Server takes it */
  privateKey: string;
  /** "ssh-ed25519 AAAA…" */
  publicKey: string;
}

export function loadHostKey(file: string, opts: { create: boolean }): HostKey {
  const stored = readPrivateFile(file, 'the SSH host key');
  if (!stored && !opts.create) throw new Error(`cannot read the SSH host key ${file}: ENOENT`);
  const text = stored ? stored.toString('utf8') : createHostKey(file);
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
