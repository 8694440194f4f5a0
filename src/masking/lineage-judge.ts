/**
 * Column masking's say on each statement of a session: refused (a masked column used other
 * than as a direct output), or the masked sources of each output position, for the result's
 * plan. The analysis is cached by the statement's literal-free shape, per catalog, rule set
 * and search path, shared by every session that reads the same catalog; the per-statement
 * cost of a repeated statement is one shape and one lookup. A session adds only what its own
 * DECLAREs and PREPAREs defined (a later FETCH or EXECUTE returns their rows).
 */
import { parseSync } from 'libpg-query';
import { Lru } from '../policy/lru.js';
import { literalShape } from '../policy/shape.js';
import { statementLineage, type OutputColumn, type SourceColumn, type StatementLineage } from './lineage.js';
import { CatalogLineageContext, type LineageCatalog, type LineageRules } from './lineage-context.js';
import { LOGIN_SEARCH_PATH, type SearchPath } from '../policy/search-path.js';

export type OutputSources = readonly (readonly SourceColumn[])[];

/** The rows of a cursor or prepared statement lineage never saw declared: no plan can be trusted for them. */
export const UNFOLLOWED: OutputSources = Object.freeze([]);

interface QueryLineage {
  refused?: string;
  /** `sources`: the outputs' masked sources, made once per analysis; `reads`: the cursor or prepared statement a FETCH / EXECUTE reads */
  statements: readonly (StatementLineage & { reads?: string; sources?: OutputSources })[];
}

const CACHE_ENTRIES = 4096;
const MAX_CACHED_TEXT = 64 * 1024;
/** a session's cursors and prepared statements whose outputs are kept (the extended protocol's own bound is 4,096 statements) */
const MAX_NAMED = 4096;

interface PathCache {
  ctx: CatalogLineageContext;
  queries: Lru<string, QueryLineage>;
}

/** The analysis caches of one catalog: by rule set, then by search path (the same path object is found without building its key). */
const caches = new WeakMap<LineageCatalog, Map<LineageRules, { byPath: WeakMap<SearchPath, PathCache>; byKey: Map<string, PathCache> }>>();

function cacheFor(catalog: LineageCatalog, rules: LineageRules, searchPath: SearchPath): PathCache {
  let byRules = caches.get(catalog);
  if (!byRules) caches.set(catalog, (byRules = new Map()));
  let c = byRules.get(rules);
  if (!c) byRules.set(rules, (c = { byPath: new WeakMap(), byKey: new Map() }));
  const hit = c.byPath.get(searchPath);
  if (hit) return hit;
  const key = searchPath.join(',');
  let p = c.byKey.get(key);
  if (!p) {
    if (c.byKey.size >= 64) c.byKey.clear(); // search paths are the agent's choice: bounded
    c.byKey.set(key, (p = { ctx: new CatalogLineageContext(catalog, rules, searchPath), queries: new Lru(CACHE_ENTRIES) }));
  }
  c.byPath.set(searchPath, p);
  return p;
}

/** search paths remembered per session for reading results (each costs one cached lookup per result) */
const MAX_PATHS = 8;

const UNAVAILABLE = 'column masking applies to this target, but its catalog could not be read at login; no statement can be checked';

export class LineageJudge {
  /** outputs of the session's cursors and prepared statements, by "kind\nname" (bounded: the oldest are forgotten) */
  private readonly named = new Lru<string, readonly OutputColumn[]>(MAX_NAMED);
  /** every search path a checked statement may have run under: results are read under all of them */
  private readonly pathsSeen = new Map<string, SearchPath>([[LOGIN_SEARCH_PATH.join(','), LOGIN_SEARCH_PATH]]);
  private pathsVersion = 0;
  private readonly namedSources = new Lru<string, OutputSources>(MAX_NAMED);
  /** outputs merged over several paths, by the first path's analysis of the statement */
  private readonly merged = new WeakMap<object, { version: number; sources: OutputSources | undefined }>();

  /** `catalog` undefined: it could not be read, and every statement is refused (fail closed). */
  constructor(
    private readonly catalog: LineageCatalog | undefined,
    private readonly rules: LineageRules,
  ) {}

  /**
   * Why this query text must not run, or undefined, judged under every search path it may run
   * under. Records the outputs of its DECLAREs and PREPAREs, and of itself when it is the
   * Parse of a named statement (`preparedAs`).
   */
  check(sql: string, paths: readonly SearchPath[] = [LOGIN_SEARCH_PATH], preparedAs?: string, shape?: string): string | undefined {
    let defined: Map<string, OutputColumn[][]> | undefined; // made only when something is declared
    for (const path of paths) {
      const q = this.analyse(sql, path, shape);
      if (q.refused) return q.refused;
      // a Parse of a named statement: SQL's EXECUTE name runs it too (one namespace)
      if (preparedAs) (defined ??= new Map()).set(`prepared\n${preparedAs}`, [...(defined.get(`prepared\n${preparedAs}`) ?? []), [...(q.statements[0]?.outputs ?? [])]]);
      let earlier: Set<string> | undefined; // declared by an earlier statement of this text
      for (const s of q.statements) {
        // a FETCH or EXECUTE of something lineage never saw declared: its rows could only be masked by the server's description
        if (s.reads && !earlier?.has(s.reads) && this.named.get(s.reads) === undefined) {
          return `${s.reads.replace('\n', ' ')} was not declared through interlock (or is long forgotten): column masking cannot follow its rows; declare it again`;
        }
        if (!s.defines) continue;
        const key = `${s.defines.kind}\n${s.defines.name}`;
        (earlier ??= new Set()).add(key);
        (defined ??= new Map()).set(key, [...(defined.get(key) ?? []), [...(s.outputs ?? [])]]);
      }
    }
    for (const [key, variants] of defined ?? []) {
      const outputs = mergeOutputs(variants);
      this.named.set(key, outputs);
      this.namedSources.set(key, Object.freeze(outputs.map((o) => o.sources)));
    }
    // the common case, the login path alone, costs nothing here
    if (paths.length !== 1 || paths[0] !== LOGIN_SEARCH_PATH) {
      for (const path of paths) {
        const k = path.join(',');
        if (!this.pathsSeen.has(k) && this.pathsSeen.size < MAX_PATHS) {
          this.pathsSeen.set(k, path);
          this.pathsVersion++;
        }
      }
    }
    return undefined;
  }

  /**
   * The masked sources of each output column of statement `index` of a query text, or
   * undefined when it returns no rows lineage knows of. The same array comes back for the
   * same statement shape (result plans are kept by it).
   */
  outputs(sql: string, index = 0): OutputSources | undefined {
    if (this.pathsSeen.size === 1) {
      const s = this.analyse(sql, LOGIN_SEARCH_PATH).statements[index];
      return s?.sources ?? (s?.reads ? this.namedSources.get(s.reads) ?? UNFOLLOWED : undefined);
    }
    const first = this.analyse(sql, this.pathsSeen.values().next().value!).statements[index];
    if (!first) return undefined;
    if (!first.sources && first.reads && !this.named.get(first.reads)) return UNFOLLOWED;
    const memo = this.merged.get(first);
    if (memo?.version === this.pathsVersion) return memo.sources;
    const columns = this.outputColumns(sql, index);
    const sources = columns ? Object.freeze(columns.map((o) => o.sources)) : undefined;
    this.merged.set(first, { version: this.pathsVersion, sources });
    return sources;
  }

  /** The same, with each output's name (and whether a `*` of unknown width made later positions unknown). */
  outputColumns(sql: string, index = 0): readonly OutputColumn[] | undefined {
    const variants: (readonly OutputColumn[])[] = [];
    for (const path of this.pathsSeen.values()) {
      const s = this.analyse(sql, path).statements[index];
      const outputs = s?.outputs ?? (s?.reads ? this.named.get(s.reads) : undefined);
      if (outputs) variants.push(outputs);
    }
    return variants.length ? (variants.length === 1 ? variants[0] : mergeOutputs(variants)) : undefined;
  }

  /** The covered column each of a table's `columns` holds (itself, or a parent table's), for COPY of a table. */
  tableColumnSources(qualified: string, columns: readonly string[]): OutputSources | undefined {
    if (!this.catalog) return undefined;
    const dot = qualified.indexOf('.');
    const ctx = cacheFor(this.catalog, this.rules, LOGIN_SEARCH_PATH).ctx;
    return columns.map((column) => {
      const covered = ctx.masked({ schema: qualified.slice(0, dot), table: qualified.slice(dot + 1), column });
      return covered ? [covered] : [];
    });
  }

  /** `shape`: the text's literal-free shape when the caller has it already (policy's verdict does) */
  private analyse(sql: string, path: SearchPath, shape?: string): QueryLineage {
    if (!this.catalog) return { refused: UNAVAILABLE, statements: [] };
    const cache = cacheFor(this.catalog, this.rules, path);
    const key = shape ?? literalShape(sql) ?? sql;
    let q = cache.queries.get(key);
    if (!q) {
      q = analyseText(key, cache.ctx);
      // ORDER BY 2 reads a literal: such a statement's analysis belongs to its exact text
      if (q.statements.some((s) => s.positional) && key !== sql) {
        q = analyseText(sql, cache.ctx);
        if (sql.length <= MAX_CACHED_TEXT) cache.queries.set(sql, q);
      } else if (key.length <= MAX_CACHED_TEXT) cache.queries.set(key, q);
    }
    return q;
  }
}

/** Outputs under several possible paths: each position carries every source any of them gives it (mask more, never less). */
function mergeOutputs(variants: readonly (readonly OutputColumn[])[]): OutputColumn[] {
  const width = Math.max(...variants.map((v) => v.length));
  return Array.from({ length: width }, (_, i) => {
    const at = variants.map((v) => v[i]).filter((o): o is OutputColumn => o !== undefined);
    const sources = at.flatMap((o) => o.sources).filter((src, j, all) => all.findIndex((x) => x.schema === src.schema && x.table === src.table && x.column === src.column) === j);
    return { name: at[0]?.name ?? '?column?', sources, unknownWidth: at.some((o) => o.unknownWidth) || at.length < variants.length || undefined };
  });
}

function analyseText(sql: string, ctx: CatalogLineageContext): QueryLineage {
  let stmts: { stmt: Record<string, unknown> }[];
  try {
    stmts = (parseSync(sql) as { stmts?: { stmt: Record<string, unknown> }[] }).stmts ?? [];
  } catch (e) {
    // policy refuses what does not parse; here too, should it ever get this far
    return { refused: `statement could not be parsed: ${(e as Error).message}`, statements: [] };
  }
  const statements = stmts.map((s) => {
    const l = statementLineage(s.stmt, ctx);
    const reads = namedResult(s.stmt);
    const sources = l.outputs ? Object.freeze(l.outputs.map((o) => o.sources)) : undefined;
    return { ...l, ...(reads ? { reads } : {}), ...(sources ? { sources } : {}) };
  });
  const refused = statements.find((s) => s.refused)?.refused;
  return refused ? { refused, statements } : { statements };
}

/** FETCH / MOVE name or EXECUTE name: the key of the rows they return. */
function namedResult(stmt: Record<string, unknown>): string | undefined {
  const s = stmt as { FetchStmt?: { portalname?: string }; ExecuteStmt?: { name?: string } };
  if (s.FetchStmt?.portalname) return `cursor\n${s.FetchStmt.portalname}`;
  if (s.ExecuteStmt?.name) return `prepared\n${s.ExecuteStmt.name}`;
  return undefined;
}
