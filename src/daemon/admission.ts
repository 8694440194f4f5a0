/**
 * Who is on the other end of an accepted connection, and may they reach what they
 * dialed? Protocol-agnostic: the protocol session turns a refusal into its own
 * kind of error.
 */
import type { PolicyDef, TargetDef } from '../config/types.js';
import { TargetIndex } from '../config/targets.js';
import type { CgroupDirectory } from '../identity/cgroups.js';
import type { Identity, WorkloadMatcher } from '../identity/workloads.js';
import { formatEndpoint, type Origin } from '../interception/layout.js';
import { policiesFor } from '../policy/access.js';

export interface Admission {
  origin?: Origin;
  identity?: Identity;
  target?: TargetDef;
  policies: PolicyDef[];
  /** set when the connection must be refused; code is a PostgreSQL SQLSTATE-style hint */
  refusal?: { code: string; message: string };
}

export interface AdmissionDeps {
  targets: TargetIndex;
  policies: PolicyDef[];
  cgroups: CgroupDirectory;
  workloads: WorkloadMatcher;
  /** groups a workload holds right now from its IdP (empty when its token cannot be had: fail closed) */
  idpGroups?: (workload: string) => string[];
}

export function admit(origin: Origin | null, deps: AdmissionDeps): Admission {
  if (!origin) {
    return {
      policies: [],
      refusal: { code: '28000', message: 'this connection was not redirected by interlock: dial the target\'s own address, not the proxy port' },
    };
  }
  const matched = deps.workloads.identify(deps.cgroups.pathOf(origin.cgroupId, origin.pid), origin.uid);
  const extra = deps.idpGroups?.(matched.workload) ?? [];
  const identity = extra.length ? { ...matched, groups: [...new Set([...matched.groups, ...extra])] } : matched;
  const target = deps.targets.byAddress(origin.dstIp, origin.dstPort);
  const dst = formatEndpoint(origin.dstIp, origin.dstPort);
  if (!target) {
    return { origin, identity, policies: [], refusal: { code: '08004', message: `interlock: no target configured for ${dst}` } };
  }
  const policies = policiesFor(deps.policies, identity, target.name);
  if (policies.length === 0) return { origin, identity, target, policies, refusal: noPolicyRefusal(identity.workload, target.name, dst) };
  return { origin, identity, target, policies };
}

/** A workload no policy binds to the target it dialed (at `dst`) is refused at connect. */
export function noPolicyRefusal(workload: string, target: string, dst: string): { code: string; message: string } {
  return { code: '28000', message: `interlock: workload ${workload} has no policy for target ${target} (${dst})` };
}
