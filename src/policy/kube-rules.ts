/**
 * Decisions for Kubernetes targets. Pure: (the policies' Kubernetes rules, a request's RequestInfo)
 * → allow | deny | approve.
 *
 * As for PostgreSQL and SSH: rules in order, first match wins, no match is a denial; ids are
 * "policy#n" with n the rule's position in its policy. A rule matches when every filter it has
 * holds. Where a request's reach is not known for sure, the reading depends on the action so
 * that a rule errs on the safe side: an allow rule must cover everything the request may touch,
 * a deny or approve rule hits if it may touch anything the rule names.
 *
 *   verbs       the request's verb. Exec, attach and portforward on pods count as create whatever
 *               the method: WebSocket clients open them with GET, and a rule granting reads must
 *               not grant running commands.
 *   apiGroups   globs on the group ("" is the core group; "*" matches every group, core included).
 *   resources   globs on "resource" or "resource/subresource": "pods" covers no subresource
 *               (not pods/exec, not pods/log), "pods/*" every subresource of pods, "*" every
 *               resource and no subresource, "**" every resource and every subresource.
 *   namespaces  globs on the request's namespace. A request without one (a cluster-scoped object,
 *               or a list across all namespaces, which the server reports alike) matches an allow
 *               rule only if its namespaces list "" explicitly (or it names no namespaces): "*" is
 *               any one namespace, and `get pods -A` reads them all. A deny or approve rule naming namespaces also hits a
 *               request without one, unless the resource is a well-known cluster-scoped one: a
 *               list across namespaces reads the denied namespace too.
 *   names       globs on the object's name. A request without a name (list, watch, create,
 *               deletecollection) touches objects the rule may not name: it matches no allow rule
 *               with names, and every deny or approve rule with names.
 *   commands    the command of a pods/exec request, judged as an SSH exec command is (see
 *               ssh-rules.ts): the argv is shell-quoted into one line, so its words are taken
 *               literally and argv[0] is the program, and wrappers such as `sh -c SCRIPT` are seen
 *               through, the script cut into parts. An allow rule must cover every part, a deny or
 *               approve rule hitting any part is enough. A program name with white space in it
 *               matches no allow rule (its part would read as a program with arguments). Requests
 *               that are not exec or attach never match a rule with commands; an attach (its
 *               command is whatever already runs), an exec without a command and a script that
 *               cannot be analysed match deny and approve rules with commands, never allow rules.
 *   pattern     a regular expression on the exec command line (with commands: as for SSH), and on
 *               the decoded path for other requests; an attach, whose command is not known, is
 *               read as for commands.
 *
 * Non-resource requests: discovery (/api, /apis, /apis/GROUP[/VERSION], /version, /openapi/…) and
 * the health endpoints are allowed by reading, with no rule (the caller only builds a rule set for
 * workloads with a policy on the target); every other non-resource URL is denied. Requests the
 * request reader marked invalid are denied.
 */
import type { PolicyDef, RuleDef } from '../config/types.js';
import type { RequestInfo } from '../protocols/kubernetes/request-info.js';
import { globToRegExp } from '../util/glob.js';
import { Lru } from './lru.js';
import { isKubeRule, type Decision } from './rules.js';
import { SshRuleSet } from './ssh-rules.js';

/** The Status object the API server answers a forbidden request with. */
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: 'Forbidden';
  details: { name?: string; group?: string; kind?: string };
  code: 403;
}

interface CompiledRule {
  id: string;
  def: RuleDef;
  verbs?: Set<string>;
  apiGroups?: RegExp[];
  resources?: RegExp[];
  namespaces?: { globs: RegExp[]; /** "" listed: requests without a namespace */ none: boolean };
  names?: RegExp[];
  /** a one-rule SSH engine judging exec commands as SSH exec is judged (it applies `pattern` too) */
  commands?: SshRuleSet;
  pattern?: RegExp;
}

/** What the rules read of a request. */
interface Subject {
  verb: string;
  apiGroup: string;
  /** "resource" or "resource/subresource" */
  resource: string;
  namespace: string;
  name: string;
  path: string;
  /** a namespace-less request that may read several namespaces (not a known cluster-scoped resource) */
  spansNamespaces: boolean;
  /** exec and attach run a command in a container */
  runs: boolean;
  /** the exec command as one shell-quoted line; undefined when not known (attach, exec without one) */
  command?: string;
}

const CACHED_DECISIONS = 4096;
/** requests with longer commands are decided each time: the cache stays small whatever an agent sends */
const MAX_CACHED_COMMAND = 4096;
const MAX_QUOTED = 200;

/** subresources that open a stream into a pod: creating one, whatever the HTTP method */
const POD_CONNECT = new Set(['exec', 'attach', 'portforward']);

/** Built-in cluster-scoped resources ("group/resource"): a request for them without a namespace reads no namespace. */
const CLUSTER_SCOPED = new Set([
  '/nodes', '/namespaces', '/persistentvolumes', '/componentstatuses',
  'storage.k8s.io/storageclasses', 'storage.k8s.io/csidrivers', 'storage.k8s.io/csinodes', 'storage.k8s.io/volumeattachments',
  'rbac.authorization.k8s.io/clusterroles', 'rbac.authorization.k8s.io/clusterrolebindings',
  'apiextensions.k8s.io/customresourcedefinitions', 'apiregistration.k8s.io/apiservices',
  'scheduling.k8s.io/priorityclasses', 'node.k8s.io/runtimeclasses', 'networking.k8s.io/ingressclasses',
  'admissionregistration.k8s.io/mutatingwebhookconfigurations', 'admissionregistration.k8s.io/validatingwebhookconfigurations',
  'admissionregistration.k8s.io/validatingadmissionpolicies', 'admissionregistration.k8s.io/validatingadmissionpolicybindings',
  'certificates.k8s.io/certificatesigningrequests', 'authentication.k8s.io/tokenreviews', 'authentication.k8s.io/selfsubjectreviews',
  'authorization.k8s.io/subjectaccessreviews', 'authorization.k8s.io/selfsubjectaccessreviews', 'authorization.k8s.io/selfsubjectrulesreviews',
  'flowcontrol.apiserver.k8s.io/flowschemas', 'flowcontrol.apiserver.k8s.io/prioritylevelconfigurations',
]);

/** Non-resource URLs any workload with a policy on the target may read: what kubectl asks before anything else. */
const DISCOVERY = [
  /^\/apis?$/,
  /^\/api\/[^/]+$/,
  /^\/apis\/[^/]+(?:\/[^/]+)?$/,
  /^\/version$/,
  /^\/openapi\/v2$/,
  /^\/openapi\/v3(?:\/.*)?$/,
  /^\/(?:healthz|livez|readyz)$/,
];

/** Bash reserved words: as argv[0] they are quoted, so the line still runs a program of that name. */
const RESERVED_WORDS = new Set(['case', 'coproc', 'do', 'done', 'elif', 'else', 'esac', 'fi', 'for', 'function', 'if', 'in', 'select', 'then', 'time', 'until', 'while']);

export class KubeRuleSet {
  private readonly rules: CompiledRule[];
  private readonly decisions = new Lru<string, Decision>(CACHED_DECISIONS);
  /** some rule matches on the path, which the cache key then has to hold */
  private readonly readsPath: boolean;

  constructor(policies: PolicyDef[]) {
    this.rules = policies.flatMap((p) => p.rules.flatMap((def, i) => (isKubeRule(def) ? [compile(`${p.name}#${i + 1}`, def)] : [])));
    this.readsPath = this.rules.some((r) => r.pattern !== undefined && r.commands === undefined);
  }

  get size(): number {
    return this.rules.length;
  }

  decide(info: RequestInfo): Decision {
    if (info.invalid !== undefined) return deny(`the request was refused: ${info.invalid}`);
    if (!info.isResourceRequest) return decideNonResource(info);
    const s = subject(info);
    const key = JSON.stringify([s.verb, s.apiGroup, s.resource, s.namespace, s.name, s.runs ? info.command ?? null : 0, this.readsPath ? s.path : '']);
    let d = this.decisions.get(key);
    if (!d) {
      d = Object.freeze(this.judge(s));
      if ((s.command?.length ?? 0) <= MAX_CACHED_COMMAND) this.decisions.set(key, d);
    }
    return d;
  }

  private judge(s: Subject): Decision {
    for (const r of this.rules) if (matches(r, s)) return ruleDecision(r, s);
    return deny(`no rule allows ${describe(s)}`);
  }
}

/**
 * The Status a kubectl user sees for a refused request, in the API server's own words:
 * `Error from server (Forbidden): deployments.apps "web" is forbidden: interlock: agents do not delete`.
 */
export function forbiddenStatus(info: RequestInfo, decision: Decision): KubeStatus {
  const why = `interlock: ${decision.message}`;
  const resource = info.isResourceRequest ? info.resource : '';
  const group = resource ? info.apiGroup : '';
  const name = resource ? info.name : '';
  const qualified = group ? `${resource}.${group}` : resource;
  const message = !resource ? `forbidden: ${why}` : name ? `${qualified} ${JSON.stringify(name)} is forbidden: ${why}` : `${qualified} is forbidden: ${why}`;
  // the server leaves empty details out
  const details = { name: name || undefined, group: group || undefined, kind: resource || undefined };
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Forbidden', details, code: 403 };
}

function decideNonResource(info: RequestInfo): Decision {
  const path = info.path.length > 1 ? info.path.replace(/\/$/, '') : info.path;
  if ((info.verb === 'get' || info.verb === 'head') && DISCOVERY.some((re) => re.test(path))) return { action: 'allow', message: 'discovery' };
  return deny(`no rule allows ${info.verb} of ${quote(info.path)}: only API resources and discovery are allowed through interlock`);
}

function subject(info: RequestInfo): Subject {
  const runs = isPodConnect(info) && info.subresource !== 'portforward';
  const argv = info.subresource === 'exec' ? info.command : undefined;
  return {
    verb: ruleVerb(info),
    apiGroup: info.apiGroup,
    resource: ruleResource(info),
    namespace: info.namespace,
    name: info.name,
    path: info.path,
    spansNamespaces: info.namespace === '' && !CLUSTER_SCOPED.has(`${info.apiGroup}/${info.resource}`),
    runs,
    command: runs && argv && argv.length > 0 ? execCommandLine(argv) : undefined,
  };
}

/** pods/exec, pods/attach and pods/portforward: streams into a pod, opened with whatever method */
export function isPodConnect(info: RequestInfo): boolean {
  return info.apiGroup === '' && info.resource === 'pods' && POD_CONNECT.has(info.subresource);
}

/** The verb as rules read it: opening a stream into a pod is a create, even by GET. */
export function ruleVerb(info: RequestInfo): string {
  return isPodConnect(info) && info.verb === 'get' ? 'create' : info.verb;
}

/** "pods", or "pods/exec" for a subresource */
export function ruleResource(info: RequestInfo): string {
  return info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
}

function compile(id: string, def: RuleDef): CompiledRule {
  const m = def.match;
  const globs = (list: string[]) => list.map((g) => globToRegExp(g, '/'));
  return {
    id,
    def,
    verbs: m.verbs ? new Set(m.verbs) : undefined,
    apiGroups: m.apiGroups && globs(m.apiGroups),
    resources: m.resources && globs(m.resources),
    namespaces: m.namespaces && { globs: globs(m.namespaces.filter((n) => n !== '')), none: m.namespaces.includes('') },
    names: m.names && globs(m.names.filter((n) => n !== '')),
    commands: m.commands && commandJudge(id, def),
    pattern: m.pattern !== undefined ? new RegExp(m.pattern) : undefined,
  };
}

/**
 * The rule's commands (and pattern) as a one-rule SSH policy. Deny and approve rules are judged
 * as a deny rule: such a rule set names its rule in the verdict exactly when some part hits it.
 */
function commandJudge(id: string, def: RuleDef): SshRuleSet {
  const action = def.action === 'allow' ? 'allow' : 'deny';
  const rule: RuleDef = { action, match: { commands: def.match.commands, pattern: def.match.pattern } };
  return new SshRuleSet([{ name: id, subjects: { groups: [], workloads: [] }, targets: [], rules: [rule], masking: [] }]);
}

function matches(r: CompiledRule, s: Subject): boolean {
  const all = r.def.action === 'allow';
  if (r.verbs && !r.verbs.has(s.verb)) return false;
  if (r.apiGroups && !r.apiGroups.some((re) => re.test(s.apiGroup))) return false;
  if (r.resources && !r.resources.some((re) => re.test(s.resource))) return false;
  if (r.namespaces) {
    const ns = r.namespaces;
    if (s.namespace ? !ns.globs.some((re) => re.test(s.namespace)) : !(ns.none || (!all && s.spansNamespaces))) return false;
  }
  if (r.names && (s.name ? !r.names.some((re) => re.test(s.name)) : all)) return false;
  if (r.commands) return s.runs && commandHolds(r.commands, s, all);
  if (r.pattern) {
    if (!s.runs) return r.pattern.test(s.path);
    return s.command === undefined ? !all : r.pattern.test(s.command);
  }
  return true;
}

function commandHolds(judge: SshRuleSet, s: Subject, all: boolean): boolean {
  // what an attach runs, or a command that cannot be analysed, is not known: it may be anything
  if (s.command === undefined) return !all;
  const v = judge.decideExec(s.command);
  if (v.parts.length === 0) return !all;
  // a part's text joins program and arguments with spaces: a program named "ls -l" would read as ls with -l
  if (all && v.parts.some((p) => /\s/.test(p.program))) return false;
  return all ? v.decision.action === 'allow' : v.decision.rule !== undefined;
}

/** An exec request's argv as one shell line whose words are the arguments, taken literally. */
export function execCommandLine(argv: string[]): string {
  return argv.map((arg, i) => shellWord(arg, i === 0)).join(' ');
}

function shellWord(arg: string, program: boolean): string {
  // as the program, a bare NAME=value would be an assignment and a reserved word a keyword
  const plain = /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) && !(program && (arg.includes('=') || RESERVED_WORDS.has(arg)));
  return plain ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function ruleDecision(r: CompiledRule, s: Subject): Decision {
  const { action, message, approvers, timeout } = r.def;
  const text =
    action === 'allow'
      ? message ?? 'allowed'
      : action === 'deny'
        ? message ?? `${describe(s)} is denied by rule ${r.id}`
        : `${describe(s)} needs approval (rule ${r.id}${approvers ? `, approvers: ${approvers.join(', ')}` : ''})${message ? `: ${message}` : ''}`;
  return { action, rule: r.id, message: text, approvers, timeout };
}

/** `delete of deployments "web" in namespace shop`, `create of pods/exec "web-0" in namespace shop (command "ls -l")` */
function describe(s: Subject): string {
  const object = s.name ? `${s.resource} ${JSON.stringify(s.name)}` : s.resource;
  const where = s.namespace ? `in namespace ${s.namespace}` : 'at cluster scope';
  const command = s.command !== undefined ? ` (command ${quote(s.command)})` : '';
  return `${s.verb} of ${object} ${where}${command}`;
}

function deny(message: string): Decision {
  return { action: 'deny', message };
}

function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED - 1)}…` : s);
}
