/**
 * What a SQL text does, statement by statement, for the policy engine: the kinds of effect, the
 * relations read and written, the functions called, and whether some content cannot be inspected.
 *
 * It runs PostgreSQL's own parser (libpg-query) and walks the whole raw parse tree, so an effect
 * hidden in a CTE, subquery, set operation, EXPLAIN ANALYZE or PREPARE is still reported. Security
 * matters more than precision here: when in doubt it reports more effects, never fewer.
 *
 * Pure apart from the parser: no I/O. Results are cached by exact text and deeply frozen.
 */
import { loadModule, parseSync } from 'libpg-query';
import { Lru } from './lru.js';
import { pathFactsOf } from './path-effects.js';
import type { PathEffect } from './search-path.js';

export type StatementKind =
  | 'select' | 'insert' | 'update' | 'delete' | 'merge' | 'copy_to' | 'copy_from' | 'create' | 'alter'
  | 'drop' | 'truncate' | 'grant' | 'revoke' | 'set' | 'transaction' | 'explain' | 'call' | 'do' | 'other'
  /** calls a function that may change the database (volatile, by the catalog: policy/function-effects.ts) */
  | 'function_write';

export interface RelationRef { schema?: string; name: string; access: 'read' | 'write' }
export interface FunctionRef { schema?: string; name: string }

export interface StatementAnalysis {
  /** This statement's own text, trimmed, without its terminating semicolon. */
  text: string;
  /** Every effect, deduplicated, most dangerous first (DANGER_ORDER). Never empty. */
  kinds: StatementKind[];
  /** Deduplicated by (schema, name, access); names as PostgreSQL folds them (lower case unless quoted). */
  relations: RelationRef[];
  /** Every function called anywhere (FuncCall nodes, CALL), deduplicated. */
  functions: FunctionRef[];
  /** Content cannot be inspected: DO, CALL, EXECUTE, COPY to/from a server file or a program. */
  opaque: boolean;
  /** Run-time settings it changes (SET / SET LOCAL name, set_config() of a known name), lower case. */
  settings: string[];
  /** set by the rule engine: the functions that made it a `function_write` */
  writers?: string[];
  /** What it does to search_path, and to the transactions that scope such changes, in order (search-path.ts). */
  pathEffects: PathEffect[];
  /** Why its change of search_path cannot be followed (a value that is not a literal, say): it is refused. */
  pathRefusal?: string;
  /** It reads an unqualified set_config() (or `=`) as pg_catalog's, which holds only while pg_catalog is searched first. */
  assumesCatalogFirst: boolean;
}

export interface QueryAnalysis {
  statements: StatementAnalysis[];
  /** Set when the text does not parse (then `statements` is empty). `position` is the parser's 0-based cursor. */
  error?: { message: string; position?: number };
}

export const DANGER_ORDER: StatementKind[] = [
  'do', 'call', 'function_write', 'drop', 'truncate', 'alter', 'grant', 'revoke', 'create', 'copy_from', 'merge', 'delete',
  'update', 'insert', 'copy_to', 'set', 'other', 'explain', 'transaction', 'select',
];
const RANK = new Map(DANGER_ORDER.map((kind, i) => [kind, i]));

/** Cache bounds: entries, and the longest text worth keeping (longer texts are analysed, not kept). */
const CACHE_ENTRIES = 4096;
const MAX_CACHED_TEXT = 64 * 1024;

let loading: Promise<void> | undefined;
let loaded = false;
const cache = new Lru<string, QueryAnalysis>(CACHE_ENTRIES);
const EMPTY: QueryAnalysis = deepFreeze({ statements: [] });

/** Loads the parser's WASM module; idempotent. Must complete before analyzeQuery. */
export function initAnalysis(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

/** Analyses every statement in `sql`. Never throws on bad SQL: a parse error comes back as `error`. */
export function analyzeQuery(sql: string): QueryAnalysis {
  if (!loaded) throw new Error('analyzeQuery: await initAnalysis() first');
  if (sql === '') return EMPTY; // the parser rejects '' outright
  const hit = cache.get(sql);
  if (hit) return hit;
  const result = deepFreeze(analyze(sql));
  if (sql.length <= MAX_CACHED_TEXT) cache.set(sql, result);
  return result;
}

// The parse tree is JSON: a node is `{ TypeName: {...fields} }`, except fields declared with a
// concrete struct type, which hold the struct bare (e.g. DeleteStmt.relation is a bare RangeVar).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Ast = { [field: string]: any };
interface RawStmt { stmt: Ast; stmt_location?: number; stmt_len?: number }

/** Node types whose kind is not given by the name rules in kindOf; null = no effect of its own. */
const KINDS = new Map<string, StatementKind | null>([
  ['InsertStmt', 'insert'], ['UpdateStmt', 'update'], ['DeleteStmt', 'delete'],
  ['MergeStmt', 'merge'], ['TruncateStmt', 'truncate'], ['VariableSetStmt', 'set'], ['TransactionStmt', 'transaction'],
  ['ExplainStmt', 'explain'], ['DoStmt', 'do'], ['CallStmt', 'call'],
  ['ViewStmt', 'create'], ['IndexStmt', 'create'], ['DefineStmt', 'create'], ['CompositeTypeStmt', 'create'],
  ['RuleStmt', 'create'], ['ImportForeignSchemaStmt', 'create'],
  ['RenameStmt', 'alter'], ['CommentStmt', 'alter'], ['SecLabelStmt', 'alter'], ['ReassignOwnedStmt', 'alter'],
  // kind decided by the node's content (in Walker.node)
  ['SelectStmt', null], ['CopyStmt', null], ['GrantStmt', null], ['GrantRoleStmt', null],
  // only what they contain counts: PREPARE/DECLARE wrap a query; RETURN is a SQL function body
  ['PrepareStmt', null], ['DeclareCursorStmt', null], ['ReturnStmt', null], ['PLAssignStmt', null],
]);

function kindOf(type: string): StatementKind | null {
  if (KINDS.has(type)) return KINDS.get(type)!;
  if (!type.endsWith('Stmt')) return null; // expressions and clauses have no effect of their own
  if (type.startsWith('Create')) return 'create';
  if (type.startsWith('Alter')) return 'alter';
  if (type.startsWith('Drop')) return 'drop';
  return 'other'; // LISTEN, VACUUM, LOCK, SHOW, EXECUTE, CHECKPOINT, ...
}

/** Bare struct fields whose type matters to the walk (bare RangeVars are recognised by `relname`). */
const BARE = new Map([
  ['larg', 'SelectStmt'], ['rarg', 'SelectStmt'], ['intoClause', 'IntoClause'], ['into', 'IntoClause'],
  ['funccall', 'FuncCall'], ['base', 'CreateStmt'], ['action', 'GrantStmt'], ['setstmt', 'VariableSetStmt'],
]);

/** A statement's own RangeVar fields name the object it creates, changes or writes. */
const TARGET_FIELDS = ['relation', 'view', 'sequence', 'typevar', 'table'];
const TARGET_LISTS = new Map([['TruncateStmt', 'relations'], ['LockStmt', 'relations'], ['GrantStmt', 'objects']]);
/** DROP of these names relations (as lists of strings, not RangeVars). */
const DROPPED_RELATIONS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_INDEX', 'OBJECT_FOREIGN_TABLE',
]);
const MERGE_ACTIONS: Record<string, StatementKind> = { CMD_INSERT: 'insert', CMD_UPDATE: 'update', CMD_DELETE: 'delete' };
/** Handled by the node itself, not by the generic walk. */
const SKIP_FIELDS = new Set(['withClause', 'lockingClause']);

/** One statement's walk: accumulates effects while recursing through every node. */
class Walker {
  readonly kinds = new Set<StatementKind>();
  readonly relations = new Map<string, RelationRef>();
  readonly functions = new Map<string, FunctionRef>();
  readonly settings = new Set<string>();
  opaque = false;
  /** RangeVars a statement writes: always real relations, even when named like a CTE. */
  private readonly targets = new Set<object>();
  /** RangeVars locked by FOR UPDATE/SHARE: written unless they turn out to be CTE references. */
  private readonly locked = new Set<object>();
  /** VALUES lists feeding an INSERT: they read nothing, so they add no 'select'. */
  private readonly plainValues = new Set<object>();
  /** CTE names in scope at the current point of the walk. */
  private readonly ctes: string[] = [];
  /** > 0 inside a plain EXPLAIN: the statement is planned, not run, so it only reads. */
  private dry = 0;

  value(v: unknown, field?: string): void {
    if (Array.isArray(v)) {
      for (const item of v) this.value(item);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    const obj = v as Ast;
    const keys = Object.keys(obj);
    // wrapped node: its single key is a type name (struct fields all start lower case)
    if (keys.length === 1 && /^[A-Z]/.test(keys[0]!)) return this.node(keys[0]!, obj[keys[0]!] as Ast);
    const bare = field === undefined ? undefined : BARE.get(field);
    if (bare) return this.node(bare, obj);
    if (typeof obj.relname === 'string') return this.node('RangeVar', obj);
    this.fields(obj);
  }

  private node(type: string, b: Ast): void {
    switch (type) {
      case 'RangeVar':
        return this.rangeVar(b);
      case 'FuncCall':
        this.addFunction(b.funcname);
        break;
      case 'VariableSetStmt':
        if (b.kind !== 'VAR_RESET' && b.kind !== 'VAR_RESET_ALL' && typeof b.name === 'string') this.settings.add(b.name.toLowerCase());
        break;
      case 'SelectStmt':
        if (!this.plainValues.has(b)) this.addKind('select');
        if (b.lockingClause) this.lock(b);
        break;
      case 'IntoClause': // SELECT INTO, CREATE TABLE AS
        this.addKind('create');
        this.targets.add(b.rel);
        break;
      case 'InsertStmt':
        if (b.onConflictClause?.action === 'ONCONFLICT_UPDATE') this.addKind('update');
        if (b.selectStmt?.SelectStmt?.valuesLists) this.plainValues.add(b.selectStmt.SelectStmt);
        break;
      case 'MergeWhenClause':
        if (MERGE_ACTIONS[b.commandType]) this.addKind(MERGE_ACTIONS[b.commandType]!);
        break;
      case 'CopyStmt':
        this.addKind(b.is_from ? 'copy_from' : 'copy_to');
        if (b.is_from && b.relation) this.targets.add(b.relation);
        if (b.filename !== undefined || b.is_program) this.setOpaque(); // server file or PROGRAM
        break;
      case 'GrantStmt':
      case 'GrantRoleStmt':
        this.addKind(b.is_grant ? 'grant' : 'revoke');
        break;
      case 'DoStmt':
      case 'CallStmt':
      case 'ExecuteStmt':
        this.setOpaque();
        break;
      case 'DropStmt':
        if (DROPPED_RELATIONS.has(b.removeType)) {
          for (const o of b.objects ?? []) this.addNamedRelation(o.List?.items ?? [], 'write');
        }
        break;
      case 'PartitionCmd': // ATTACH/DETACH PARTITION changes the partition too
        if (b.name) this.targets.add(b.name);
        break;
      case 'ExplainStmt':
        return this.explain(b);
    }
    const kind = kindOf(type);
    if (kind) this.addKind(kind);
    if ((type.endsWith('Stmt') && type !== 'CopyStmt') || type === 'VacuumRelation') {
      for (const f of TARGET_FIELDS) if (b[f] && typeof b[f] === 'object') this.targets.add(b[f]);
    }
    const list = TARGET_LISTS.get(type);
    if (list) for (const o of b[list] ?? []) if (o?.RangeVar) this.targets.add(o.RangeVar);
    this.scoped(b);
  }

  private fields(b: Ast, skip?: Set<string>): void {
    for (const [field, v] of Object.entries(b)) if (!skip?.has(field)) this.value(v, field);
  }

  /** Walks a node's fields with its WITH clause's CTE names in scope (and only there). */
  private scoped(b: Ast): void {
    const depth = this.ctes.length;
    const w = b.withClause as Ast | undefined;
    if (w) {
      const ctes = ((w.ctes ?? []) as Ast[]).map((c) => c.CommonTableExpr as Ast).filter(Boolean);
      // WITH RECURSIVE: every name is visible in every body; otherwise only the earlier ones
      if (w.recursive) this.ctes.push(...ctes.map((c) => c.ctename as string));
      for (const c of ctes) {
        this.fields(c);
        if (!w.recursive) this.ctes.push(c.ctename);
      }
    }
    this.fields(b, SKIP_FIELDS);
    this.ctes.length = depth;
  }

  /** EXPLAIN runs its statement only with ANALYZE; otherwise it just plans (reads the catalog). */
  private explain(b: Ast): void {
    this.addKind('explain');
    const analyze = ((b.options ?? []) as Ast[]).some(
      (o) => o.DefElem?.defname === 'analyze' && !isFalse(o.DefElem.arg),
    );
    if (!analyze) this.dry++;
    this.value(b.query);
    if (!analyze) this.dry--;
  }

  /**
   * FOR UPDATE/SHARE writes (locks) rows. lockedRels holds FROM-item names (aliases), not relations:
   * lock what they name, or every FROM relation when none are listed or a name cannot be resolved.
   */
  private lock(b: Ast): void {
    this.addKind('update');
    const from = b.fromClause ?? [];
    const clauses = (b.lockingClause as Ast[]).map((c) => c.LockingClause ?? {});
    const names = new Set(clauses.flatMap((c) => (c.lockedRels ?? []).map((r: Ast) => r.RangeVar?.relname)));
    const items = fromItems(from);
    const named = items.filter((i) => i.ref !== undefined && names.has(i.ref));
    const resolved = new Set(named.map((i) => i.ref));
    const lockAll = clauses.some((c) => !c.lockedRels?.length) || [...names].some((n) => !resolved.has(n));
    for (const root of lockAll ? [from] : named.map((i) => i.node)) collectRangeVars(root, this.locked);
  }

  private rangeVar(b: Ast): void {
    const target = this.targets.has(b);
    if (!target && !b.schemaname && this.ctes.includes(b.relname)) return; // a CTE reference
    const write = (target || this.locked.has(b)) && this.dry === 0;
    this.addRelation(b.schemaname, b.relname, write ? 'write' : 'read');
  }

  private addKind(kind: StatementKind): void {
    if (this.dry === 0) this.kinds.add(kind);
  }

  private setOpaque(): void {
    if (this.dry === 0) this.opaque = true;
  }

  private addRelation(schema: string | undefined, name: string, access: RelationRef['access']): void {
    const key = JSON.stringify([schema ?? null, name, access]);
    if (!this.relations.has(key)) this.relations.set(key, schema ? { schema, name, access } : { name, access });
  }

  /** A qualified name as a list of String nodes: [name], [schema, name] or [catalog, schema, name]. */
  private addNamedRelation(items: Ast[], access: RelationRef['access']): void {
    const parts = names(items);
    if (parts.length) this.addRelation(parts.at(-2), parts.at(-1)!, access);
  }

  private addFunction(funcname: Ast[] | undefined): void {
    const parts = names(funcname ?? []);
    if (!parts.length) return;
    const schema = parts.at(-2);
    const name = parts.at(-1)!;
    const key = JSON.stringify([schema ?? null, name]);
    if (!this.functions.has(key)) this.functions.set(key, schema ? { schema, name } : { name });
  }
}

function names(items: Ast[]): string[] {
  return items.map((i) => i.String?.sval).filter((s): s is string => typeof s === 'string');
}

/** An EXPLAIN option's argument is false only when PostgreSQL would read it as false (defGetBoolean). */
function isFalse(arg: Ast | undefined): boolean {
  if (!arg) return false; // bare ANALYZE
  if (arg.Integer) return (arg.Integer.ival ?? 0) === 0; // protobuf JSON omits a zero
  if (arg.Boolean) return !arg.Boolean.boolval;
  const s = arg.String?.sval;
  return typeof s === 'string' && ['false', 'off'].includes(s.toLowerCase());
}

/** The FROM items that FOR UPDATE OF can name, each with the name it is referred to by. */
function fromItems(from: Ast[]): { ref?: string; node: Ast }[] {
  return from.flatMap((node) => {
    const [type, b] = Object.entries(node)[0] ?? [];
    if (!b) return [];
    if (type === 'JoinExpr') return [{ ref: b.alias?.aliasname, node }, ...fromItems([b.larg, b.rarg].filter(Boolean))];
    return [{ ref: b.alias?.aliasname ?? (type === 'RangeVar' ? b.relname : undefined), node }];
  });
}

/** Every RangeVar under a subtree (wrapped, or bare and recognised by `relname`). */
function collectRangeVars(v: unknown, out: Set<object>): void {
  if (Array.isArray(v)) {
    for (const item of v) collectRangeVars(item, out);
  } else if (v !== null && typeof v === 'object') {
    const obj = v as Ast;
    if (obj.RangeVar) out.add(obj.RangeVar);
    else if (typeof obj.relname === 'string') out.add(obj);
    else for (const child of Object.values(obj)) collectRangeVars(child, out);
  }
}

function analyze(sql: string): QueryAnalysis {
  let stmts: RawStmt[];
  try {
    stmts = (parseSync(sql) as unknown as { stmts?: RawStmt[] }).stmts ?? [];
  } catch (e) {
    const details = (e as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
    const message = details?.message ?? (e instanceof Error ? e.message : String(e));
    const position = details?.cursorPosition;
    return { statements: [], error: typeof position === 'number' ? { message, position } : { message } };
  }
  try {
    // stmt_location/stmt_len count UTF-8 bytes
    const bytes = /[^\x00-\x7f]/.test(sql) ? new TextEncoder().encode(sql) : undefined;
    return { statements: stmts.map((raw) => analyzeStatement(sql, bytes, raw)) };
  } catch (e) {
    // only absurd nesting (a stack overflow in the walk) gets here: fail closed, like a parse error
    return { statements: [], error: { message: `cannot analyse query: ${e instanceof Error ? e.message : String(e)}` } };
  }
}

function analyzeStatement(sql: string, bytes: Uint8Array | undefined, raw: RawStmt): StatementAnalysis {
  const start = raw.stmt_location ?? 0;
  const end = raw.stmt_len ? start + raw.stmt_len : undefined; // 0/absent: to the end of the text
  const text = bytes ? new TextDecoder().decode(bytes.subarray(start, end)) : sql.slice(start, end);

  const walker = new Walker();
  walker.value(raw.stmt);
  const relations = [...walker.relations.values()];
  const functions = [...walker.functions.values()];
  const callsSetConfig = functions.some((f) => f.name.toLowerCase() === 'set_config');
  const unqualified = relations.some((r) => r.schema === undefined) || functions.some((f) => f.schema === undefined);
  const path = pathFactsOf(raw.stmt, [...walker.settings], callsSetConfig, unqualified);
  // a set_config() call is a SET; `SELECT set_config(…)` alone is nothing but one
  if (callsSetConfig && (path.setConfigNames.length || path.effects.some((e) => e.kind === 'set'))) {
    walker.kinds.add('set');
    if (!relations.length && functions.every((f) => f.name === 'set_config')) walker.kinds.delete('select');
  }
  const kinds = [...walker.kinds].sort((a, b) => RANK.get(a)! - RANK.get(b)!);
  return {
    text: text.trim(),
    kinds: kinds.length ? kinds : ['other'], // an effect we failed to name is still an effect
    relations,
    functions,
    opaque: walker.opaque,
    settings: [...new Set([...walker.settings, ...path.setConfigNames])],
    pathEffects: path.effects,
    ...(path.refusal !== undefined ? { pathRefusal: path.refusal } : {}),
    assumesCatalogFirst: path.assumesCatalogFirst,
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
