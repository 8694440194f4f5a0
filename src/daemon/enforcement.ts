/**
 * What enforces the policies that govern one (workload, target) on PostgreSQL: their SQL
 * rules in order, and their masking rules in order (policy by policy, rule by rule).
 */
import type { PolicyDef } from '../config/types.js';
import { RuleSet } from '../policy/rules.js';
import { compileMasking, type Masker } from '../masking/plan.js';

export interface Enforcement {
  judge: RuleSet;
  masker: Masker;
}

export function compileEnforcement(policies: PolicyDef[], maskingKey: Uint8Array): Enforcement {
  return { judge: new RuleSet(policies), masker: compileMasking(maskingRules(policies), { hashKey: maskingKey }) };
}

/** Each masking rule's name, by the index the masker knows it by: "policy masking#n" (1-based). */
export function maskingRuleNames(policies: readonly PolicyDef[]): string[] {
  return policies.flatMap((p) => p.masking.map((_, i) => `${p.name} masking#${i + 1}`));
}

function maskingRules(policies: readonly PolicyDef[]) {
  return policies.flatMap((p) => p.masking);
}
