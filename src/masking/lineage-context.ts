/**
 * The catalog as lineage reads it: relations by name on the session's search path, views
 * resolved through their definitions (parsed once per catalog and rule set), masked columns
 * by the column rules, and which function calls are built-ins. Pure apart from the parser.
 */
import { parseSync } from 'libpg-query';
import { ANY_SCHEMA } from '../policy/search-path.js';
import { definitionLineage, Refused, type LineageContext, type LineageRelation, type SourceColumn, type ViewLineage } from './lineage.js';

/** What the catalog read at login says, for lineage. */
export interface LineageCatalog {
  /** every table, view, materialized view, partitioned and foreign table, by "schema.name" */
  readonly relations: ReadonlyMap<string, LineageRelation>;
  /** function names in pg_catalog */
  readonly builtinFunctions: ReadonlySet<string>;
  /** function names defined in any other schema (they may take an unqualified call from a built-in) */
  readonly otherFunctions: ReadonlySet<string>;
  /** names with a volatile overload, in pg_catalog and elsewhere (policy/function-effects.ts) */
  readonly volatileBuiltins?: ReadonlySet<string>;
  readonly volatileOthers?: ReadonlySet<string>;
  /** what each user view runs when read: the functions (schema, name) and relations ("schema.name") its rule depends on */
  readonly viewDependencies?: ReadonlyMap<string, { functions: readonly (readonly [string | undefined, string])[]; relations: readonly string[] }>;
}

export interface LineageRules {
  /** a column rule covers this column */
  masked(source: SourceColumn): boolean;
  /** a masking rule allows calls of this function by name ("schema.name") */
  functionAllowed(qualifiedName: string): boolean;
}

/** Lineage's view of one catalog, one rule set and one search path. */
export class CatalogLineageContext implements LineageContext {
  private readonly views = new Map<string, ViewLineage>();
  private readonly resolving = new Set<string>();
  private maskedSchemas?: Set<string>;
  private definitions?: CatalogLineageContext;

  constructor(
    private readonly catalog: LineageCatalog,
    private readonly rules: LineageRules,
    /** schemas searched for unqualified names, after pg_catalog */
    private readonly searchPath: readonly string[] = ['public'],
  ) {}

  relation(schema: string | undefined, name: string): LineageRelation | undefined {
    if (schema !== undefined) return this.catalog.relations.get(`${schema}.${name}`);
    for (const s of this.searchPath.includes('pg_catalog') ? this.searchPath : ['pg_catalog', ...this.searchPath]) {
      const r = s === ANY_SCHEMA ? this.inAnySchema(name) : this.catalog.relations.get(`${s}.${name}`);
      if (r) return r;
    }
    return undefined;
  }

  /** `$user` on the path: the schema is the upstream role's, which the catalog does not say; one candidate or none is certain */
  private inAnySchema(name: string): LineageRelation | undefined {
    const candidates = [...this.catalog.relations.values()].filter((r) => r.name === name);
    if (candidates.length <= 1) return candidates[0];
    if (candidates.some((r) => r.columns.some((column) => this.rules.masked({ schema: r.schema, table: r.name, column })))) {
      throw new Refused(`${name} may name several tables under "$user" on the search_path, one with masked columns: qualify it with its schema`);
    }
    return candidates[0];
  }

  masked(source: SourceColumn): SourceColumn | undefined {
    // a partition or an inheriting child holds its parent's rows: the parent's rules cover it (bounded walk: the catalog is input)
    let level = [source];
    for (let depth = 0; level.length && depth < 32; depth++) {
      const covered = level.find((s) => this.rules.masked(s));
      if (covered) return covered;
      level = level.flatMap((s) => (this.catalog.relations.get(`${s.schema}.${s.table}`)?.parents ?? []).map((p) => {
        const dot = p.indexOf('.');
        return { schema: p.slice(0, dot), table: p.slice(dot + 1), column: s.column };
      }));
    }
    return level[0]; // deeper than any real hierarchy: masked as its ancestor
  }

  schemaHoldsMasked(schema: string): boolean {
    if (!this.maskedSchemas) {
      this.maskedSchemas = new Set();
      for (const r of this.catalog.relations.values()) {
        if (r.columns.some((column) => this.rules.masked({ schema: r.schema, table: r.name, column }))) this.maskedSchemas.add(r.schema);
      }
    }
    return this.maskedSchemas.has(schema);
  }

  functionAllowed(schema: string | undefined, name: string): boolean {
    if (schema === 'pg_catalog') return true;
    if (schema === undefined && this.catalog.builtinFunctions.has(name) && !this.catalog.otherFunctions.has(name)) return true;
    const qualified = schema ?? this.searchPath.find((s) => s !== 'pg_temp') ?? 'public';
    return this.rules.functionAllowed(`${qualified}.${name}`);
  }

  viewOutputs(rel: LineageRelation): ViewLineage {
    // definitions are printed for the catalog's search path (public): read them with it, whatever the session's
    if (this.searchPath.length !== 1 || this.searchPath[0] !== 'public') {
      this.definitions ??= new CatalogLineageContext(this.catalog, this.rules);
      return this.definitions.viewOutputs(rel);
    }
    const key = `${rel.schema}.${rel.name}`;
    const known = this.views.get(key);
    if (known) return known;
    if (this.resolving.has(key)) return { refused: `${key} is defined through itself` };
    this.resolving.add(key);
    let lineage: ViewLineage;
    try {
      const stmt = (parseSync(rel.definition ?? '') as { stmts?: { stmt: Record<string, unknown> }[] }).stmts?.[0]?.stmt as { SelectStmt?: Record<string, unknown> } | undefined;
      // a view's definition is read with the catalog's search path (public): names in it are as printed
      lineage = stmt?.SelectStmt ? definitionLineage(stmt.SelectStmt, this) : { refused: 'its definition is not a SELECT' };
    } catch (e) {
      lineage = { refused: `its definition could not be parsed (${(e as Error).message})` };
    } finally {
      this.resolving.delete(key);
    }
    this.views.set(key, lineage);
    return lineage;
  }
}
