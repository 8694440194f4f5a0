/**
 * search_path as PostgreSQL reads it, and where an unqualified name may resolve under it.
 *
 * A path is its list of elements as PostgreSQL splits the setting: schema names, plus the
 * two names with a meaning of their own, `$user` (the current role's schema) and `pg_temp`
 * (the session's temporary schema). Pure: no I/O, no state.
 *
 * Policy reads an unqualified name as every schema it may resolve to, since which of them
 * holds the name is not known here: an allow rule must cover them all. `$user` may be any
 * schema (SET ROLE changes who the user is), so only a rule for any schema covers it.
 * `pg_temp` holds the session's own temporary tables only; it adds no reading of its own
 * (as before paths were tracked: a temporary table counts as the name's other readings).
 */

export type SearchPath = readonly string[];

/** The path every session starts with: interlock pins it in the startup packet. */
export const LOGIN_SEARCH_PATH: SearchPath = Object.freeze(['public']);

/** A schema candidate meaning "any schema": no schema name contains a NUL. */
export const ANY_SCHEMA = '\0any';

const CATALOG = 'pg_catalog';
const USER = '$user';
const TEMP = 'pg_temp';
/** NAMEDATALEN - 1: PostgreSQL truncates longer identifiers to this many bytes */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * The elements of a search_path value, split as PostgreSQL's SplitIdentifierString does:
 * comma-separated, blanks around names ignored, "quoted" names kept as written (with ""
 * for a quote), unquoted names folded to lower case, every name truncated to 63 bytes.
 * '' is the empty path. Undefined when PostgreSQL would reject the value.
 */
export function parseSearchPath(value: string): SearchPath | undefined {
  const out: string[] = [];
  let i = skipBlanks(value, 0);
  if (i === value.length) return out;
  for (;;) {
    let name: string;
    if (value[i] === '"') {
      name = '';
      i++;
      for (;;) {
        const end = value.indexOf('"', i);
        if (end < 0) return undefined; // unterminated quote
        name += value.slice(i, end);
        i = end + 1;
        if (value[i] !== '"') break;
        name += '"';
        i++;
      }
    } else {
      const start = i;
      while (i < value.length && value[i] !== ',' && !isBlank(value.charCodeAt(i))) i++;
      if (i === start) return undefined; // an empty unquoted name
      name = value.slice(start, i).replace(/[A-Z]+/g, (s) => s.toLowerCase()); // ASCII only, as the server folds
    }
    out.push(truncateIdentifier(name));
    i = skipBlanks(value, i);
    if (i === value.length) return out;
    if (value[i] !== ',') return undefined;
    i = skipBlanks(value, i + 1);
  }
}

/** A path from SET's arguments: each one names one schema, exactly as written (SET quotes them). */
export function pathFromSetValues(values: readonly string[]): SearchPath {
  return values.map(truncateIdentifier);
}

/** The path as a setting value: every name quoted, so that parseSearchPath reads it back as is. */
export function formatSearchPath(path: SearchPath): string {
  return path.map((name) => `"${name.replaceAll('"', '""')}"`).join(', ');
}

/** Schemas in the order an unqualified relation is looked up: pg_catalog first unless listed. */
function lookupOrder(path: SearchPath): string[] {
  const schemas = path.filter((s) => s !== TEMP).map((s) => (s === USER ? ANY_SCHEMA : s));
  return schemas.includes(CATALOG) ? schemas : [CATALOG, ...schemas];
}

/**
 * Where an unqualified relation may resolve under `path`. Every relation of pg_catalog is
 * named pg_*: such a name may be any schema up to pg_catalog (just pg_catalog when it is
 * searched first, as it is unless listed later); any other name is one of the path's other
 * schemas, or pg_catalog when there are none (it then resolves nowhere else).
 */
export function relationSchemas(path: SearchPath, name: string): string[] {
  const order = lookupOrder(path);
  const catalogAt = order.indexOf(CATALOG);
  if (name.startsWith('pg_')) return unique(order.slice(0, catalogAt + 1));
  const others = order.filter((s) => s !== CATALOG);
  return others.length ? unique(others) : [CATALOG];
}

/** Where an unqualified function may resolve under `path` (functions are never looked up in pg_temp). */
export function functionSchemas(path: SearchPath): string[] {
  return unique(lookupOrder(path));
}

/**
 * Is an unqualified function surely pg_catalog's under `path`? Only if pg_catalog is searched
 * first: otherwise a schema before it may hold a function of the same name that wins.
 */
export function catalogSearchedFirst(path: SearchPath): boolean {
  return lookupOrder(path)[0] === CATALOG;
}

/**
 * The paths that may be in effect for a statement, as the policy judges it. `current` for
 * the statement itself; `fallback` (a superset) for what a transaction's end or rollback
 * may return to. `key` names the pair in a verdict cache, '' for the login path alone.
 */
export interface PathsInEffect {
  readonly key: string;
  readonly current: readonly SearchPath[];
  readonly fallback: readonly SearchPath[];
}

export const LOGIN_PATHS: PathsInEffect = pathsInEffect([LOGIN_SEARCH_PATH], [LOGIN_SEARCH_PATH]);

/** The pair of path sets, deduplicated, fallback including current. */
export function pathsInEffect(current: Iterable<SearchPath>, fallback: Iterable<SearchPath> = []): PathsInEffect {
  const now = uniquePaths(current);
  const back = uniquePaths([...now, ...fallback]);
  const key = now.length === 1 && back.length === 1 && samePath(now[0]!, LOGIN_SEARCH_PATH)
    ? ''
    : `${now.map(formatSearchPath).sort().join(' | ')} / ${back.map(formatSearchPath).sort().join(' | ')}`;
  return Object.freeze({ key, current: now, fallback: back });
}

/** What a statement does to search_path, or to the transaction that scopes its changes. */
export type PathEffect =
  /** a change to `path`: for the session (SET, RESET, set_config(…, false)), or until the transaction ends (SET LOCAL) */
  | { readonly kind: 'set'; readonly path: SearchPath; readonly local: boolean }
  | { readonly kind: 'begin' }
  /** the transaction ends (COMMIT, ROLLBACK, PREPARE TRANSACTION); `rollback` undoes its changes; `chain` begins another */
  | { readonly kind: 'end'; readonly rollback: boolean; readonly chain: boolean }
  | { readonly kind: 'savepoint' | 'release' | 'rollback_to'; readonly name: string }
  /** SQL PREPARE: the statement is read again under the path in effect whenever it runs */
  | { readonly kind: 'prepare'; readonly unqualified: boolean };

/**
 * The paths each statement of one simple Query may run under, in order. Statements of one
 * Query run one after the other, each only if the ones before it succeeded: after a change
 * the next statement runs under exactly the new path. A transaction's end (or a rollback to
 * a savepoint) may return to any fallback path. `effects[i]` are statement i's.
 */
export function pathsPerStatement(start: PathsInEffect, effects: readonly (readonly PathEffect[])[]): { during: PathsInEffect[]; after: PathsInEffect } {
  let now = start;
  const during: PathsInEffect[] = [];
  for (const list of effects) {
    during.push(now);
    for (const e of list) now = stepPaths(now, e);
  }
  return { during, after: now };
}

function stepPaths(now: PathsInEffect, e: PathEffect): PathsInEffect {
  switch (e.kind) {
    case 'set':
      return pathsInEffect([e.path], [...now.fallback, e.path]);
    case 'end':
    case 'rollback_to':
      return now.current.length === now.fallback.length ? now : pathsInEffect(now.fallback, now.fallback);
    default:
      return now;
  }
}

export function samePath(a: SearchPath, b: SearchPath): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

function uniquePaths(paths: Iterable<SearchPath>): SearchPath[] {
  const seen = new Map<string, SearchPath>();
  for (const p of paths) {
    const k = formatSearchPath(p);
    if (!seen.has(k)) seen.set(k, p);
  }
  return [...seen.values()];
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12; // scanner_isspace
}

function skipBlanks(s: string, i: number): number {
  while (i < s.length && isBlank(s.charCodeAt(i))) i++;
  return i;
}

/** At most 63 bytes of UTF-8, cut at a character boundary, as PostgreSQL truncates identifiers. */
function truncateIdentifier(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= MAX_IDENTIFIER_BYTES) return name;
  let end = MAX_IDENTIFIER_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return bytes.subarray(0, end).toString('utf8');
}

/**
 * The table an unqualified name in a statement names, "schema.table", as the first schema of
 * the path holding it (`exists` says which do). Under several possible paths they must all
 * agree. Not found anywhere: the path's only candidate schema, as a best guess. Undefined
 * when it cannot be told (paths disagree, `$user` comes first, several candidates).
 */
export function resolveRelation(paths: readonly SearchPath[], name: string, exists: (qualified: string) => boolean): string | undefined {
  const found = new Set<string | undefined>();
  for (const path of paths) {
    let hit: string | undefined;
    for (const schema of lookupOrder(path)) {
      if (schema === ANY_SCHEMA) return undefined; // the user's schema may hold it
      if (exists(`${schema}.${name}`)) {
        hit = `${schema}.${name}`;
        break;
      }
    }
    found.add(hit);
  }
  if (found.size !== 1) return undefined;
  const [only] = found;
  if (only !== undefined) return only;
  const guesses = new Set(paths.flatMap((p) => relationSchemas(p, name)));
  return guesses.size === 1 ? `${[...guesses][0]}.${name}` : undefined;
}
