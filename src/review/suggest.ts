/**
 * Access review, second step: the least-privilege policy that each workload's own activity
 * implies, one per workload and target, as PolicyDefs and as config YAML.
 *
 * Rules come only from statements that ran (allowed, or held and approved). How they are
 * grouped, and what each grouping over-grants:
 *   - allow rules group statements with the same set of kinds and the same access class
 *     (every relation read, every relation written, or mixed); relations and functions are
 *     the union over the group. So statements of one kind may combine what the group's
 *     statements did separately: a join of two tables that were only selected one at a
 *     time, or a function used on one table applied to another.
 *   - a mixed group (e.g. INSERT … SELECT) cannot say which relation was written, so a
 *     deny rule first refuses writes to every relation the workload only read; what
 *     remains is that relations it wrote anywhere may be written by any statement of the group.
 *   - opaque statements (DO, CALL, EXECUTE, COPY to files) get rules naming their kind,
 *     which allow any statement of that kind; kind `other` covers several statement types.
 *   - set and transaction statements become rules of their own: any setting may be
 *     changed, search_path too (the engine then reads unqualified names under the new path).
 *   - approve rules match on any hit (the engine's reading for approve), by the statements'
 *     most dangerous kind and the relations they wrote (or read, when they wrote none).
 * Every allow rule lists relations and functions explicitly (empty lists where none were
 * used), because an absent list covers anything.
 *
 * The result is then checked with the policy engine against every recorded command: a
 * command that was denied (or held and never approved) but would now run splits its group
 * into exact footprints, and if even that allows it, it is denied by its exact text.
 * Whatever still differs is reported as a warning in the YAML.
 *
 * SSH targets get rules from the exec commands that ran, the channels that were allowed and
 * the sftp operations that were allowed; each part of a command (see shell.ts) is judged alone
 * by the engine, so the rules list parts:
 *   - a part is allowed by its exact text, as a glob without wildcards. Parts sharing their
 *     program and the words up to the first operand ("git log" of "git log -n 5") that ran
 *     with WIDEN_AT or more distinct texts become "git log *": any further options and
 *     arguments are allowed after that prefix, including words only known at run time. Other
 *     programs, and other first operands of the same program, stay denied.
 *   - a command with `*` or `?` in a part cannot be written as an exact glob: it is allowed by
 *     an anchored regular expression on its whole text (`channels: [exec]` with `pattern`).
 *   - an interactive shell and the forwardings are allowed only when they were used and
 *     allowed; a shell runs whatever is typed in it, and a forwarding reaches any destination.
 *   - sftp paths: a file's content (open, remove, rename, links) is granted as its directory,
 *     "dir/*" (every file directly in it, not below); other operations (opendir, stat, mkdir,
 *     setstat…) as the exact path; more than MAX_EXACT_PER_DIR exact paths in one directory
 *     become the directory. Reads and writes are separate rules (`access`). A file opened for
 *     both reading and writing is recorded as a write: its read is not granted. The rules name
 *     `channels: [sftp]`, so shell redirections get nothing, but legacy scp transfers of the
 *     same paths are allowed (the engine treats them as the file transfers they are).
 * Checked as for PostgreSQL: a widened prefix that lets a refused command through goes back to
 * exact texts; a refused command or file operation still allowed is denied by its exact text
 * or path, before every allow.
 *
 * Kubernetes targets get rules from the requests that ran, read as the rules read them (the verb
 * of exec, attach and portforward is create):
 *   - resource requests: one allow rule per API group, set of verbs and set of namespaces, listing
 *     the resources used with exactly those, so that the rules together allow each verb on each
 *     resource in each namespace where it ran and no other combination. Object names are not
 *     listed: a verb allowed on a resource in a namespace is allowed on every object there. A
 *     request without a namespace (a cluster-scoped object, or a list across all namespaces) is
 *     allowed by `namespaces: [""]`, which no namespaced request matches.
 *   - exec: commands are judged part by part, as SSH exec commands are, so the rule for a set of
 *     namespaces lists the exact parts that ran there as globs without wildcards. Parts that ran
 *     in separate commands may then run together ("ls" and "cat x" allow `sh -c "ls; cat x"`). A
 *     command with `*` or `?` in a part, or a program with white space in its name, is allowed by
 *     an anchored expression on its whole line. An exec without a command is never allowed.
 *   - what only ran once approved gets approve rules built the same way, after the allows; the
 *     engine reads approve rules as hitting anything they may touch (a list across namespaces, a
 *     command with one of the parts), and such requests are held for a human rather than denied.
 *   - discovery (/api, /apis, /version, /openapi) needs no rule: the engine lets any workload
 *     with a policy on the target read it.
 * Checked as for SSH: a refused request the rules would allow is denied, before every allow, by
 * its exact path and verb (exec: its command line; attach: its pod), unless that would refuse a
 * request that ran, which is then left allowed with a warning.
 *
 * Pure apart from the SQL parser: initAnalysis() must have completed.
 */
import { Document, isMap, isScalar, visit } from 'yaml';
import type { PolicyDef, RuleAction, RuleDef } from '../config/types.js';
import { analyzeQuery, type FunctionRef, type RelationRef, type StatementKind } from '../policy/analysis.js';
import { KubeRuleSet } from '../policy/kube-rules.js';
import { RuleSet, type Decision } from '../policy/rules.js';
import type { RequestInfo } from '../protocols/kubernetes/request-info.js';
import { analyzeShellCommand, type ShellPart } from '../policy/shell.js';
import { normalizePath, SshRuleSet, type PathAccess, type SshChannelKind } from '../policy/ssh-rules.js';
import {
  compareText,
  dayOf,
  fileAccesses,
  isPodConnect,
  kubeCommandLine,
  kubeRequestOf,
  kubeResource,
  kubeRuleVerb,
  UNKNOWN,
  type ChannelUse,
  type CommandUse,
  type FileOperation,
  type ReviewData,
  type SshUsage,
  type TargetReview,
} from './aggregate.js';

export interface PolicySuggestion {
  workload: string;
  target: string;
  policy: PolicyDef;
  /** why each rule is there, one per rule (written as YAML comments) */
  ruleNotes: string[];
  /** what the suggestion does not reproduce, for a human to look at */
  warnings: string[];
}

export interface Suggestions {
  suggestions: PolicySuggestion[];
  /** workloads and targets no policy was suggested for, and why */
  skipped: string[];
}

export function suggest(data: ReviewData): Suggestions {
  const suggestions: PolicySuggestion[] = [];
  const skipped: string[] = [];
  const names = new Set<string>();
  for (const w of data.workloads) {
    for (const t of w.targets) {
      const where = `${w.workload} on ${t.target} (${t.protocol})`;
      if (w.workload === UNKNOWN) skipped.push(`${where}: sessions no workload matched cannot be a policy's subject`);
      else if (t.target === UNKNOWN) skipped.push(`${where}: the recordings name no target`);
      else if (!t.commands.some((c) => c.allowed + c.approved > 0)) skipped.push(`${where}: nothing ran, and with no policy everything is denied`);
      else if (t.usage?.protocol === 'ssh') {
        const s = suggestSsh(w.workload, t, t.usage, `suggested-${w.workload}-${t.target}`);
        if (!s.policy.rules.length) skipped.push(`${where}: nothing it was allowed can be named by a rule (${s.warnings.join('; ') || 'no commands, channels or paths'})`);
        else suggestions.push({ ...s, policy: { ...s.policy, name: uniqueName(names, s.policy.name) } });
      } else if (t.protocol === 'kubernetes') {
        const s = suggestKubernetes(w.workload, t, `suggested-${w.workload}-${t.target}`);
        if (!s.policy.rules.length) skipped.push(`${where}: nothing it was allowed needs a rule (${s.warnings.join('; ') || 'only discovery ran'})`);
        else suggestions.push({ ...s, policy: { ...s.policy, name: uniqueName(names, s.policy.name) } });
      } else if (t.protocol === 'postgres') suggestions.push(suggestPostgres(w.workload, t, uniqueName(names, `suggested-${w.workload}-${t.target}`)));
      else skipped.push(`${where}: no policy suggestions for this protocol yet`);
    }
  }
  return { suggestions, skipped };
}

export function suggestPolicies(data: ReviewData): PolicyDef[] {
  return suggest(data).suggestions.map((s) => s.policy);
}

/** The suggestions as a `policies:` document, ready to merge into the config, with notes as comments. */
export function suggestedPolicyYaml(data: ReviewData): string {
  const { suggestions, skipped } = suggest(data);
  const doc = new Document({ policies: suggestions.map((s) => policyYaml(s.policy)) });
  const period = data.first === undefined || data.last === undefined ? 'no activity' : `activity from ${dayOf(data.since ?? data.first)} to ${dayOf(data.last)}`;
  doc.commentBefore = comment([
    `Least-privilege policies suggested by interlock review (${period}).`,
    'Derived from what each workload ran: review before use.',
    ...skipped.map((s) => `not suggested: ${s}`),
  ]);
  suggestions.forEach((s, i) => {
    const policyNode = doc.getIn(['policies', i], true);
    if (isMap(policyNode) && s.warnings.length) policyNode.commentBefore = comment(s.warnings.map((w) => `warning: ${w}`));
    s.ruleNotes.forEach((note, j) => {
      const ruleNode = doc.getIn(['policies', i, 'rules', j], true);
      if (isMap(ruleNode)) ruleNode.commentBefore = comment([note]);
    });
  });
  // short lists and subjects on one line, the way the config is usually written
  visit(doc, {
    Seq(_, node) {
      if (node.items.every((item) => isScalar(item))) node.flow = true;
    },
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.value === 'subjects' && isMap(pair.value)) pair.value.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

// ---------------------------------------------------------------------------
// One statement that ran, as the policy engine sees it

interface RelationUseRef {
  pattern: string;
  access: 'read' | 'write';
  /** lower-case name, and whether the statement named a schema */
  name: string;
  qualified: boolean;
}

interface Footprint {
  action: 'allow' | 'approve';
  text: string;
  kinds: StatementKind[];
  relations: RelationUseRef[];
  functions: string[];
  opaque: boolean;
  runs: number;
  approvedBy: string[];
}

type AccessClass = 'read' | 'write' | 'mixed';

interface RuleGroup {
  key: string;
  /** the key before splitting into exact footprints */
  coarseKey: string;
  footprints: Footprint[];
  runs: number;
}

interface Built {
  rules: RuleDef[];
  notes: string[];
  /** the allow group behind each rule (by index), for splitting */
  groups: (RuleGroup | undefined)[];
}

function suggestPostgres(workload: string, t: TargetReview, name: string): PolicySuggestion {
  const warnings: string[] = [];
  const { footprints, unanalysed } = footprintsOf(t.commands);
  if (unanalysed) warnings.push(`${unanalysed} distinct commands that ran do not parse and are not covered`);
  const policyOf = (rules: RuleDef[]) => workloadPolicy(name, workload, t.target, rules);
  const check = (b: Built) => refusedButRun(new RuleSet([policyOf(b.rules)]), t.commands);

  const { built, leaks } = buildWithSplits(workload, footprints, check);
  const denies = exactTextDenies(leaks, new Set(footprints.map((f) => f.text)), warnings);
  const denyNote = 'refused in the period, though it looks like statements that ran: denied by its exact text (other spellings are not)';
  const policy = policyOf([...denies, ...built.rules]);
  const rules = new RuleSet([policy]);
  warnings.push(...selfCheck((command) => rules.decideText(command).decision.action, t.commands));
  return { workload, target: t.target, policy, ruleNotes: [...denies.map(() => denyNote), ...built.notes], warnings };
}

/** Every statement of every command that ran, once for its allowed runs and once for its approved runs. */
function footprintsOf(commands: CommandUse[]): { footprints: Footprint[]; unanalysed: number } {
  const footprints: Footprint[] = [];
  let unanalysed = 0;
  for (const use of commands) {
    if (use.allowed + use.approved === 0) continue;
    const q = analyzeQuery(use.command);
    if (q.error) {
      unanalysed++;
      continue;
    }
    for (const s of q.statements) {
      const base = {
        text: s.text,
        kinds: s.kinds,
        relations: s.relations.map(relationUse),
        functions: uniqueSorted(s.functions.flatMap(functionPatterns), compareFunctionPatterns),
        opaque: s.opaque,
      };
      if (use.allowed > 0) footprints.push({ ...base, action: 'allow', runs: use.allowed, approvedBy: [] });
      if (use.approved > 0) footprints.push({ ...base, action: 'approve', runs: use.approved, approvedBy: use.approvedBy });
    }
  }
  return { footprints, unanalysed };
}

/**
 * Builds the rules, splits the allow groups that let a refused command through into exact
 * footprints, and keeps a split only where it stopped one of the leaks that caused it.
 */
function buildWithSplits(workload: string, footprints: Footprint[], check: (b: Built) => Leak[]): { built: Built; leaks: Leak[] } {
  const split = new Set<string>();
  const first = build(workload, footprints, split);
  const firstLeaks = check(first);
  if (!firstLeaks.length) return { built: first, leaks: firstLeaks };

  const causes = new Map<string, Leak[]>();
  for (const leak of firstLeaks) {
    for (const d of leak.decisions) {
      const group = d.rule === undefined ? undefined : first.groups[ruleIndex(d.rule)];
      if (d.action === 'deny' || !group) continue;
      split.add(group.coarseKey);
      causes.set(group.coarseKey, [...(causes.get(group.coarseKey) ?? []), leak]);
    }
  }
  const second = build(workload, footprints, split);
  const secondLeaks = check(second);
  const stillLeaking = new Set(secondLeaks.map((l) => l.use.command));
  const useless = [...causes].filter(([, ls]) => ls.every((l) => stillLeaking.has(l.use.command))).map(([key]) => key);
  if (!useless.length) return { built: second, leaks: secondLeaks };
  for (const key of useless) split.delete(key);
  const third = build(workload, footprints, split);
  return { built: third, leaks: check(third) };
}

/** What splitting cannot separate (same kinds, relations and functions as what ran) is denied by its text. */
function exactTextDenies(leaks: Leak[], ranTexts: Set<string>, warnings: string[]): RuleDef[] {
  const denies: RuleDef[] = [];
  for (const leak of leaks) {
    const statement = leak.statements.find((s, i) => leak.decisions[i]!.action !== 'deny' && !ranTexts.has(s));
    if (statement === undefined) {
      warnings.push(`refused in the period but indistinguishable from statements that ran, so allowed here: ${oneLine(leak.use.command)}`);
      continue;
    }
    const message = leak.use.denied > 0 ? (leak.use.message ?? 'denied in the reviewed period') : 'held for approval and never approved';
    denies.push({ action: 'deny', match: { pattern: exactPattern(statement) }, message });
  }
  return denies;
}

function build(workload: string, footprints: Footprint[], split: Set<string>): Built {
  const allowGroups = groupBy(footprints.filter((f) => f.action === 'allow'), (f) => {
    const coarse = allowKey(f);
    return { coarse, key: split.has(coarse) ? `${coarse}|${f.relations.map((r) => r.pattern).sort().join(',')}|${f.functions.join(',')}` : coarse };
  });
  const approveGroups = groupBy(footprints.filter((f) => f.action === 'approve'), (f) => {
    const key = ['approve', f.kinds[0], approveMode(f), f.opaque ? 'opaque' : ''].join('|');
    return { coarse: key, key };
  });

  const built: Built = { rules: [], notes: [], groups: [] };
  const readOnly = readOnlyRelations(footprints, allowGroups);
  if (readOnly.length) {
    built.rules.push({
      action: 'deny',
      match: { relations: readOnly, access: 'write' },
      message: `${workload} only read these relations in the reviewed period`,
    });
    built.notes.push('only read in the period: writes are denied, even by statements a rule below allows');
    built.groups.push(undefined);
  }
  for (const g of allowGroups) {
    built.rules.push(allowRule(g));
    built.notes.push(`${runs(g.runs)} of ${distinct(g)} (${allowNote(g)})`);
    built.groups.push(g);
  }
  for (const g of approveGroups) {
    built.rules.push(approveRule(g));
    built.notes.push(`${runs(g.runs)} approved, of ${distinct(g)}`);
    built.groups.push(undefined);
  }
  return built;
}

function allowKey(f: Footprint): string {
  return ['allow', f.kinds.join(','), accessClass(f), f.opaque ? 'opaque' : ''].join('|');
}

function allowKeyClass(g: RuleGroup): AccessClass {
  return accessClass(g.footprints[0]!);
}

/** A statement with no relations reads (vacuously): it shares the rule of the reads. */
function accessClass(f: Footprint): AccessClass {
  if (f.relations.every((r) => r.access === 'read')) return 'read';
  if (f.relations.every((r) => r.access === 'write')) return 'write';
  return 'mixed';
}

function allowRule(g: RuleGroup): RuleDef {
  const relations = uniqueSorted(g.footprints.flatMap((f) => f.relations.map((r) => r.pattern)));
  const functions = uniqueSorted(g.footprints.flatMap((f) => f.functions), compareFunctionPatterns);
  const access = allowKeyClass(g);
  return {
    action: 'allow',
    match: {
      statements: [...g.footprints[0]!.kinds],
      relations,
      ...(access !== 'mixed' && relations.length ? { access } : {}),
      functions,
    },
  };
}

/** Approve rules match on any hit: narrow them by what the statements wrote, else by what they read. */
function approveMode(f: Footprint): 'write' | 'read' | 'none' {
  if (f.relations.some((r) => r.access === 'write')) return 'write';
  return f.relations.length ? 'read' : 'none';
}

function approveRule(g: RuleGroup): RuleDef {
  const first = g.footprints[0]!;
  const mode = approveMode(first);
  const relations = mode === 'none' ? [] : uniqueSorted(g.footprints.flatMap((f) => f.relations.filter((r) => r.access === mode).map((r) => r.pattern)));
  const approvers = uniqueSorted(g.footprints.flatMap((f) => f.approvedBy));
  return {
    action: 'approve',
    match: { statements: [first.kinds[0]!], ...(mode === 'none' ? {} : { relations, access: mode }) },
    ...(approvers.length ? { approvers } : {}),
  };
}

/**
 * Relations listed by an allow rule that cannot say which were written (mixed access), but
 * that no statement wrote. A deny rule matches an unqualified name in any schema, so a name
 * the workload wrote unqualified is left out: denying it would refuse what ran.
 */
function readOnlyRelations(footprints: Footprint[], allowGroups: RuleGroup[]): string[] {
  const refs = footprints.flatMap((f) => f.relations);
  const written = new Set(refs.filter((r) => r.access === 'write').map((r) => r.pattern));
  const writtenUnqualified = new Set(refs.filter((r) => r.access === 'write' && !r.qualified).map((r) => r.name));
  const unguarded = allowGroups.filter((g) => allowKeyClass(g) === 'mixed').flatMap((g) => g.footprints.flatMap((f) => f.relations));
  return uniqueSorted(unguarded.filter((r) => !written.has(r.pattern) && !writtenUnqualified.has(r.name)).map((r) => r.pattern));
}

// ---------------------------------------------------------------------------
// Checking the suggestion against what was recorded

interface Leak {
  use: CommandUse;
  statements: string[];
  decisions: Decision[];
}

/** Commands refused in the period (denied, or held and never approved) that the rules would run. */
function refusedButRun(rules: RuleSet, commands: CommandUse[]): Leak[] {
  const leaks: Leak[] = [];
  for (const use of commands) {
    if (use.allowed + use.approved > 0 || use.denied + use.held === 0) continue; // ran at least once, or never refused
    const q = analyzeQuery(use.command);
    const { decision, statements } = rules.decideQuery(q);
    const leaked = use.denied > 0 ? decision.action !== 'deny' : decision.action === 'allow';
    if (leaked) leaks.push({ use, statements: q.statements.map((s) => s.text), decisions: statements });
  }
  return leaks;
}

/** Recorded commands the final rules decide differently. */
function selfCheck(decide: (command: string) => RuleAction, commands: CommandUse[]): string[] {
  const warnings: string[] = [];
  for (const use of commands) {
    const now = decide(use.command);
    const ran = use.allowed + use.approved > 0;
    if (ran && use.denied > 0) warnings.push(`both ran and was denied in the period (did the policy change?); now ${now}: ${oneLine(use.command)}`);
    else if (use.allowed > 0 && now !== 'allow') warnings.push(`was allowed, now ${now}: ${oneLine(use.command)}`);
    else if (use.approved > 0 && use.allowed === 0 && now === 'deny') warnings.push(`was approved, now denied: ${oneLine(use.command)}`);
    else if (!ran && use.denied > 0 && now !== 'deny') warnings.push(`was denied, now ${now}: ${oneLine(use.command)}`);
  }
  return warnings;
}

function ruleIndex(ruleId: string): number {
  return Number(ruleId.slice(ruleId.lastIndexOf('#') + 1)) - 1;
}

// ---------------------------------------------------------------------------
// SSH

/** Channels decided as a whole; exec goes by its commands, sftp opens through its path rules. */
const WHOLE_CHANNELS: readonly SshChannelKind[] = ['shell', 'port-forward', 'remote-forward', 'agent-forward', 'x11'];
/** parts sharing a prefix that ran with at least this many distinct texts allow any arguments after it */
const WIDEN_AT = 3;
/** sftp operations on a file's content: granted as the file's directory; the others as the exact path */
const CONTENT_OPS = new Set(['open', 'remove', 'rename', 'posix-rename@openssh.com', 'hardlink@openssh.com', 'symlink', 'copy-data']);
/** more exact paths than this in one directory, for one access, are granted as the directory */
const MAX_EXACT_PER_DIR = 8;
/** how many forwarding destinations a note names */
const NAMED_REQUESTS = 5;
const REFUSED = 'refused in the reviewed period';
/** parts that are not programs (see shell.ts) */
const PART_LABELS: Record<string, string> = {
  '=': 'variable assignments',
  '>': 'writes by redirection',
  '>>': 'appends by redirection',
  '<': 'reads by redirection',
};

interface NotedRule {
  rule: RuleDef;
  note: string;
}

/** One distinct part of the exec commands that ran. */
interface ExecPart {
  text: string;
  program: string;
  /** the program and its words up to the first operand: what a widened glob keeps */
  prefix: string;
  dynamic: boolean;
  runs: number;
}

interface ExecUse {
  parts: ExecPart[];
  /** commands with a glob character in a part: allowed by their whole text */
  byText: CommandUse[];
}

/** Every name directly in a directory, or one exact path, for one access. */
interface PathGrant {
  access: PathAccess;
  path: string;
  inDirectory: boolean;
}

/** A suggested policy: the one workload it was learned from, on one target. */
function workloadPolicy(name: string, workload: string, target: string, rules: RuleDef[]): PolicyDef {
  return { name, subjects: { groups: [], workloads: [workload] }, targets: [target], rules, masking: [] };
}

function suggestSsh(workload: string, t: TargetReview, usage: SshUsage, name: string): PolicySuggestion {
  const warnings: string[] = [];
  const policyOf = (noted: NotedRule[]) => workloadPolicy(name, workload, t.target, noted.map((n) => n.rule));
  const exec = execUse(usage.commands, warnings);
  const grants = pathGrants(usage.fileOperations);
  if (!grants.length && usage.channels.some((c) => c.kind === 'sftp' && c.allowed > 0)) {
    warnings.push('sftp was opened, but no file operation it was allowed is recorded: no path is allowed');
  }
  const others = [...channelRules(usage.channels), ...pathRules(grants)];

  // a widened prefix that lets a refused command through goes back to exact texts
  const exact = new Set<string>();
  const first = policyOf([...execRules(exec, exact), ...others]);
  const wide = widenedPrefixes(exec.parts, exact);
  for (const use of execLeaks(new SshRuleSet([first]), usage.commands)) {
    for (const prefix of widenedHits(wide, use.command)) exact.add(prefix);
  }
  const allows = [...execRules(exec, exact), ...others];
  const check = new SshRuleSet([policyOf(allows)]);
  const denies = [...execTextDenies(execLeaks(check, usage.commands)), ...pathDenies(pathLeaks(check, usage.fileOperations), usage.fileOperations, warnings)];

  const noted = [...denies, ...allows];
  const policy = policyOf(noted);
  const rules = new SshRuleSet([policy]);
  warnings.push(
    ...selfCheck((command) => rules.decideExec(command).decision.action, usage.commands),
    ...channelSelfCheck(rules, usage.channels),
    ...fileSelfCheck(rules, usage.fileOperations),
  );
  return { workload, target: t.target, policy, ruleNotes: noted.map((n) => n.note), warnings };
}

// --- exec

/** The distinct parts of the exec commands that ran, and the commands only their whole text can allow. */
function execUse(commands: CommandUse[], warnings: string[]): ExecUse {
  const parts = new Map<string, ExecPart>();
  const byText: CommandUse[] = [];
  for (const use of commands) {
    const runs = use.allowed + use.approved;
    if (runs === 0) continue;
    const analysis = analyzeShellCommand(use.command);
    if (analysis.error !== undefined || !analysis.parts.length) {
      warnings.push(`ran, but the shell analysis cannot read it now, so no rule allows it: ${oneLine(use.command)}`);
      continue;
    }
    if (analysis.parts.some((p) => hasGlobCharacter(p.text))) {
      byText.push(use);
      continue;
    }
    for (const p of analysis.parts) {
      let part = parts.get(p.text);
      if (!part) parts.set(p.text, (part = { text: p.text, program: p.program, prefix: commandPrefix(p), dynamic: p.dynamic !== undefined, runs: 0 }));
      part.runs += runs;
    }
  }
  return { parts: [...parts.values()], byText };
}

/** The program and its words up to and including the first operand: "git log" of "git log -n 5". */
function commandPrefix(part: ShellPart): string {
  const operand = part.args.findIndex((a) => !(a.startsWith('-') && a.length > 1));
  return operand < 0 ? part.text : [part.program, ...part.args.slice(0, operand + 1)].join(' ');
}

/** Prefixes run with WIDEN_AT or more distinct texts, unless kept exact. Dynamic parts stay exact. */
function widenedPrefixes(parts: ExecPart[], exact: Set<string>): Set<string> {
  const texts = new Map<string, number>();
  for (const p of parts) if (!p.dynamic) texts.set(p.prefix, (texts.get(p.prefix) ?? 0) + 1);
  return new Set([...texts].filter(([prefix, n]) => n >= WIDEN_AT && !exact.has(prefix)).map(([prefix]) => prefix));
}

/** One allow rule per program, the most run first, then the commands allowed by their text. */
function execRules(exec: ExecUse, exact: Set<string>): NotedRule[] {
  const wide = widenedPrefixes(exec.parts, exact);
  const programs = new Map<string, ExecPart[]>();
  for (const p of exec.parts) programs.set(p.program, [...(programs.get(p.program) ?? []), p]);
  const totalRuns = (ps: ExecPart[]) => ps.reduce((n, p) => n + p.runs, 0);
  const ordered = [...programs].sort(([a, pa], [b, pb]) => totalRuns(pb) - totalRuns(pa) || compareText(a, b));
  const byProgram = ordered.map(([program, parts]): NotedRule => {
    const widened = uniqueSorted(parts.filter((p) => !p.dynamic && wide.has(p.prefix)).map((p) => p.prefix));
    const globs = uniqueSorted(parts.map((p) => (!p.dynamic && wide.has(p.prefix) ? `${p.prefix} *` : p.text)));
    const what = PART_LABELS[program] ?? `program ${JSON.stringify(program)}`;
    const more = widened.length ? `; any further arguments after ${widened.map((w) => JSON.stringify(w)).join(', ')} (each ran with ${WIDEN_AT} or more)` : '';
    return { rule: { action: 'allow', match: { commands: globs } }, note: `${what}: ${runs(totalRuns(parts))} of ${plural(parts.length, 'distinct part')}${more}` };
  });
  const byText = exec.byText.map((use): NotedRule => ({
    rule: { action: 'allow', match: { channels: ['exec'], pattern: exactPattern(use.command) } },
    note: `${runs(use.allowed + use.approved)} of a command with glob characters, allowed by its exact text only`,
  }));
  return [...byProgram, ...byText];
}

/** Exec commands refused in the period (denied, or held and never run) that the rules would run. */
function execLeaks(rules: SshRuleSet, commands: CommandUse[]): CommandUse[] {
  return commands.filter((use) => {
    if (use.allowed + use.approved > 0 || use.denied + use.held === 0) return false;
    const now = rules.decideExec(use.command).decision.action;
    return use.denied > 0 ? now !== 'deny' : now === 'allow';
  });
}

/** The widened prefixes that cover a part of the command. */
function widenedHits(wide: Set<string>, command: string): string[] {
  const parts = analyzeShellCommand(command).parts;
  return [...wide].filter((prefix) => parts.some((p) => (p.dynamic ? (p.staticPrefix ?? '').startsWith(`${prefix} `) : p.text === prefix || p.text.startsWith(`${prefix} `))));
}

/** What is left are refused commands made of parts that ran each on their own: denied by their text. */
function execTextDenies(leaks: CommandUse[]): NotedRule[] {
  return leaks.map((use) => ({
    rule: { action: 'deny', match: { channels: ['exec'], pattern: exactPattern(use.command) }, message: REFUSED },
    note: 'refused in the period, though each of its parts is allowed on its own: denied by its exact text',
  }));
}

// --- channels

/** Shell and forwardings: allowed only when used and allowed. */
function channelRules(channels: ChannelUse[]): NotedRule[] {
  return WHOLE_CHANNELS.flatMap((kind): NotedRule[] => {
    const c = channels.find((x) => x.kind === kind);
    return c && c.allowed > 0 ? [{ rule: { action: 'allow', match: { channels: [kind] } }, note: channelNote(c) }] : [];
  });
}

function channelNote(c: ChannelUse): string {
  if (c.kind === 'shell') return `interactive shell, allowed ${times(c.allowed)}: whatever is typed in it runs, the command rules do not apply to it`;
  const asked = c.requests.slice(0, NAMED_REQUESTS).map((r) => r.name).join(', ');
  return `${c.kind}, allowed ${times(c.allowed)}, to any destination (asked for: ${asked}${c.requests.length > NAMED_REQUESTS ? ', …' : ''})`;
}

function channelSelfCheck(rules: SshRuleSet, channels: ChannelUse[]): string[] {
  const warnings: string[] = [];
  for (const c of channels) {
    const kind = WHOLE_CHANNELS.find((k) => k === c.kind);
    if (!kind) continue;
    const now = rules.decideChannel(kind).action;
    if (c.allowed > 0 && c.denied + c.held > 0) warnings.push(`${kind} was both allowed and refused in the period (did the policy change?); now ${now}`);
    else if (c.allowed > 0 && now !== 'allow') warnings.push(`${kind} was allowed, now ${now}`);
    else if (c.allowed === 0 && now === 'allow') warnings.push(`${kind} was refused, now allowed`);
  }
  return warnings;
}

// --- sftp paths

/** What the allowed sftp operations needed: directories for content, exact paths for the rest. */
function pathGrants(ops: FileOperation[]): PathGrant[] {
  const raw: PathGrant[] = [];
  for (const o of ops) {
    if (!o.allowed) continue;
    for (const a of normalAccesses(o)) {
      const dir = CONTENT_OPS.has(o.op) ? parentOf(a.path) : undefined;
      raw.push(dir === undefined ? { access: a.access, path: a.path, inDirectory: false } : { access: a.access, path: dir, inDirectory: true });
    }
  }
  return tidyGrants(raw);
}

/** Crowded directories become directory grants; exact paths a directory grant covers are dropped. */
function tidyGrants(raw: PathGrant[]): PathGrant[] {
  const grants = new Map(raw.map((g) => [grantKey(g), g]));
  const crowds = new Map<string, { dir: PathGrant; n: number }>();
  for (const g of grants.values()) {
    const dir = directoryOf(g);
    if (!dir) continue;
    const crowd = crowds.get(grantKey(dir)) ?? { dir, n: 0 };
    crowd.n++;
    crowds.set(grantKey(dir), crowd);
  }
  for (const { dir, n } of crowds.values()) if (n > MAX_EXACT_PER_DIR) grants.set(grantKey(dir), dir);
  return [...grants.values()]
    .filter((g) => {
      const dir = directoryOf(g);
      return !dir || !grants.has(grantKey(dir));
    })
    .sort((a, b) => compareText(a.access, b.access) || compareText(grantGlob(a), grantGlob(b)));
}

/** Reads, then writes; paths with glob characters in a rule of their own, by regular expression. */
function pathRules(grants: PathGrant[]): NotedRule[] {
  return (['read', 'write'] as const).flatMap((access): NotedRule[] => {
    const mine = grants.filter((g) => g.access === access);
    const plain = mine.filter((g) => !hasGlobCharacter(g.path));
    const special = mine.filter((g) => hasGlobCharacter(g.path));
    const verb = access === 'read' ? 'reads' : 'writes';
    const rules: NotedRule[] = [];
    if (plain.length) {
      rules.push({
        rule: { action: 'allow', match: pathMatch(plain, access) },
        note: `sftp ${verb}: any file directly in the directories whose files it ${access === 'read' ? 'read' : 'wrote'} (dir/*), other paths exactly as used`,
      });
    }
    if (special.length) rules.push({ rule: { action: 'allow', match: pathMatch(special, access) }, note: `sftp ${verb} of paths with glob characters, by regular expression` });
    return rules;
  });
}

/** A `paths` match for grants of one access: globs, or for paths holding `*` or `?` an anchored expression. */
function pathMatch(grants: PathGrant[], access: PathAccess): RuleDef['match'] {
  if (!grants.some((g) => hasGlobCharacter(g.path))) return { channels: ['sftp'], paths: grants.map(grantGlob), access };
  return { channels: ['sftp'], paths: ['**'], access, pattern: `^(?:${grants.map(grantRegex).join('|')})$` };
}

/** Refused sftp operations whose every path check the rules would allow. */
function pathLeaks(rules: SshRuleSet, ops: FileOperation[]): FileOperation[] {
  return ops.filter((o) => !o.allowed && allowedNow(rules, o) === true);
}

/** A leaking operation is denied by a path it touched that no allowed operation needed. */
function pathDenies(leaks: FileOperation[], ops: FileOperation[], warnings: string[]): NotedRule[] {
  const needed = new Set(ops.filter((o) => o.allowed).flatMap(normalAccesses).map(accessKey));
  const denies = new Map<string, NotedRule>();
  for (const o of leaks) {
    const free = normalAccesses(o).find((a) => !needed.has(accessKey(a)));
    if (!free) {
      warnings.push(`sftp ${o.op} of ${describePaths(o)} was refused in the period, but allowed operations needed the same paths: allowed here`);
      continue;
    }
    const grant = { access: free.access, path: free.path, inDirectory: false };
    denies.set(accessKey(free), {
      rule: { action: 'deny', match: pathMatch([grant], free.access), message: REFUSED },
      note: `sftp ${o.op} refused in the period, though its directory is allowed: denied by its exact path`,
    });
  }
  return [...denies.values()];
}

function fileSelfCheck(rules: SshRuleSet, ops: FileOperation[]): string[] {
  const warnings: string[] = [];
  for (const o of ops) {
    const now = allowedNow(rules, o);
    if (now === undefined) continue;
    if (o.allowed && !now) warnings.push(`sftp ${o.op} of ${describePaths(o)} was allowed, now denied`);
    else if (!o.allowed && now) warnings.push(`sftp ${o.op} of ${describePaths(o)} was refused, now allowed`);
  }
  return warnings;
}

/** Whether the rules allow every path check of the operation; undefined when it has none. */
function allowedNow(rules: SshRuleSet, o: FileOperation): boolean | undefined {
  const checks = fileAccesses(o);
  return checks.length ? checks.every((a) => rules.decidePath(a.access, a.path).action === 'allow') : undefined;
}

/** The operation's path checks with paths as the engine normalises them; one it cannot is left out (always refused). */
function normalAccesses(o: FileOperation): { access: PathAccess; path: string }[] {
  return fileAccesses(o).flatMap((a) => {
    const normal = normalizePath(a.path);
    return 'path' in normal ? [{ access: a.access, path: normal.path }] : [];
  });
}

/** The directory a normalised path is in; none for "/" and ".". */
function parentOf(path: string): string | undefined {
  if (path === '/' || path === '.') return undefined;
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '.' : slash === 0 ? '/' : path.slice(0, slash);
}

/** The directory grant that would cover an exact grant. */
function directoryOf(g: PathGrant): PathGrant | undefined {
  const parent = g.inDirectory ? undefined : parentOf(g.path);
  return parent === undefined ? undefined : { access: g.access, path: parent, inDirectory: true };
}

function grantGlob(g: PathGrant): string {
  if (!g.inDirectory) return g.path;
  return g.path === '.' ? '*' : g.path === '/' ? '/*' : `${g.path}/*`;
}

/** The grant as an unanchored regular expression on normalised paths. */
function grantRegex(g: PathGrant): string {
  const path = escapeRegex(g.path);
  if (!g.inDirectory) return path;
  return g.path === '.' ? '[^/]+' : g.path === '/' ? '/[^/]+' : `${path}/[^/]+`;
}

const grantKey = (g: PathGrant) => `${g.access}\u0000${g.inDirectory ? 'dir' : 'path'}\u0000${g.path}`;
const accessKey = (a: { access: PathAccess; path: string }) => `${a.access}\u0000${a.path}`;

function describePaths(o: FileOperation): string {
  return o.path2 === undefined ? JSON.stringify(o.path) : `${JSON.stringify(o.path)} and ${JSON.stringify(o.path2)}`;
}

/** `*` and `?` are the wildcards of command and path globs, which have no escapes. */
function hasGlobCharacter(text: string): boolean {
  return /[*?]/.test(text);
}

// ---------------------------------------------------------------------------
// Kubernetes

/** the order rules list verbs in: reads first, as people write them */
const KUBE_VERB_ORDER = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];

interface KubeRequest {
  use: CommandUse;
  info: RequestInfo;
}

/** Resources of one group used with the same verbs in the same namespaces: one rule. */
interface KubeGrant {
  apiGroup: string;
  verbs: string[];
  namespaces: string[];
  resources: string[];
  runs: number;
  /** who approved the requests behind it (approve rules) */
  approvers: string[];
}

type KubeGrantAction = 'allow' | 'approve';

function suggestKubernetes(workload: string, t: TargetReview, name: string): PolicySuggestion {
  const warnings: string[] = [];
  const policyOf = (noted: NotedRule[]) => workloadPolicy(name, workload, t.target, noted.map((n) => n.rule));
  const requests = t.commands.map((use): KubeRequest => ({ use, info: kubeRequestOf(use.command) }));
  const ran = requests.filter((r) => r.use.allowed + r.use.approved > 0);
  // what only ran once approved stays held for approval
  const rulesFor = (action: KubeGrantAction, which: KubeRequest[]) => [
    ...kubeGrants(which, action, warnings).map((g) => grantRule(g, action)),
    ...kubeExecRules(which, action, warnings),
  ];
  const grants = [...rulesFor('allow', ran.filter((r) => r.use.allowed > 0)), ...rulesFor('approve', ran.filter((r) => r.use.allowed === 0))];

  const check = new KubeRuleSet([policyOf(grants)]);
  const leaks = requests.filter((r) => {
    if (r.use.allowed + r.use.approved > 0 || r.use.denied + r.use.held === 0) return false;
    const now = check.decide(r.info).action;
    return r.use.denied > 0 ? now !== 'deny' : now === 'allow';
  });
  const denies = kubeDenies(leaks, ran, warnings);

  const noted = [...denies, ...grants];
  const policy = policyOf(noted);
  const rules = new KubeRuleSet([policy]);
  warnings.push(...selfCheck((command) => rules.decide(kubeRequestOf(command)).action, t.commands));
  return { workload, target: t.target, policy, ruleNotes: noted.map((n) => n.note), warnings };
}

/**
 * The resource requests that ran, as exact grants: the verbs used on each resource in each
 * namespace, then the namespaces sharing a resource's verbs, then the resources sharing both.
 * Each step only merges what is equal, so no grant covers a combination that did not run.
 */
function kubeGrants(ran: KubeRequest[], action: KubeGrantAction, warnings: string[]): KubeGrant[] {
  const cells = new Map<string, { apiGroup: string; resource: string; namespace: string; verbs: Set<string>; runs: number; approvers: string[] }>();
  for (const { use, info } of ran) {
    // discovery needs no rule; exec is allowed by its commands
    if (info.invalid !== undefined || !info.isResourceRequest || (isPodConnect(info) && info.subresource === 'exec')) continue;
    const resource = kubeResource(info);
    if ([info.apiGroup, resource, info.namespace].some(hasGlobCharacter)) {
      warnings.push(`ran, but its group, resource or namespace holds a glob character, so no rule allows it: ${oneLine(use.command)}`);
      continue;
    }
    const key = [info.apiGroup, resource, info.namespace].join('\u0000');
    let cell = cells.get(key);
    if (!cell) cells.set(key, (cell = { apiGroup: info.apiGroup, resource, namespace: info.namespace, verbs: new Set(), runs: 0, approvers: [] }));
    cell.verbs.add(kubeRuleVerb(info));
    cell.runs += runsOf(use, action);
    cell.approvers = uniqueSorted([...cell.approvers, ...use.approvedBy]);
  }
  const byNamespaces = mergeBy(
    [...cells.values()].map((c) => ({ apiGroup: c.apiGroup, resource: c.resource, verbs: orderVerbs(c.verbs), namespaces: [c.namespace], runs: c.runs, approvers: c.approvers })),
    (x) => [x.apiGroup, x.resource, x.verbs.join()],
    (a, b) => ({ ...a, namespaces: [...a.namespaces, ...b.namespaces], runs: a.runs + b.runs, approvers: uniqueSorted([...a.approvers, ...b.approvers]) }),
  );
  const grants = mergeBy(
    byNamespaces.map(({ resource, ...x }): KubeGrant => ({ ...x, namespaces: uniqueSorted(x.namespaces), resources: [resource] })),
    (g) => [g.apiGroup, g.verbs.join(), g.namespaces.join('\u0000')],
    (a, b) => ({ ...a, resources: uniqueSorted([...a.resources, ...b.resources]), runs: a.runs + b.runs, approvers: uniqueSorted([...a.approvers, ...b.approvers]) }),
  );
  return grants.sort((a, b) => b.runs - a.runs || compareText(a.apiGroup, b.apiGroup) || compareText(a.resources.join(), b.resources.join()) || compareText(a.namespaces.join(), b.namespaces.join()));
}

function grantRule(g: KubeGrant, action: KubeGrantAction): NotedRule {
  const group = g.apiGroup === '' ? 'the core group' : `group ${g.apiGroup}`;
  const held = action === 'approve' ? ' approved' : '';
  return {
    rule: withApprovers({ action, match: { verbs: [...g.verbs], apiGroups: [g.apiGroup], resources: [...g.resources], namespaces: [...g.namespaces] } }, g.approvers),
    note: `${g.verbs.join(', ')} of ${g.resources.join(', ')} (${group}) ${namespacesNote(g.namespaces)}: ${plural(g.runs, 'request')}${held}, any object name`,
  };
}

/** Runs that count toward a rule of this action. */
function runsOf(use: CommandUse, action: KubeGrantAction): number {
  return action === 'allow' ? use.allowed : use.approved;
}

function withApprovers(rule: RuleDef, approvers: string[]): RuleDef {
  return rule.action === 'approve' && approvers.length ? { ...rule, approvers: [...approvers] } : rule;
}

/** Exec commands by namespace: the exact parts that ran, or whole lines a glob cannot name. */
function kubeExecRules(ran: KubeRequest[], action: KubeGrantAction, warnings: string[]): NotedRule[] {
  const byNamespace = new Map<string, { parts: Set<string>; lines: Set<string>; runs: number; approvers: string[] }>();
  for (const { use, info } of ran) {
    if (!isPodConnect(info) || info.subresource !== 'exec') continue;
    const argv = info.command ?? [];
    const line = kubeCommandLine(argv);
    const analysis = argv.length ? analyzeShellCommand(line) : undefined;
    if (!analysis || analysis.error !== undefined || !analysis.parts.length || hasGlobCharacter(info.namespace)) {
      const why = !analysis ? 'an exec without a command, which no command rule allows' : hasGlobCharacter(info.namespace) ? 'its namespace holds a glob character' : 'the shell analysis cannot read it now';
      warnings.push(`ran, but ${why}, so no rule allows it: ${oneLine(use.command)}`);
      continue;
    }
    let ns = byNamespace.get(info.namespace);
    if (!ns) byNamespace.set(info.namespace, (ns = { parts: new Set(), lines: new Set(), runs: 0, approvers: [] }));
    ns.runs += runsOf(use, action);
    ns.approvers = uniqueSorted([...ns.approvers, ...use.approvedBy]);
    // an allow rule's globs never match a program named with white space: such lines go by their text
    if (analysis.parts.some((p) => hasGlobCharacter(p.text) || /\s/.test(p.program))) ns.lines.add(line);
    else for (const p of analysis.parts) ns.parts.add(p.text);
  }
  // fresh lists for every rule: the YAML writer would turn shared ones into anchors and aliases
  const exec = () => ({ verbs: ['create'], apiGroups: [''], resources: ['pods/exec'] });
  const entries = [...byNamespace].map(([namespace, u]) => ({ namespaces: [namespace], parts: uniqueSorted([...u.parts]), lines: uniqueSorted([...u.lines]), runs: u.runs, approvers: u.approvers }));
  const merged = (key: (e: (typeof entries)[number]) => string[]) =>
    mergeBy(entries, key, (a, b) => ({ ...a, namespaces: [...a.namespaces, ...b.namespaces], runs: a.runs + b.runs, approvers: uniqueSorted([...a.approvers, ...b.approvers]) }))
      .sort((a, b) => b.runs - a.runs || compareText(a.namespaces.join(), b.namespaces.join()));
  const held = action === 'approve' ? ', once approved' : '';
  const byParts = merged((e) => e.parts).filter((e) => e.parts.length).map((e): NotedRule => ({
    rule: withApprovers({ action, match: { ...exec(), namespaces: uniqueSorted(e.namespaces), commands: [...e.parts] } }, e.approvers),
    note: `exec ${namespacesNote(e.namespaces)}: ${plural(e.parts.length, 'distinct part')} of the commands that ran${held}, each exactly; parts may run together in one command`,
  }));
  const byLines = merged((e) => e.lines).filter((e) => e.lines.length).map((e): NotedRule => ({
    rule: withApprovers({ action, match: { ...exec(), namespaces: uniqueSorted(e.namespaces), pattern: `^(?:${e.lines.map(escapeRegex).join('|')})$` } }, e.approvers),
    note: `exec ${namespacesNote(e.namespaces)}: ${plural(e.lines.length, 'command')} that ran${held} with glob characters or a spaced program name, by exact text only`,
  }));
  return [...byParts, ...byLines];
}

/** Refused requests the allows would let through, each denied as narrowly as tells it apart from what ran. */
function kubeDenies(leaks: KubeRequest[], ran: KubeRequest[], warnings: string[]): NotedRule[] {
  const denies = new Map<string, NotedRule>();
  for (const leak of leaks) {
    const match = denyCandidates(leak.info).find((m) => {
      const hits = oneRuleHits({ action: 'deny', match: m });
      return hits(leak.info) && !ran.some((r) => hits(r.info));
    });
    if (!match) {
      warnings.push(`refused in the period, but no rule tells it apart from requests that ran, so allowed here: ${oneLine(leak.use.command)}`);
      continue;
    }
    denies.set(JSON.stringify(match), { rule: { action: 'deny', match, message: REFUSED }, note: 'refused in the period, though requests like it are allowed: denied by its exact path or command' });
  }
  return [...denies.values()];
}

/** Deny matches for one request, the narrowest that a rule can express first. */
function denyCandidates(info: RequestInfo): RuleDef['match'][] {
  if (info.invalid !== undefined || !info.isResourceRequest) return []; // decided without rules
  // a value with glob characters cannot be named exactly: the filter is left out, the others still narrow
  const literal = (key: 'apiGroups' | 'resources' | 'namespaces' | 'names', value: string): RuleDef['match'] => (hasGlobCharacter(value) ? {} : { [key]: [value] });
  const kind: RuleDef['match'] = { verbs: [kubeRuleVerb(info)], ...literal('apiGroups', info.apiGroup), ...literal('resources', kubeResource(info)) };
  const runs = isPodConnect(info) && info.subresource !== 'portforward';
  if (!runs) return [{ ...kind, pattern: exactPattern(info.path) }];
  const inNamespace = { ...kind, ...literal('namespaces', info.namespace) };
  const inPod = { ...inNamespace, ...(info.name ? literal('names', info.name) : {}) };
  const command = info.subresource === 'exec' && info.command?.length ? kubeCommandLine(info.command) : undefined;
  // an attach runs whatever already runs in the pod: only the pod tells it apart
  if (command === undefined) return inPod.names ? [inPod] : [];
  return [{ ...inNamespace, pattern: exactPattern(command) }, { ...inPod, pattern: exactPattern(command) }];
}

/** Whether a rule, alone in a policy, decides the request (and so would decide it first). */
function oneRuleHits(rule: RuleDef): (info: RequestInfo) => boolean {
  const rules = new KubeRuleSet([{ name: 'check', subjects: { groups: [], workloads: [] }, targets: [], rules: [rule], masking: [] }]);
  return (info) => rules.decide(info).rule !== undefined;
}

function namespacesNote(namespaces: string[]): string {
  const named = namespaces.filter((n) => n !== '');
  const parts = [...(named.length ? [`in ${named.join(', ')}`] : []), ...(named.length < namespaces.length ? ['cluster-wide (no namespace)'] : [])];
  return parts.join(' and ');
}

function orderVerbs(verbs: Set<string>): string[] {
  const rank = (v: string) => (KUBE_VERB_ORDER.includes(v) ? KUBE_VERB_ORDER.indexOf(v) : KUBE_VERB_ORDER.length);
  return [...verbs].sort((a, b) => rank(a) - rank(b) || compareText(a, b));
}

/** Items with equal keys merged, in first-seen order. */
function mergeBy<T>(items: T[], key: (x: T) => string[], merge: (a: T, b: T) => T): T[] {
  const merged = new Map<string, T>();
  for (const x of items) {
    const k = key(x).join('\u0001');
    const seen = merged.get(k);
    merged.set(k, seen === undefined ? x : merge(seen, x));
  }
  return [...merged.values()];
}

// ---------------------------------------------------------------------------
// Names as rule patterns

/**
 * An unqualified relation is written the way the engine resolves it (public.x, pg_catalog.pg_x),
 * so that the rule does not cover the same name in other schemas.
 */
function relationUse(r: RelationRef): RelationUseRef {
  const schema = r.schema ?? (r.name.startsWith('pg_') ? 'pg_catalog' : 'public');
  return { pattern: `${globLiteral(schema)}.${globLiteral(r.name)}`, access: r.access, name: r.name.toLowerCase(), qualified: r.schema !== undefined };
}

/** An unqualified call may resolve to pg_catalog or public, and an allow rule must cover both. */
function functionPatterns(f: FunctionRef): string[] {
  const name = globLiteral(f.name);
  return f.schema !== undefined ? [`${globLiteral(f.schema)}.${name}`] : [`pg_catalog.${name}`, `public.${name}`];
}

/**
 * A name as a glob matching it. Globs have no escapes: `*` becomes `?` (one character), and a
 * dot inside a quoted name becomes `**` (patterns split schema from name at the last dot);
 * both match a little more than the name itself.
 */
function globLiteral(name: string): string {
  return name.replace(/\*/g, '?').replace(/\./g, '**');
}

/** Sorted by name, then schema: the two spellings of an unqualified call sit together. */
function compareFunctionPatterns(a: string, b: string): number {
  const split = (p: string) => {
    const dot = p.lastIndexOf('.');
    return [p.slice(dot + 1), p.slice(0, dot)] as const;
  };
  const [an, as] = split(a);
  const [bn, bs] = split(b);
  return compareText(an, bn) || compareText(as, bs);
}

function exactPattern(text: string): string {
  return `^${escapeRegex(text)}$`;
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

// ---------------------------------------------------------------------------
// Small helpers

/** Groups in a stable order: most runs first, then by key. */
function groupBy(footprints: Footprint[], keyOf: (f: Footprint) => { coarse: string; key: string }): RuleGroup[] {
  const groups = new Map<string, RuleGroup>();
  for (const f of footprints) {
    const { coarse, key } = keyOf(f);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { key, coarseKey: coarse, footprints: [], runs: 0 }));
    g.footprints.push(f);
    g.runs += f.runs;
  }
  return [...groups.values()].sort((a, b) => b.runs - a.runs || compareText(a.key, b.key));
}

/** The config's shape: empty subject groups and masking lists are left out, as people write it. */
function policyYaml(p: PolicyDef): Record<string, unknown> {
  return {
    name: p.name,
    subjects: { workloads: p.subjects.workloads },
    targets: p.targets,
    rules: p.rules.map((r) => ({ action: r.action, match: r.match, ...(r.message ? { message: r.message } : {}), ...(r.approvers ? { approvers: r.approvers } : {}) })),
  };
}

function uniqueName(taken: Set<string>, wanted: string): string {
  const base = wanted.replace(/[^a-z0-9._-]/gi, '-');
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
  taken.add(name);
  return name;
}

function uniqueSorted(xs: string[], compare: (a: string, b: string) => number = compareText): string[] {
  return [...new Set(xs)].sort(compare);
}

function allowNote(g: RuleGroup): string {
  if (g.footprints[0]!.opaque) return 'opaque: any statement of this kind';
  if (g.footprints.every((f) => f.relations.length === 0)) return 'no relations';
  const access = allowKeyClass(g);
  return access === 'read' ? 'reads only' : access === 'write' ? 'writes only' : 'reads and writes: relations it wrote anywhere may be written';
}

const runs = (n: number) => `${n} run${n === 1 ? '' : 's'}`;
const times = (n: number) => (n === 1 ? 'once' : `${n} times`);
const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

function distinct(g: RuleGroup): string {
  const n = new Set(g.footprints.map((f) => f.text)).size;
  return `${n} distinct statement${n === 1 ? '' : 's'}`;
}

function oneLine(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A YAML comment body: the library puts `#` before each line, so lines are kept to one. */
function comment(lines: string[]): string {
  return lines.map((l) => ` ${oneLine(l, 400)}`).join('\n');
}
