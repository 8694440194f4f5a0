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
 *   - set and transaction statements become rules of their own: any setting but
 *     search_path (always refused by the engine) may be changed.
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
 * Pure apart from the SQL parser: initAnalysis() must have completed.
 */
import { Document, isMap, isScalar, visit } from 'yaml';
import type { PolicyDef, RuleDef } from '../config/types.js';
import { analyzeQuery, type FunctionRef, type RelationRef, type StatementKind } from '../policy/analysis.js';
import { RuleSet, type Decision } from '../policy/rules.js';
import { compareText, dayOf, UNKNOWN, type CommandUse, type ReviewData, type TargetReview } from './aggregate.js';

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
      else if (t.protocol !== 'postgres') skipped.push(`${where}: no policy suggestions for this protocol yet`);
      else if (!t.commands.some((c) => c.allowed + c.approved > 0)) skipped.push(`${where}: nothing ran, and with no policy everything is denied`);
      else suggestions.push(suggestPostgres(w.workload, t, uniqueName(names, `suggested-${w.workload}-${t.target}`)));
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
  const policyOf = (rules: RuleDef[]): PolicyDef => ({
    name,
    subjects: { groups: [], workloads: [workload] },
    targets: [t.target],
    rules,
    masking: [],
  });
  const check = (b: Built) => refusedButRun(new RuleSet([policyOf(b.rules)]), t.commands);

  const { built, leaks } = buildWithSplits(workload, footprints, check);
  const denies = exactTextDenies(leaks, new Set(footprints.map((f) => f.text)), warnings);
  const denyNote = 'refused in the period, though it looks like statements that ran: denied by its exact text (other spellings are not)';
  const policy = policyOf([...denies, ...built.rules]);
  warnings.push(...selfCheck(new RuleSet([policy]), t.commands));
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
function selfCheck(rules: RuleSet, commands: CommandUse[]): string[] {
  const warnings: string[] = [];
  for (const use of commands) {
    const now = rules.decideText(use.command).decision.action;
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
  return `^${text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')}$`;
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
