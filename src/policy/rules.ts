/**
 * Per-statement decisions. Pure: (rules, statement analysis) → allow | deny | approve.
 *
 * Rules are tried in order, first match wins, no match is a denial. A rule's filters
 * (statements, relations, functions, pattern) must all hold. Within a filter, the
 * reading depends on the action, so that a rule errs on the safe side either way:
 *   allow            EVERY kind / relation / function of the statement must be covered
 *                    ("allow select on public.*" does not allow a join with private.x)
 *   deny / approve   ANY kind / relation / function hitting the filter is enough
 *                    ("deny pg_read_file" catches it inside any SELECT)
 * Opaque statements (DO, CALL, EXECUTE, COPY to files or programs) match only rules
 * that name their kind in `statements`.
 */
import type { PolicyDef, RuleAction, RuleDef } from '../config/types.js';
import { globToRegExp } from '../util/glob.js';
import { analyzeQuery, type FunctionRef, type QueryAnalysis, type RelationRef, type StatementAnalysis } from './analysis.js';
import { Lru } from './lru.js';
import { literalShape } from './shape.js';

export interface Decision {
  action: RuleAction;
  /** "policy#n" (1-based) of the deciding rule; undefined when nothing matched */
  rule?: string;
  /** what the agent is told when not allowed */
  message: string;
  approvers?: string[];
  timeout?: string;
}

interface NamePattern {
  /** undefined: the pattern names no schema and matches any */
  schema?: RegExp;
  name: RegExp;
}

interface CompiledRule {
  id: string;
  def: RuleDef;
  statements?: Set<string>;
  relations?: NamePattern[];
  functions?: NamePattern[];
  pattern?: RegExp;
}

/**
 * Where an unqualified relation resolves, for an allow rule: pg_catalog comes first in
 * every search_path and all its relations are named pg_*; the rest is public (the
 * session's search_path is pinned to it).
 */
const relationSchemas = (name: string) => (name.startsWith('pg_') ? CATALOG_SCHEMA : PUBLIC_SCHEMA);
const CATALOG_SCHEMA = ['pg_catalog'];
const PUBLIC_SCHEMA = ['public'];
/** An unqualified function call may resolve to either; an allow rule must cover both. */
const DEFAULT_FUNCTION_SCHEMAS = ['pg_catalog', 'public'];

export interface QueryVerdict {
  decision: Decision;
  /** every effect of every statement, for the audit trail */
  kinds: string[];
  /** kinds, decision, rule and message as JSON members, serialized once for every audit line that repeats them */
  auditJson: string;
}

/** The verdict's audit members: `"kinds":[…],"decision":"…","rule":"…"[,"message":"…"]`. */
export function verdictJson(kinds: string[], decision: Decision): string {
  const json = JSON.stringify({ kinds, decision: decision.action, rule: decision.rule, message: decision.action === 'allow' ? undefined : decision.message });
  return json.slice(1, -1);
}

const MAX_CACHED_TEXT = 64 * 1024;

export class RuleSet {
  private readonly rules: CompiledRule[];
  private readonly verdicts = new Lru<string, QueryVerdict>(4096);

  /** some rule matches on the statement text, which shaping would hide */
  private readonly readsText: boolean;

  constructor(policies: PolicyDef[]) {
    // SSH rules (commands, channels, paths) belong to the SSH engine: read here, their missing SQL filters would match every statement
    this.rules = policies.flatMap((p) => p.rules.flatMap((def, i) => (isSshRule(def) || isKubeRule(def) ? [] : [compile(`${p.name}#${i + 1}`, def)])));
    this.readsText = this.rules.some((r) => r.pattern !== undefined);
  }

  get size(): number {
    return this.rules.length;
  }

  decideStatement(s: StatementAnalysis): Decision {
    // rules read unqualified names as public.x: the session's search_path is pinned, and stays so
    if (s.settings.some((name) => name === 'search_path' || name === '*')) {
      return { action: 'deny', message: 'changing search_path is not allowed through interlock (unqualified names are policed as public.x)' };
    }
    for (const r of this.rules) {
      if (!matches(r, s)) continue;
      const action = r.def.action;
      return {
        action,
        rule: r.id,
        message: r.def.message ?? defaultMessage(action, r, s),
        approvers: r.def.approvers,
        timeout: r.def.timeout,
      };
    }
    return { action: 'deny', message: `no rule allows this ${describe(s)}` };
  }

  /**
   * decideQuery on analyzeQuery(sql), remembered by the statement's literal-free shape
   * (by its exact text when a rule looks at text): repeated statements cost a lookup.
   */
  decideText(sql: string): QueryVerdict {
    const key = (!this.readsText && literalShape(sql)) || sql;
    let v = this.verdicts.get(key);
    if (!v) {
      const q = analyzeQuery(key);
      const { decision } = this.decideQuery(q);
      const kinds = [...new Set(q.statements.flatMap((s) => s.kinds))];
      v = Object.freeze({ decision, kinds, auditJson: verdictJson(kinds, decision) });
      if (key.length <= MAX_CACHED_TEXT) this.verdicts.set(key, v);
    }
    return v;
  }

  /** A whole message (several statements) is decided as one: any denial denies all, then any approval. */
  decideQuery(q: QueryAnalysis): { decision: Decision; statements: Decision[] } {
    if (q.error) return { decision: { action: 'deny', message: `statement could not be parsed: ${q.error.message}` }, statements: [] };
    const statements = q.statements.map((s) => this.decideStatement(s));
    const decision =
      statements.find((d) => d.action === 'deny') ??
      statements.find((d) => d.action === 'approve') ??
      statements[0] ?? { action: 'allow', message: 'empty query' };
    return { decision, statements };
  }
}

/** A rule with a Kubernetes filter (it may also name exec commands). */
export function isKubeRule(def: RuleDef): boolean {
  const m = def.match;
  return m.verbs !== undefined || m.apiGroups !== undefined || m.resources !== undefined || m.namespaces !== undefined || m.names !== undefined;
}

/** A rule with an SSH filter and no Kubernetes one; the config refuses rules that mix them with SQL filters. */
export function isSshRule(def: RuleDef): boolean {
  const m = def.match;
  return (m.commands !== undefined || m.channels !== undefined || m.paths !== undefined) && !isKubeRule(def);
}

function compile(id: string, def: RuleDef): CompiledRule {
  const m = def.match;
  return {
    id,
    def,
    statements: m.statements ? new Set(m.statements) : undefined,
    relations: m.relations?.map(namePattern),
    functions: m.functions?.map(namePattern),
    pattern: m.pattern !== undefined ? new RegExp(m.pattern) : undefined,
  };
}

function namePattern(glob: string): NamePattern {
  const dot = glob.lastIndexOf('.');
  const lower = glob.toLowerCase();
  if (dot < 0) return { name: globToRegExp(lower, '.') };
  return { schema: globToRegExp(lower.slice(0, dot), '.'), name: globToRegExp(lower.slice(dot + 1), '.') };
}

function matches(r: CompiledRule, s: StatementAnalysis): boolean {
  const all = r.def.action === 'allow';
  if (s.opaque && !r.statements) return false;
  if (r.statements) {
    const hit = (k: string) => r.statements!.has(k);
    if (all ? !s.kinds.every(hit) : !s.kinds.some(hit)) return false;
  }
  if (r.relations) {
    const access = r.def.match.access;
    const hit = (ref: RelationRef) =>
      (access === undefined || ref.access === access) && nameMatches(r.relations!, ref.schema, ref.name, all ? relationSchemas(ref.name) : undefined);
    if (all ? !s.relations.every(hit) : !s.relations.some(hit)) return false;
  }
  if (r.functions) {
    const hit = (ref: FunctionRef) => nameMatches(r.functions!, ref.schema, ref.name, all ? DEFAULT_FUNCTION_SCHEMAS : undefined);
    if (all ? !s.functions.every(hit) : !s.functions.some(hit)) return false;
  }
  if (r.pattern && !r.pattern.test(s.text)) return false;
  return true;
}

/**
 * Does some pattern cover `schema.name`? An unqualified name is read with each of
 * `defaults` (all must be covered: it may resolve to any of them), or, with no
 * defaults (deny rules), matches whatever schema the pattern names.
 */
function nameMatches(patterns: NamePattern[], schema: string | undefined, name: string, defaults?: string[]): boolean {
  const n = name.toLowerCase();
  const one = (sch: string | undefined) =>
    patterns.some((p) => p.name.test(n) && (!p.schema || sch === undefined || p.schema.test(sch.toLowerCase())));
  if (schema !== undefined || !defaults) return one(schema);
  return defaults.every(one);
}

function describe(s: StatementAnalysis): string {
  const kind = s.kinds[0] ?? 'empty';
  return `${kind.toUpperCase().replace('_', ' ')} statement`;
}

function defaultMessage(action: RuleAction, r: CompiledRule, s: StatementAnalysis): string {
  if (action === 'allow') return 'allowed';
  if (action === 'approve') return `approval required (rule ${r.id}${r.def.approvers ? `, approvers: ${r.def.approvers.join(', ')}` : ''}) for this ${describe(s)}`;
  return `this ${describe(s)} is denied by rule ${r.id}`;
}
