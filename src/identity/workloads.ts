/** Which configured workload a process is, from its cgroup path and uid. Pure. */
import type { WorkloadDef } from '../config/types.js';
import { globToRegExp } from '../util/glob.js';

export const UNKNOWN_WORKLOAD = 'unknown';

export interface Identity {
  workload: string;
  groups: string[];
  /** relative to the cgroup2 mount; undefined when the cgroup is gone or outside the agents' cgroup */
  cgroup?: string;
  uid: number;
}

export class WorkloadMatcher {
  private readonly compiled: { def: WorkloadDef; cgroup?: RegExp }[];

  constructor(workloads: WorkloadDef[]) {
    this.compiled = workloads.map((def) => ({
      def,
      cgroup: def.match.cgroup === undefined ? undefined : globToRegExp(def.match.cgroup.replace(/\/+$/, '')),
    }));
  }

  /** The first workload whose every match field fits; the `unknown` workload (no groups) otherwise. */
  identify(cgroup: string | undefined, uid: number): Identity {
    for (const { def, cgroup: re } of this.compiled) {
      if (re && (cgroup === undefined || !re.test(cgroup))) continue;
      if (def.match.uid !== undefined && def.match.uid !== uid) continue;
      return { workload: def.name, groups: def.groups, cgroup, uid };
    }
    return { workload: UNKNOWN_WORKLOAD, groups: [], cgroup, uid };
  }
}
