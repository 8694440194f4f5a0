/**
 * The node's recording key: 32 random bytes in a root-only file, created on first
 * start. Whoever holds it can sign chunks, so it must never be readable by agents.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export const KEY_BYTES = 32;

/** Reads the key; creates it (0600, parent 0700 if new) when absent and `create` is set. */
export function loadRecordingKey(file: string, opts: { create: boolean }): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) {
      throw new Error(`cannot read the recording key ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return createKey(file);
  }
  try {
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0) throw new Error(`the recording key ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    const key = readFileSync(fd);
    if (key.length !== KEY_BYTES) throw new Error(`the recording key ${file} holds ${key.length} bytes, expected ${KEY_BYTES}`);
    return key;
  } finally {
    closeSync(fd);
  }
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
