/**
 * Whether this machine can run the end-to-end tests (root, cgroup2, the addon, cgroup
 * BPF). With INTERLOCK_REQUIRE_BPF=1 (CI) a machine that cannot is an error, not a skip.
 */
import { findCgroup2Mount } from '../../src/identity/cgroups.js';
import { addon } from '../../src/interception/addon.js';

function whyNot(): string {
  if (process.getuid?.() !== 0) return 'not root';
  if (!findCgroup2Mount()) return 'no cgroup2 mount';
  try {
    const p = addon().probe();
    if (!p.cgroupSockAddr || !p.sockOps) return 'kernel lacks cgroup sock_addr / sock_ops programs';
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

export function bpfGate(): boolean {
  const reason = whyNot();
  if (!reason) return true;
  if (process.env.INTERLOCK_REQUIRE_BPF === '1') throw new Error(`end-to-end tests are required (INTERLOCK_REQUIRE_BPF=1) but cannot run here: ${reason}`);
  console.warn(`skipping end-to-end tests: ${reason}`);
  return false;
}
