/**
 * cgroup v2 plumbing: where the hierarchy is mounted, which cgroup a process is in,
 * and which directory a cgroup id (the directory's inode) names.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The cgroup2 mount point: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones. */
export function findCgroup2Mount(mounts = readFileSync('/proc/mounts', 'utf8')): string | undefined {
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2') return f[1];
  }
  return undefined;
}

/** The cgroup v2 path of a process ("/agents.slice/x.service"), from /proc/PID/cgroup. */
export function cgroupOfProcess(pid: number | 'self' = 'self'): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return line?.slice(3);
  } catch {
    return undefined;
  }
}

/** Is `path` the cgroup `ancestor` or below it? Both relative to the mount. */
export function isWithin(path: string, ancestor: string): boolean {
  const a = ancestor.replace(/\/+$/, '');
  return path === a || path.startsWith(`${a}/`) || a === '';
}

/**
 * Maps cgroup ids to paths under one subtree. Ids are inodes, so a path is
 * re-checked before a cached answer is trusted (cgroups come and go, inodes are reused).
 */
export class CgroupDirectory {
  private readonly byId = new Map<bigint, string>();
  private lastScan = 0;

  private readonly root: string;

  /** @param mount the cgroup2 mount; @param root the subtree (relative to the mount) to index */
  constructor(private readonly mount: string, root: string) {
    this.root = root.replace(/\/+$/, '');
  }

  /**
   * The path (relative to the mount) of cgroup `id`, or undefined if it is not under
   * the root. `pid`, the process that was in it, is the fast and exact way in: its
   * /proc entry names the path, which counts once the path's inode is `id`.
   */
  pathOf(id: bigint, pid?: number): string | undefined {
    const cached = this.byId.get(id);
    if (cached !== undefined && this.inodeOf(cached) === id) return cached;
    if (cached !== undefined) this.byId.delete(id);
    const viaPid = pid === undefined ? undefined : cgroupOfProcess(pid);
    if (viaPid !== undefined && isWithin(viaPid, this.root) && this.inodeOf(viaPid) === id) {
      this.byId.set(id, viaPid);
      return viaPid;
    }
    this.rescan();
    return this.byId.get(id);
  }

  private inodeOf(rel: string): bigint | undefined {
    try {
      return statSync(join(this.mount, rel), { bigint: true }).ino;
    } catch {
      return undefined;
    }
  }

  private rescan(): void {
    // a burst of unknown ids should not turn into a burst of tree walks
    const now = Date.now();
    if (now - this.lastScan < 50) return;
    this.lastScan = now;
    this.byId.clear();
    const walk = (rel: string, depth: number) => {
      const ino = this.inodeOf(rel);
      if (ino === undefined) return;
      this.byId.set(ino, rel);
      if (depth > 32) return;
      let entries;
      try {
        entries = readdirSync(join(this.mount, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) if (e.isDirectory()) walk(`${rel}/${e.name}`, depth + 1);
    };
    walk(this.root, 0);
  }
}
