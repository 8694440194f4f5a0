/**
 * The node's recording key: 32 random bytes in a root-only file, created on first
 * start. Whoever holds it can sign chunks, so it must never be readable by agents.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { readPrivateFile } from '../util/private-file.js';
import { dirname } from 'node:path';

export const KEY_BYTES = 32;

/** Reads the key; creates it (0600, parent 0700 if new) when absent and `create` is set. */
export function loadRecordingKey(file: string, opts: { create: boolean }): Buffer {
  const key = readPrivateFile(file, 'the recording key');
  if (!key) {
    if (!opts.create) throw new Error(`cannot read the recording key ${file}: ENOENT`);
    return createKey(file);
  }
  if (key.length !== KEY_BYTES) throw new Error(`the recording key ${file} holds ${key.length} bytes, expected ${KEY_BYTES}`);
  return key;
}

function createKey(file: string): Buffer {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(KEY_BYTES);
  // 'wx': two daemons starting at once must not each write a different key
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, key);
  } finally {
    closeSync(fd);
  }
  return key;
}
