/**
 * What one statement's parse tree does to search_path, for the session to keep track of it:
 * SET / SET LOCAL / RESET / RESET ALL / DISCARD ALL, set_config() called as a statement of
 * its own, and the transaction statements that scope such changes. A change the session
 * could not follow exactly (a value that is not a literal, set_config() somewhere its call
 * may or may not happen) comes back as a refusal. Also: which settings set_config() calls
 * change, where the name can be known. Pure: works on libpg-query's JSON tree.
 */
import { LOGIN_SEARCH_PATH, parseSearchPath, pathFromSetValues, type PathEffect } from './search-path.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Ast = { [field: string]: any };

export interface PathFacts {
  effects: PathEffect[];
  /** why this statement's change of search_path cannot be followed; it is then refused */
  refusal?: string;
  /** settings its set_config() calls change (lower case) */
  setConfigNames: string[];
  /** an unqualified set_config() or `=` was read as pg_catalog's: true only while pg_catalog is searched first */
  assumesCatalogFirst: boolean;
}

const STANDALONE = "SELECT pg_catalog.set_config('search_path', '<literal>', <true|false>)";
/** SelectStmt fields a plain `SELECT f(...)` has; any other (FROM, WHERE, LIMIT, UNION …) may change whether f runs */
const PLAIN_SELECT_FIELDS = new Set(['targetList', 'limitOption', 'op']);
/** the same, for pg_dump's `SELECT set_config(name, …) FROM pg_settings WHERE name = '…'` */
const SETTINGS_SELECT_FIELDS = new Set([...PLAIN_SELECT_FIELDS, 'fromClause', 'whereClause']);

/**
 * `stmt` is a top-level statement (RawStmt.stmt); `settings` the names its SET statements
 * change (nested ones too, e.g. CREATE FUNCTION … SET); `callsSetConfig` whether some
 * function named set_config is called anywhere in it; `unqualified` whether it names a
 * relation or function without a schema.
 */
export function pathFactsOf(stmt: Ast, settings: readonly string[], callsSetConfig: boolean, unqualified: boolean): PathFacts {
  const facts: PathFacts = { effects: [], setConfigNames: [], assumesCatalogFirst: false };
  const [type, b] = (Object.entries(stmt)[0] ?? []) as [string, Ast];
  switch (type) {
    case 'VariableSetStmt':
      topLevelSet(b, facts);
      break;
    case 'DiscardStmt':
      if (b.target === 'DISCARD_ALL') facts.effects.push({ kind: 'set', path: LOGIN_SEARCH_PATH, local: false });
      break;
    case 'TransactionStmt':
      transaction(b, facts);
      break;
    case 'PrepareStmt':
      facts.effects.push({ kind: 'prepare', unqualified });
      break;
  }
  if (type !== 'VariableSetStmt' && settings.includes('search_path')) {
    facts.refusal = 'search_path can only be changed by a SET, RESET or set_config() statement of its own through interlock';
  }
  if (callsSetConfig) setConfigCalls(type === 'SelectStmt' ? b : undefined, stmt, facts);
  return facts;
}

function topLevelSet(b: Ast, facts: PathFacts): void {
  if (b.kind === 'VAR_RESET_ALL') {
    facts.effects.push({ kind: 'set', path: LOGIN_SEARCH_PATH, local: false });
    return;
  }
  if (typeof b.name !== 'string' || b.name.toLowerCase() !== 'search_path') return;
  const local = b.is_local === true;
  switch (b.kind) {
    case 'VAR_SET_DEFAULT':
    case 'VAR_RESET':
      facts.effects.push({ kind: 'set', path: LOGIN_SEARCH_PATH, local });
      return;
    case 'VAR_SET_VALUE': {
      const values = ((b.args ?? []) as Ast[]).map(setValue);
      if (values.some((v) => v === undefined)) facts.refusal = 'SET search_path takes names or string literals only';
      else facts.effects.push({ kind: 'set', path: pathFromSetValues(values as string[]), local });
      return;
    }
    default: // FROM CURRENT
      facts.refusal = `SET search_path ${b.kind === 'VAR_SET_CURRENT' ? 'FROM CURRENT ' : ''}is not supported through interlock; give the path literally`;
  }
}

/** One SET argument as the server flattens it: names and strings as written, numbers as their text. */
function setValue(arg: Ast): string | undefined {
  const c = arg.A_Const as Ast | undefined;
  if (!c) return undefined;
  if (c.sval) return c.sval.sval ?? '';
  if (c.ival) return String(c.ival.ival ?? 0);
  if (c.fval) return c.fval.fval;
  return undefined;
}

function transaction(b: Ast, facts: PathFacts): void {
  switch (b.kind) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START':
      facts.effects.push({ kind: 'begin' });
      return;
    case 'TRANS_STMT_COMMIT':
    case 'TRANS_STMT_PREPARE': // PREPARE TRANSACTION keeps the session's settings, as COMMIT does
      facts.effects.push({ kind: 'end', rollback: false, chain: b.chain === true });
      return;
    case 'TRANS_STMT_ROLLBACK':
      facts.effects.push({ kind: 'end', rollback: true, chain: b.chain === true });
      return;
    case 'TRANS_STMT_SAVEPOINT':
    case 'TRANS_STMT_RELEASE':
    case 'TRANS_STMT_ROLLBACK_TO': {
      const kind = b.kind === 'TRANS_STMT_SAVEPOINT' ? 'savepoint' : b.kind === 'TRANS_STMT_RELEASE' ? 'release' : 'rollback_to';
      facts.effects.push({ kind, name: String(b.savepoint_name ?? '') });
    }
  }
}

/**
 * Every call of pg_catalog's set_config(): the setting it changes must be known (a literal,
 * or pg_dump's read of one row of pg_settings), and a change of search_path is followed only
 * when the call is the whole statement, so that it surely runs, once.
 */
function setConfigCalls(select: Ast | undefined, stmt: Ast, facts: PathFacts): void {
  const calls: Ast[] = [];
  collectSetConfigCalls(stmt, calls);
  const standalone = select ? standaloneCall(select) : undefined;
  if (!calls.length) facts.refusal = 'this use of set_config() is not followed through interlock';
  for (const call of calls) {
    const parts = ((call.funcname ?? []) as Ast[]).map((n) => n.String?.sval as string);
    if (parts.length > 1 && parts.at(-2) !== 'pg_catalog') continue; // someone's own function of that name
    if (parts.length === 1) facts.assumesCatalogFirst = true;
    const args = (call.args ?? []) as Ast[];
    const literalName = args[0]?.A_Const?.sval ? String(args[0].A_Const.sval.sval ?? '') : undefined;
    const name = (literalName ?? (call === standalone?.call ? standalone.settingName : undefined))?.toLowerCase();
    if (name === undefined) {
      facts.refusal = 'set_config() with a setting name that is not a literal is not allowed through interlock (it could change search_path)';
      continue;
    }
    if (standalone?.settingName !== undefined && call === standalone.call) facts.assumesCatalogFirst ||= standalone.unqualifiedEquals;
    if (name !== 'search_path') {
      facts.setConfigNames.push(name);
      continue;
    }
    if (call !== standalone?.call || standalone.settingName !== undefined || args.length !== 3 || call.agg_order || call.agg_filter || call.over || call.func_variadic) {
      facts.refusal = `set_config('search_path', …) is followed only as a statement of its own through interlock: ${STANDALONE}`;
      continue;
    }
    const value = args[1]?.A_Const?.sval ? String(args[1].A_Const.sval.sval ?? '') : undefined;
    const local = booleanLiteral(args[2]);
    if (value === undefined || local === undefined) {
      facts.refusal = `set_config('search_path', …) needs a string literal value and a boolean literal through interlock: ${STANDALONE}`;
      continue;
    }
    const path = parseSearchPath(value);
    if (!path) {
      facts.refusal = `set_config('search_path', …): ${JSON.stringify(value)} is not a valid search_path`;
      continue;
    }
    facts.effects.push({ kind: 'set', path, local });
  }
}

/**
 * The call that is a SELECT's whole content: `SELECT f(...)`, or pg_dump's
 * `SELECT f(name, …) FROM pg_settings WHERE name = '<literal>'`, whose setting name is that literal.
 */
function standaloneCall(s: Ast): { call: Ast; settingName?: string; unqualifiedEquals: boolean } | undefined {
  const targets = (s.targetList ?? []) as Ast[];
  const call = targets.length === 1 ? (targets[0]?.ResTarget?.val?.FuncCall as Ast | undefined) : undefined;
  if (!call || s.op !== 'SETOP_NONE') return undefined;
  const fields = Object.keys(s);
  if (fields.every((f) => PLAIN_SELECT_FIELDS.has(f))) return { call, unqualifiedEquals: false };
  if (!fields.every((f) => SETTINGS_SELECT_FIELDS.has(f))) return undefined;
  // FROM pg_settings WHERE name = '<literal>', and the call's first argument is that column
  const from = (s.fromClause ?? []) as Ast[];
  const rel = from.length === 1 ? (from[0]!.RangeVar as Ast | undefined) : undefined;
  if (!rel || rel.relname !== 'pg_settings' || (rel.schemaname !== undefined && rel.schemaname !== 'pg_catalog') || rel.alias) return undefined;
  const where = s.whereClause?.A_Expr as Ast | undefined;
  const op = ((where?.name ?? []) as Ast[]).map((n) => n.String?.sval);
  const plainEquals = op.length === 1 && op[0] === '=';
  if (!where || where.kind !== 'AEXPR_OP' || !(plainEquals || (op.length === 2 && op[0] === 'pg_catalog' && op[1] === '='))) return undefined;
  const literal = where.rexpr?.A_Const?.sval ? String(where.rexpr.A_Const.sval.sval ?? '') : undefined;
  if (literal === undefined || !isNameColumn(where.lexpr) || !isNameColumn(call.args?.[0])) return undefined;
  return { call, settingName: literal, unqualifiedEquals: plainEquals };
}

function isNameColumn(v: Ast | undefined): boolean {
  const fields = (v?.ColumnRef?.fields ?? []) as Ast[];
  const names = fields.map((f) => f.String?.sval);
  return (names.length === 1 && names[0] === 'name') || (names.length === 2 && names[0] === 'pg_settings' && names[1] === 'name');
}

/** A boolean constant: true/false, or a string the server reads as one. */
function booleanLiteral(arg: Ast | undefined): boolean | undefined {
  const c = arg?.A_Const as Ast | undefined;
  if (!c) return undefined;
  if (c.boolval) return c.boolval.boolval === true;
  if (c.sval) {
    const s = String(c.sval.sval ?? '').trim().toLowerCase();
    if (['t', 'true', 'y', 'yes', 'on', '1'].includes(s)) return true;
    if (['f', 'false', 'n', 'no', 'off', '0'].includes(s)) return false;
  }
  return undefined;
}

function collectSetConfigCalls(v: unknown, out: Ast[]): void {
  if (Array.isArray(v)) {
    for (const item of v) collectSetConfigCalls(item, out);
  } else if (v !== null && typeof v === 'object') {
    const obj = v as Ast;
    const call = (obj.FuncCall ?? obj.funccall) as Ast | undefined; // CallStmt holds its call bare
    if (call && ((call.funcname ?? []) as Ast[]).at(-1)?.String?.sval === 'set_config') out.push(call);
    for (const child of Object.values(obj)) collectSetConfigCalls(child, out);
  }
}
