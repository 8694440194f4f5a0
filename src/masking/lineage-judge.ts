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

export type OutputSources = readonly (readonly SourceColumn[])[];

interface QueryLineage {
  refused?: string;
  statements: readonly (StatementLineage & { reads?: string })[];
}

const CACHE_ENTRIES = 4096;
const MAX_CACHED_TEXT = 64 * 1024;
/** a session's cursors and prepared statements with known outputs, at most */
const MAX_NAMED = 1024;

/** The analysis caches of one catalog: by rule set, then by search path. */
const caches = new WeakMap<LineageCatalog, Map<LineageRules, Map<string, { ctx: CatalogLineageContext; queries: Lru<string, QueryLineage> }>>>();

function cacheFor(catalog: LineageCatalog, rules: LineageRules, searchPath: readonly string[]) {
  let byRules = caches.get(catalog);
  if (!byRules) caches.set(catalog, (byRules = new Map()));
  let byPath = byRules.get(rules);
  if (!byPath) byRules.set(rules, (byPath = new Map()));
  const key = searchPath.join(',');
  let c = byPath.get(key);
  if (!c) {
    if (byPath.size >= 64) byPath.clear(); // search paths are the agent's choice: bounded
    byPath.set(key, (c = { ctx: new CatalogLineageContext(catalog, rules, searchPath), queries: new Lru(CACHE_ENTRIES) }));
  }
  return c;
}

const UNAVAILABLE = 'column masking applies to this target, but its catalog could not be read at login; no statement can be checked';

export class LineageJudge {
  private readonly named = new Map<string, readonly OutputColumn[]>();
  private searchPath: readonly string[] = ['public'];
  private cache?: ReturnType<typeof cacheFor>;

  /** `catalog` undefined: it could not be read, and every statement is refused (fail closed). */
  constructor(
    private readonly catalog: LineageCatalog | undefined,
    private readonly rules: LineageRules,
  ) {}

  /** The session's search path changed: unqualified names resolve along it from now on. */
  setSearchPath(path: readonly string[]): void {
    this.searchPath = path;
    this.cache = undefined;
  }

  /** Why this query text must not run, or undefined. Records the outputs of its DECLAREs and PREPAREs. */
  check(sql: string): string | undefined {
    const q = this.analyse(sql);
    if (q.refused) return q.refused;
    for (const s of q.statements) {
      if (!s.defines) continue;
      const key = `${s.defines.kind}\n${s.defines.name}`;
      if (!this.named.has(key) && this.named.size >= MAX_NAMED) return `too many cursors and prepared statements in one session (${MAX_NAMED}) while column masking applies`;
      this.named.set(key, s.outputs ?? []);
    }
    return undefined;
  }

  /**
   * The masked sources of each output column of one statement's rows (a statement's own text,
   * as analyzeQuery splits it), or undefined when it returns no rows lineage knows of.
   */
  outputs(statement: string): OutputSources | undefined {
    return this.outputColumns(statement)?.map((o) => o.sources);
  }

  /** The same, with each output's name (and whether a `*` of unknown width made later positions unknown). */
  outputColumns(statement: string): readonly OutputColumn[] | undefined {
    const q = this.analyse(statement);
    const s = q.statements[0];
    if (!s) return undefined;
    if (s.outputs) return s.outputs;
    return s.reads ? this.named.get(s.reads) : undefined;
  }

  private analyse(sql: string): QueryLineage {
    if (!this.catalog) return { refused: UNAVAILABLE, statements: [] };
    const cache = (this.cache ??= cacheFor(this.catalog, this.rules, this.searchPath));
    const shape = literalShape(sql);
    const key = shape ?? sql;
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
    return reads ? { ...l, reads } : l;
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
