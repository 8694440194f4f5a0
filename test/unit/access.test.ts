import { describe, it, expect } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { TargetIndex } from '../../src/config/targets.js';
import { WorkloadMatcher, type Identity } from '../../src/identity/workloads.js';
import type { CgroupDirectory } from '../../src/identity/cgroups.js';
import type { Origin } from '../../src/interception/layout.js';
import { policiesFor } from '../../src/policy/access.js';
import { admit, type AdmissionDeps } from '../../src/daemon/admission.js';

const config = parseConfig(`agents:
  cgroup: /agents.slice
workloads:
  - name: report-bot
    match: { cgroup: /agents.slice/report-bot.service }
    groups: [analysts]
  - name: etl
    match: { cgroup: /agents.slice/etl.service }
    groups: [loaders]
  - name: idle
    match: { uid: 4242 }
targets:
  - name: orders-db
    protocol: postgres
    address: 127.0.0.3:5432
    upstream: { user: app }
  - name: audit-db
    protocol: postgres
    address: "[fd00::3]:5432"
    upstream: { user: app }
policies:
  - name: analysts-read
    subjects: { groups: [analysts, unknown] }
    targets: [orders-db]
  - name: etl-write
    subjects: { workloads: [etl] }
    targets: [orders-db, audit-db]
`, 'interlock.yaml');

const who = (workload: string, groups: string[] = []): Identity => ({ workload, groups, uid: 1000 });
const names = (ps: { name: string }[]) => ps.map((p) => p.name);

describe('policiesFor', () => {
  it('grants by workload name', () => {
    expect(names(policiesFor(config.policies, who('etl', ['loaders']), 'audit-db'))).toEqual(['etl-write']);
  });

  it('grants by group', () => {
    expect(names(policiesFor(config.policies, who('report-bot', ['analysts']), 'orders-db'))).toEqual(['analysts-read']);
    expect(names(policiesFor(config.policies, who('someone', ['loaders', 'analysts']), 'orders-db'))).toEqual(['analysts-read']);
  });

  it('returns every policy that applies, in config order', () => {
    expect(names(policiesFor(config.policies, who('etl', ['analysts']), 'orders-db'))).toEqual(['analysts-read', 'etl-write']);
  });

  it('never grants the unknown workload, even when a policy lists "unknown" as a group', () => {
    expect(policiesFor(config.policies, who('unknown', ['unknown']), 'orders-db')).toEqual([]);
    expect(policiesFor(config.policies, who('unknown', ['analysts']), 'orders-db')).toEqual([]);
  });

  it('grants nothing for a target the policy does not name', () => {
    expect(policiesFor(config.policies, who('report-bot', ['analysts']), 'audit-db')).toEqual([]);
    expect(policiesFor(config.policies, who('etl'), 'missing-db')).toEqual([]);
  });

  it('grants nothing to a workload without policies', () => {
    expect(policiesFor(config.policies, who('idle'), 'orders-db')).toEqual([]);
  });
});

describe('admit', () => {
  const cgroupPaths = new Map<bigint, string>([
    [11n, '/agents.slice/report-bot.service'],
    [12n, '/agents.slice/etl.service'],
    [13n, '/agents.slice/stranger.service'],
  ]);
  const deps: AdmissionDeps = {
    targets: new TargetIndex(config.targets),
    policies: config.policies,
    cgroups: { pathOf: (id: bigint) => cgroupPaths.get(id) } as unknown as CgroupDirectory,
    workloads: new WorkloadMatcher(config.workloads),
  };
  const origin = (o: Partial<Origin>): Origin => ({
    dstIp: '127.0.0.3', dstPort: 5432, proxyPort: 15432, protocol: 1, family: 4,
    pid: 77, uid: 1000, cgroupId: 11n, comm: 'psql', ...o,
  });

  it('refuses a connection that was not redirected', () => {
    const a = admit(null, deps);
    expect(a.refusal?.message).toContain('not redirected');
    expect(a.refusal?.code).toBe('28000');
    expect(a.policies).toEqual([]);
    expect(a.identity).toBeUndefined();
  });

  it('refuses an unconfigured destination, naming it', () => {
    const a = admit(origin({ dstIp: '127.0.0.9' }), deps);
    expect(a.refusal?.message).toContain('no target configured for 127.0.0.9:5432');
    expect(a.refusal?.code).toBe('08004');
    expect(a.target).toBeUndefined();
    expect(a.identity?.workload).toBe('report-bot');
    expect(admit(origin({ dstPort: 5433 }), deps).refusal?.message).toContain('no target configured for 127.0.0.3:5433');
    expect(admit(origin({ dstIp: 'fd00::9', family: 6 }), deps).refusal?.message)
      .toContain('no target configured for [fd00::9]:5432');
  });

  it('accepts a v4-mapped destination as the IPv4 target', () => {
    const a = admit(origin({ dstIp: '::ffff:127.0.0.3', family: 6 }), deps);
    expect(a.refusal).toBeUndefined();
    expect(a.target?.name).toBe('orders-db');
    expect(names(a.policies)).toEqual(['analysts-read']);
  });

  it('refuses a workload with no policy for the target, naming both', () => {
    const a = admit(origin({ cgroupId: 11n, dstIp: 'fd00::3', family: 6 }), deps);
    expect(a.target?.name).toBe('audit-db');
    expect(a.refusal?.code).toBe('28000');
    expect(a.refusal?.message).toContain('workload report-bot has no policy for target audit-db');
    expect(a.policies).toEqual([]);
  });

  it('refuses an unidentified process as workload unknown', () => {
    for (const cgroupId of [13n, 999n]) {
      const a = admit(origin({ cgroupId }), deps);
      expect(a.identity?.workload).toBe('unknown');
      expect(a.refusal?.message).toContain('workload unknown has no policy for target orders-db');
    }
  });

  it('admits a granted workload with its policies and identity', () => {
    const o = origin({ cgroupId: 12n, dstIp: 'FD00::3', family: 6 });
    const a = admit(o, deps);
    expect(a.refusal).toBeUndefined();
    expect(a.origin).toBe(o);
    expect(a.identity).toEqual({ workload: 'etl', groups: ['loaders'], cgroup: '/agents.slice/etl.service', uid: 1000 });
    expect(a.target?.name).toBe('audit-db');
    expect(names(a.policies)).toEqual(['etl-write']);
  });
});
