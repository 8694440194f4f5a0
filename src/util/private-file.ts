/**
 * Reading a root-only secret file (a key): refused when group or others may read it,
 * with an error that names the file and says what to do. `undefined` when it does not
 * exist, so callers can create it.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';

export function readPrivateFile(file: string, what: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${what} ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    const mode = fstatSync(fd).mode;
    if ((mode & 0o077) !== 0) throw new Error(`${what} ${file} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}
