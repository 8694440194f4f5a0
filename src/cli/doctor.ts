/** `interlock doctor`: can this host run interlock? One line per check, exit 1 on any failure. */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { findCgroup2Mount } from '../identity/cgroups.js';
import { addon } from '../interception/addon.js';
import { optionalConfig } from './config-or-default.js';

type Level = 'ok' | 'warn' | 'FAIL';
interface Check { level: Level; name: string; detail: string }

const CAPS = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_BPF: 39 } as const;

export function kernelAtLeast(rel: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

function effectiveCaps(): bigint {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'));
  return line ? BigInt(`0x${line.split(/\s+/)[1]}`) : 0n;
}

function mountOf(type: string, at: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => {
    const f = l.split(' ');
    return f[2] === type && f[1] === at;
  });
}

export function runChecks(configFile: string, explicit: boolean): Check[] {
  const checks: Check[] = [];
  const add = (level: Level, name: string, detail: string) => checks.push({ level, name, detail });

  const rel = release();
  add(kernelAtLeast(rel, 5, 8) ? 'ok' : 'FAIL', 'kernel', `${rel} (needs 5.8+ for cgroup connect/getpeername hooks and links)`);

  const caps = effectiveCaps();
  const missing = Object.entries(CAPS).filter(([, bit]) => !(caps & (1n << BigInt(bit)))).map(([n]) => n);
  add(missing.length ? 'FAIL' : 'ok', 'privileges', missing.length ? `missing ${missing.join(', ')} (run as root)` : `uid ${process.getuid?.()}, CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN`);

  add(existsSync('/sys/kernel/btf/vmlinux') ? 'ok' : 'warn', 'btf', existsSync('/sys/kernel/btf/vmlinux') ? '/sys/kernel/btf/vmlinux present' : 'no kernel BTF: the BPF program is built against /sys/kernel/btf/vmlinux, and its unix-socket and LSM hooks need it');

  const cg = findCgroup2Mount();
  add(cg ? 'ok' : 'FAIL', 'cgroup2', cg ? `mounted at ${cg}` : 'no cgroup2 mount: interlock needs cgroup v2');

  add(mountOf('bpf', '/sys/fs/bpf') ? 'ok' : 'warn', 'bpffs', mountOf('bpf', '/sys/fs/bpf') ? 'mounted at /sys/fs/bpf' : 'not mounted at /sys/fs/bpf (interlock run mounts it)');

  let lsm = '';
  try {
    lsm = readFileSync('/sys/kernel/security/lsm', 'utf8').trim();
  } catch {
    // securityfs not mounted
  }
  let lsmLoads = 'unknown';
  try {
    lsmLoads = addon().probe().lsmPrograms;
  } catch {
    // the addon's absence is reported below
  }
  const lsmOk = lsm.split(',').includes('bpf') && lsmLoads === 'yes';
  add(lsmOk ? 'ok' : 'warn', 'bpf-lsm', `${lsm ? `active LSMs: ${lsm}` : 'active LSMs unknown (securityfs not mounted)'}; BPF LSM programs load: ${lsmLoads}` +
    (lsmOk ? '' : ' (packet sockets are then left to CAP_NET_RAW, and unix sockets judged by the path dialed: keep InaccessiblePaths= in agent units)'));

  try {
    const p = addon().probe();
    const ok = p.cgroupSockAddr && p.sockOps && p.lruHash;
    add(ok ? 'ok' : 'FAIL', 'bpf', `cgroup sock_addr programs ${p.cgroupSockAddr ? 'yes' : 'NO'}, sock_ops ${p.sockOps ? 'yes' : 'NO'}, LRU maps ${p.lruHash ? 'yes' : 'NO'}`);
  } catch (e) {
    add('FAIL', 'bpf', (e as Error).message);
  }

  try {
    const config = optionalConfig(configFile, explicit);
    add('ok', 'config', config ? `${config.source}: ${config.targets.length} targets, ${config.workloads.length} workloads, ${config.policies.length} policies` : `no config at ${configFile} (skipped)`);
  } catch (e) {
    add('FAIL', 'config', (e as Error).message);
  }
  return checks;
}

export async function doctorCommand(configFile: string, explicit: boolean): Promise<number> {
  const checks = runChecks(configFile, explicit);
  for (const c of checks) process.stdout.write(`${c.level.padEnd(4)} ${c.name.padEnd(10)} ${c.detail}\n`);
  const failed = checks.filter((c) => c.level === 'FAIL').length;
  process.stdout.write(failed ? `${failed} check(s) failed\n` : 'interlock can run here\n');
  return failed ? 1 : 0;
}
