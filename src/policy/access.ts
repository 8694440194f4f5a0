/** Which policies bind a workload to a target. Pure: no policy, no access. */
import type { PolicyDef } from '../config/types.js';
import { UNKNOWN_WORKLOAD, type Identity } from '../identity/workloads.js';

export function policiesFor(policies: PolicyDef[], who: Identity, target: string): PolicyDef[] {
  if (who.workload === UNKNOWN_WORKLOAD) return [];
  return policies.filter(
    (p) =>
      p.targets.includes(target) &&
      (p.subjects.workloads.includes(who.workload) || p.subjects.groups.some((g) => who.groups.includes(g))),
  );
}
