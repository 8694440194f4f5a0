/**
 * The deployment tests drive Debian's own tools (systemd-analyze, ansible-playbook,
 * ansible-lint, vagrant), which deploy/setup.sh installs. A missing tool skips its
 * check with the reason; with INTERLOCK_REQUIRE_BPF=1 (CI) it is a failure instead.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const REQUIRED = process.env.INTERLOCK_REQUIRE_BPF === '1';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v "$0"', cmd], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** The tool's path, or undefined after saying why its checks are skipped. */
export function tool(cmd: string, debianPackage: string): string | undefined {
  const path = which(cmd);
  if (path) return path;
  const why = `${cmd} is not installed (Debian package ${debianPackage}; deploy/setup.sh installs it)`;
  if (REQUIRED) throw new Error(`INTERLOCK_REQUIRE_BPF=1 but ${why}`);
  console.warn(`skipping: ${why}`);
  return undefined;
}

/** True when the check can run as root; otherwise says why not (a failure in CI). */
export function asRoot(what: string): boolean {
  if (process.getuid?.() === 0) return true;
  if (REQUIRED) throw new Error(`INTERLOCK_REQUIRE_BPF=1 but ${what} needs root`);
  console.warn(`skipping ${what}: it needs root`);
  return false;
}

/**
 * Lines `systemd-analyze verify` prints that come from running outside a booted
 * systemd, not from the units. Debian 12's systemd 252 prints none of them on a host
 * whose PID 1 is not systemd; hosts without a system bus or in a chroot print these.
 */
const OUTSIDE_SYSTEMD = [/Failed to connect to (the )?(system )?bus/i, /System has not been booted with systemd/i, /Running in chroot, ignoring/i];

/**
 * `systemd-analyze verify` on every unit in dir (drop-ins in dir/NAME.d included). It
 * exits 0 on unknown keys and bad values, only printing them: every other line it
 * prints is returned as a finding, and so is a non-zero exit.
 */
export function verifyUnits(analyze: string, dir: string): string[] {
  const units = readdirSync(dir).filter((f) => /\.(service|slice)$/.test(f)).map((f) => join(dir, f));
  const r = run(analyze, ['verify', '--man=no', ...units], { cwd: dir });
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() && !OUTSIDE_SYSTEMD.some((re) => re.test(l)));
  if (r.status !== 0) lines.push(`systemd-analyze exited ${r.status}`);
  return lines;
}
