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
 *
 * An unqualified name is read under the search_path(s) that may be in effect when the
 * statement runs (search-path.ts): the session's, passed in, then as the query's own
 * SET / set_config() statements change it, statement by statement.
 */
import type { PolicyDef, RuleAction, RuleDef } from '../config/types.js';
import { globToRegExp } from '../util/glob.js';
import type { FunctionEffects } from './function-effects.js';
import { analyzeQuery, DANGER_ORDER, type FunctionRef, type QueryAnalysis, type RelationRef, type StatementAnalysis } from './analysis.js';
import { Lru } from './lru.js';
import {
  ANY_SCHEMA, LOGIN_PATHS, catalogSearchedFirst, functionSchemas, pathsInEffect, pathsPerStatement, relationSchemas,
  type PathEffect, type PathsInEffect,
} from './search-path.js';
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
  /** the schema glob is all `*`: it covers a name that may resolve to any schema */
  anySchema: boolean;
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

/** Where unqualified names may resolve, for allow rules: every schema of every path that may be in effect. */
interface Resolution {
  relation(name: string): readonly string[];
  functions: readonly string[];
}

const CATALOG_SCHEMA = ['pg_catalog'];
const PUBLIC_SCHEMA = ['public'];
/** the login path (public), the common case: no work per name */
const LOGIN_RESOLUTION: Resolution = {
  relation: (name) => (name.startsWith('pg_') ? CATALOG_SCHEMA : PUBLIC_SCHEMA),
  functions: ['pg_catalog', 'public'],
};

function resolutionUnder(paths: PathsInEffect): Resolution {
  if (paths.key === '') return LOGIN_RESOLUTION;
  const union = (each: (p: readonly string[]) => string[]) => [...new Set(paths.current.flatMap(each))];
  return { relation: (name) => union((p) => relationSchemas(p, name)), functions: union(functionSchemas) };
}

export interface QueryVerdict {
  decision: Decision;
  /** every effect of every statement, for the audit trail */
  kinds: string[];
  /** kinds, decision, rule and message as JSON members, serialized once for every audit line that repeats them */
  auditJson: string;
  /** what each statement does to search_path (search-path.ts), for the session to follow; undefined when none does anything */
  pathEffects?: readonly (readonly PathEffect[])[];
  /** some relation or function is named without a schema: what it means depends on search_path */
  pathDependent?: boolean;
  /** the text it was decided on: the statement's literal-free shape (or its exact text), shared by every text of that shape */
  shape?: string;
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
  /** verdicts under a catalog's function effects (one effects object per catalog): weakly, catalogs come and go */
  private readonly verdictsByEffects = new WeakMap<FunctionEffects, Lru<string, QueryVerdict>>();

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

  /** Function calls are judged by the catalog's volatility (decideText's `effects`): sessions read it at login. */
  get judgesFunctions(): boolean {
    return this.rules.length > 0;
  }

  /** One statement, run under any of `paths.current` (default: the login path). */
  decideStatement(s: StatementAnalysis, paths: PathsInEffect = LOGIN_PATHS): Decision {
    if (s.pathRefusal !== undefined) return { action: 'deny', message: s.pathRefusal };
    if (s.assumesCatalogFirst && !paths.current.every(catalogSearchedFirst)) {
      return { action: 'deny', message: 'set_config() must be written pg_catalog.set_config() while search_path puts a schema before pg_catalog' };
    }
    const resolution = resolutionUnder(paths);
    for (const r of this.rules) {
      if (!matches(r, s, resolution)) continue;
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
   * (by its exact text when a rule looks at text) and the search_paths in effect:
   * repeated statements cost a lookup.
   */
  /** `effects`: which function calls may write, from the session's catalog; without it calls are judged as today (reads) */
  decideText(sql: string, paths: PathsInEffect = LOGIN_PATHS, effects?: FunctionEffects): QueryVerdict {
    const text = (!this.readsText && literalShape(sql)) || sql;
    const key = paths.key === '' ? text : `${paths.key}\0${text}`; // a NUL never occurs in a query
    const verdicts = effects ? this.verdictsFor(effects) : this.verdicts;
    let v = verdicts.get(key);
    if (!v) {
      const q = withFunctionWrites(analyzeQuery(text), effects);
      const { decision } = this.decideQuery(q, paths);
      const kinds = [...new Set(q.statements.flatMap((s) => s.kinds))];
      const pathEffects = q.statements.some((s) => s.pathEffects.length) ? q.statements.map((s) => s.pathEffects) : undefined;
      const pathDependent = q.statements.some((s) => s.relations.some((r) => r.schema === undefined) || s.functions.some((f) => f.schema === undefined));
      v = Object.freeze({ decision, kinds, auditJson: verdictJson(kinds, decision), pathEffects, pathDependent, shape: text });
      if (key.length <= MAX_CACHED_TEXT) verdicts.set(key, v);
    }
    return v;
  }

  private verdictsFor(effects: FunctionEffects): Lru<string, QueryVerdict> {
    let v = this.verdictsByEffects.get(effects);
    if (!v) this.verdictsByEffects.set(effects, (v = new Lru(4096)));
    return v;
  }

  /**
   * A whole message (several statements) is decided as one: any denial denies all, then any
   * approval. Each statement is judged under the paths in effect when it runs; a PREPAREd one
   * also under those a transaction's end may return to, as it is read again whenever it runs.
   */
  decideQuery(q: QueryAnalysis, paths: PathsInEffect = LOGIN_PATHS): { decision: Decision; statements: Decision[] } {
    if (q.error) return { decision: { action: 'deny', message: `statement could not be parsed: ${q.error.message}` }, statements: [] };
    const changes = q.statements.some((s) => s.pathEffects.length);
    const during = changes ? pathsPerStatement(paths, q.statements.map((s) => s.pathEffects)).during : undefined;
    const statements = q.statements.map((s, i) => {
      let under = during?.[i] ?? paths;
      if (s.pathEffects.some((e) => e.kind === 'prepare')) under = pathsInEffect(under.fallback, under.fallback);
      return this.decideStatement(s, under);
    });
    const decision =
      statements.find((d) => d.action === 'deny') ??
      statements.find((d) => d.action === 'approve') ??
      statements[0] ?? { action: 'allow', message: 'empty query' };
    return { decision, statements };
  }
}

/**
 * A statement that calls a function which may write (a volatile one, by the catalog) has the
 * effect `function_write` too, which a read-only allow does not cover; `writers` names them.
 */
function withFunctionWrites(q: QueryAnalysis, effects: FunctionEffects | undefined): QueryAnalysis {
  if (!effects || q.error) return q;
  let changed = false;
  const statements = q.statements.map((s) => {
    const writers = s.functions.filter((f) => effects.writes(f.schema, f.name)).map((f) => `${f.schema ? `${f.schema}.` : ''}${f.name}()`);
    // a view whose definition calls one writes when it is read; the function counts as called (rules name it)
    const called: FunctionRef[] = [];
    for (const r of s.relations) {
      const w = r.access === 'read' ? effects.readWrites(r.schema, r.name) : undefined;
      if (!w) continue;
      writers.push(`${w}() (reading view ${r.schema ? `${r.schema}.` : ''}${r.name})`);
      const dot = w.indexOf('.');
      called.push(dot < 0 ? { name: w } : { schema: w.slice(0, dot), name: w.slice(dot + 1) });
    }
    if (!writers.length) return s;
    changed = true;
    const kinds = [...s.kinds.filter((k) => k !== 'function_write'), 'function_write' as const].sort((a, b) => DANGER_ORDER.indexOf(a) - DANGER_ORDER.indexOf(b));
    return { ...s, kinds, writers, functions: called.length ? [...s.functions, ...called] : s.functions };
  });
  return changed ? { ...q, statements } : q;
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
  if (dot < 0) return { anySchema: true, name: globToRegExp(lower, '.') };
  const schema = lower.slice(0, dot);
  return { schema: globToRegExp(schema, '.'), anySchema: /^\*+$/.test(schema), name: globToRegExp(lower.slice(dot + 1), '.') };
}

function matches(r: CompiledRule, s: StatementAnalysis, resolution: Resolution): boolean {
  const all = r.def.action === 'allow';
  if (s.opaque && !r.statements) return false;
  if (r.statements) {
    const hit = (k: string) => r.statements!.has(k);
    if (all ? !s.kinds.every(hit) : !s.kinds.some(hit)) return false;
  }
  if (r.relations) {
    const access = r.def.match.access;
    const hit = (ref: RelationRef) =>
      (access === undefined || ref.access === access) && nameMatches(r.relations!, ref.schema, ref.name, all ? resolution.relation(ref.name) : undefined);
    if (all ? !s.relations.every(hit) : !s.relations.some(hit)) return false;
  }
  if (r.functions) {
    const hit = (ref: FunctionRef) => nameMatches(r.functions!, ref.schema, ref.name, all ? resolution.functions : undefined);
    if (all ? !s.functions.every(hit) : !s.functions.some(hit)) return false;
  }
  if (r.pattern && !r.pattern.test(s.text)) return false;
  return true;
}

/**
 * Does some pattern cover `schema.name`? An unqualified name is read with each of
 * `defaults` (all must be covered: it may resolve to any of them; ANY_SCHEMA only by a
 * pattern for any schema), or, with no
 * defaults (deny rules), matches whatever schema the pattern names.
 */
function nameMatches(patterns: NamePattern[], schema: string | undefined, name: string, defaults?: readonly string[]): boolean {
  const n = name.toLowerCase();
  const one = (sch: string | undefined) =>
    patterns.some((p) => p.name.test(n) && (!p.schema || sch === undefined || (sch === ANY_SCHEMA ? p.anySchema : p.schema.test(sch.toLowerCase()))));
  if (schema !== undefined || !defaults) return one(schema);
  return defaults.every(one);
}

function describe(s: StatementAnalysis): string {
  const kind = s.kinds[0] ?? 'empty';
  // the function that made a read a write is named: the agent (and the audit line) sees why
  if (kind === 'function_write' && s.writers?.length) return `statement: it calls ${s.writers.join(', ')}, which may change the database`;
  return `${kind.toUpperCase().replace('_', ' ')} statement`;
}

function defaultMessage(action: RuleAction, r: CompiledRule, s: StatementAnalysis): string {
  if (action === 'allow') return 'allowed';
  if (action === 'approve') return `approval required (rule ${r.id}${r.def.approvers ? `, approvers: ${r.def.approvers.join(', ')}` : ''}) for this ${describe(s)}`;
  return `this ${describe(s)} is denied by rule ${r.id}`;
}
