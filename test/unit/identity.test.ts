import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UNKNOWN_WORKLOAD, WorkloadMatcher } from '../../src/identity/workloads.js';
import { CgroupDirectory, findCgroup2Mount, isWithin } from '../../src/identity/cgroups.js';
import type { WorkloadDef } from '../../src/config/types.js';

describe('WorkloadMatcher', () => {
  const defs: WorkloadDef[] = [
    { name: 'report-bot', match: { cgroup: '/agents.slice/report-bot.service' }, groups: ['analysts'] },
    { name: 'pinned', match: { cgroup: '/agents.slice/pinned.service', uid: 1500 }, groups: ['ops'] },
    { name: 'jobs', match: { cgroup: '/agents.slice/job-*.scope' }, groups: ['batch', 'analysts'] },
    { name: 'by-uid', match: { uid: 2000 }, groups: [] },
    { name: 'slashed', match: { cgroup: '/agents.slice/slashed.service//' }, groups: ['s'] },
    { name: 'shadowed', match: { cgroup: '/agents.slice/report-bot.service' }, groups: ['never'] },
  ];
  const m = new WorkloadMatcher(defs);

  it('matches an exact cgroup path, whatever the uid', () => {
    expect(m.identify('/agents.slice/report-bot.service', 1000)).toEqual({
      workload: 'report-bot', groups: ['analysts'], cgroup: '/agents.slice/report-bot.service', uid: 1000,
    });
    expect(m.identify('/agents.slice/report-bot.service/child', 1000).workload).toBe(UNKNOWN_WORKLOAD);
  });

  it('matches a glob within one segment', () => {
    expect(m.identify('/agents.slice/job-42.scope', 7).workload).toBe('jobs');
    expect(m.identify('/agents.slice/job-42.scope', 7).groups).toEqual(['batch', 'analysts']);
    expect(m.identify('/agents.slice/job-42.service', 7).workload).toBe(UNKNOWN_WORKLOAD);
    expect(m.identify('/agents.slice/x/job-42.scope', 7).workload).toBe(UNKNOWN_WORKLOAD);
  });

  it('matches by uid alone, with or without a cgroup', () => {
    expect(m.identify('/anything', 2000).workload).toBe('by-uid');
    expect(m.identify(undefined, 2000).workload).toBe('by-uid');
    expect(m.identify(undefined, 2001).workload).toBe(UNKNOWN_WORKLOAD);
  });

  it('requires both cgroup and uid when both are given', () => {
    expect(m.identify('/agents.slice/pinned.service', 1500).workload).toBe('pinned');
    expect(m.identify('/agents.slice/pinned.service', 1501).workload).toBe(UNKNOWN_WORKLOAD);
    expect(m.identify('/agents.slice/other.service', 1500).workload).toBe(UNKNOWN_WORKLOAD);
  });

  it('lets the first match win', () => {
    expect(m.identify('/agents.slice/report-bot.service', 0).groups).toEqual(['analysts']);
    const first = new WorkloadMatcher([defs[3]!, { name: 'later', match: { cgroup: '/a' }, groups: [] }]);
    expect(first.identify('/a', 2000).workload).toBe('by-uid');
    expect(first.identify('/a', 1).workload).toBe('later');
  });

  it('ignores trailing slashes in the configured cgroup', () => {
    expect(m.identify('/agents.slice/slashed.service', 0).workload).toBe('slashed');
  });

  it('never matches a cgroup rule when the cgroup is unknown', () => {
    expect(m.identify(undefined, 1500).workload).toBe(UNKNOWN_WORKLOAD);
    expect(new WorkloadMatcher([{ name: 'all', match: { cgroup: '/**' }, groups: [] }]).identify(undefined, 0).workload)
      .toBe(UNKNOWN_WORKLOAD);
  });

  it('falls back to unknown with no groups, keeping cgroup and uid', () => {
    expect(m.identify('/elsewhere', 33)).toEqual({ workload: 'unknown', groups: [], cgroup: '/elsewhere', uid: 33 });
    expect(new WorkloadMatcher([]).identify(undefined, 0)).toEqual({ workload: 'unknown', groups: [], cgroup: undefined, uid: 0 });
  });
});

describe('findCgroup2Mount', () => {
  it('finds the unified hierarchy on a hybrid host', () => {
    const hybrid = [
      'sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0',
      'tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0',
      'cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0',
      'cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0',
      '',
    ].join('\n');
    expect(findCgroup2Mount(hybrid)).toBe('/sys/fs/cgroup/unified');
  });

  it('finds /sys/fs/cgroup on a unified host', () => {
    const unified = [
      'proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0',
      'cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0',
      'bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0',
    ].join('\n');
    expect(findCgroup2Mount(unified)).toBe('/sys/fs/cgroup');
  });

  it('gives undefined without a cgroup2 mount', () => {
    const v1 = [
      'tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0',
      'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0',
      // a device or mount point merely named cgroup2 is not a cgroup2 mount
      'cgroup2 /mnt/cgroup2 tmpfs rw 0 0',
    ].join('\n');
    expect(findCgroup2Mount(v1)).toBeUndefined();
    expect(findCgroup2Mount('')).toBeUndefined();
  });
});

describe('isWithin', () => {
  it('accepts the ancestor itself and its descendants', () => {
    expect(isWithin('/agents.slice', '/agents.slice')).toBe(true);
    expect(isWithin('/agents.slice/bot.service', '/agents.slice')).toBe(true);
    expect(isWithin('/agents.slice/a/b', '/agents.slice/')).toBe(true);
  });

  it('rejects siblings that merely share a prefix', () => {
    expect(isWithin('/agents.slice2', '/agents.slice')).toBe(false);
    expect(isWithin('/agents.slice2/bot.service', '/agents.slice')).toBe(false);
    expect(isWithin('/system.slice/x', '/agents.slice')).toBe(false);
    expect(isWithin('/agents', '/agents.slice')).toBe(false);
  });

  it('treats / as containing everything', () => {
    expect(isWithin('/system.slice/x', '/')).toBe(true);
  });
});

describe('CgroupDirectory', () => {
  let mount: string;
  const ino = (rel: string) => statSync(join(mount, rel), { bigint: true }).ino;
  const mk = (rel: string) => mkdirSync(join(mount, rel), { recursive: true });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeEach(() => {
    mount = mkdtempSync(join(tmpdir(), 'interlock-cgroup-'));
    mk('/agents.slice/bot.service');
    mk('/agents.slice/jobs.slice/job-1.scope');
    mk('/system.slice/sshd.service');
  });
  afterEach(() => rmSync(mount, { recursive: true, force: true }));

  it('maps inodes of the root and nested directories to paths relative to the mount', () => {
    const dir = new CgroupDirectory(mount, '/agents.slice');
    expect(dir.pathOf(ino('/agents.slice/jobs.slice/job-1.scope'))).toBe('/agents.slice/jobs.slice/job-1.scope');
    expect(dir.pathOf(ino('/agents.slice/bot.service'))).toBe('/agents.slice/bot.service');
    expect(dir.pathOf(ino('/agents.slice'))).toBe('/agents.slice');
  });

  it('builds clean paths from a root of / or one with a trailing slash', () => {
    expect(new CgroupDirectory(mount, '/agents.slice/').pathOf(ino('/agents.slice/bot.service'))).toBe('/agents.slice/bot.service');
    expect(new CgroupDirectory(mount, '/').pathOf(ino('/system.slice/sshd.service'))).toBe('/system.slice/sshd.service');
  });

  it('gives undefined for a cgroup outside the root', () => {
    const dir = new CgroupDirectory(mount, '/agents.slice');
    expect(dir.pathOf(ino('/system.slice/sshd.service'))).toBeUndefined();
    expect(dir.pathOf(ino('/system.slice'))).toBeUndefined();
  });

  it('notices a directory created after the first scan', async () => {
    const dir = new CgroupDirectory(mount, '/agents.slice');
    expect(dir.pathOf(ino('/agents.slice/bot.service'))).toBe('/agents.slice/bot.service');
    mk('/agents.slice/late.service');
    await sleep(60);
    expect(dir.pathOf(ino('/agents.slice/late.service'))).toBe('/agents.slice/late.service');
  });

  it('notices a removed-and-recreated directory, even when its old inode is reused', async () => {
    const dir = new CgroupDirectory(mount, '/agents.slice');
    const rel = '/agents.slice/bot.service';
    const before = ino(rel);
    expect(dir.pathOf(before)).toBe(rel);
    rmdirSync(join(mount, rel));
    mk('/agents.slice/other.service'); // file systems such as ext4 hand the freed inode to this one
    mk(rel);
    const after = ino(rel);
    expect(after).not.toBe(before);
    await sleep(60);
    // the cached answer for `before` is stale: it is now another directory's inode, or nobody's
    const reused = ino('/agents.slice/other.service') === before;
    expect(dir.pathOf(before)).toBe(reused ? '/agents.slice/other.service' : undefined);
    expect(dir.pathOf(after)).toBe(rel);
  });

  it('forgets a removed directory', async () => {
    const dir = new CgroupDirectory(mount, '/agents.slice');
    const rel = '/agents.slice/jobs.slice/job-1.scope';
    const id = ino(rel);
    expect(dir.pathOf(id)).toBe(rel);
    rmdirSync(join(mount, rel));
    await sleep(60);
    expect(dir.pathOf(id)).toBeUndefined();
  });
});
