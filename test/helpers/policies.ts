/**
 * One policy's rule set, built the way the daemon builds it: from config YAML (rules
 * indented by 6), through the real loader, for one target of each protocol.
 */
import { parseConfig } from '../../src/config/load.js';
import type { PolicyDef } from '../../src/config/types.js';
import { KubeRuleSet } from '../../src/policy/kube-rules.js';
import { RuleSet } from '../../src/policy/rules.js';
import { SshRuleSet } from '../../src/policy/ssh-rules.js';

const TARGETS = {
  db: '  - { name: db, protocol: postgres, address: 127.0.0.3:5432, upstream: { user: app } }',
  box: [
    '  - name: box',
    '    protocol: ssh',
    '    address: 127.0.0.4:22',
    '    upstream: { user: app, privateKey: { file: /etc/interlock/box.key }, knownHosts: { file: /etc/interlock/box.known_hosts } }',
  ].join('\n'),
  cluster: [
    '  - name: cluster',
    '    protocol: kubernetes',
    '    address: 127.0.0.5:6443',
    '    upstream: { token: { file: /etc/interlock/cluster.token }, ca: { file: /etc/interlock/cluster-ca.crt } }',
  ].join('\n'),
};

function policies(target: keyof typeof TARGETS, rules: string, name: string, masking = ''): PolicyDef[] {
  return parseConfig(`
agents: { cgroup: /agents.slice }
workloads: [ { name: bot, match: { cgroup: /agents.slice/bot }, groups: [g] } ]
targets:
${TARGETS[target]}
policies:
  - name: ${name}
    subjects: { groups: [g] }
    targets: [${target}]
    rules:
${rules}
${masking ? `    masking:\n${masking}` : ''}
`, `${name}.yaml`).policies;
}

export const sqlRules = (rules: string, name = 'p') => new RuleSet(policies('db', rules, name));
/** the PostgreSQL policy itself, with masking rules (YAML list items indented by 6), for a RuleSet and compileMasking */
export const sqlPolicies = (rules: string, masking: string, name = 'p') => policies('db', rules, name, masking);
export const sshRules = (rules: string, name = 'p') => new SshRuleSet(policies('box', rules, name));
export const kubeRules = (rules: string, name = 'p') => new KubeRuleSet(policies('cluster', rules, name));

/** The read-only policy: DDL denied, reads of public.* allowed, writes held for approval, SET and transactions allowed. */
export const READ_ONLY_RULES = [
  '      - { action: deny, match: { statements: [create, alter, drop, truncate, grant, revoke] }, message: "read-only: no schema changes" }',
  '      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }',
  '      - { action: approve, match: { statements: [insert, update, delete, merge] } }',
  '      - { action: allow, match: { statements: [set, transaction] } }',
].join('\n');
