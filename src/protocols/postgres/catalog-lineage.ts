/**
 * What lineage needs of the upstream's catalog beyond tables and columns, read at login in
 * the same round trip: each user view's definition, each table's parents (a partition or an
 * inheriting child holds its parent's rows, so its columns are masked like the parent's),
 * and the names of the functions in pg_catalog and elsewhere (an unqualified call is a
 * built-in only when no other schema defines the same name), with those that have a
 * volatile overload (a call of one may write).
 */
import type { LineageCatalog } from '../../masking/lineage-context.js';
import type { LineageRelation } from '../../masking/lineage.js';
import { dataRowFields } from './data-row.js';
import { analyzeQuery } from '../../policy/analysis.js';

/*
 * Rows of (kind, schema, name, value): fn = every function as builtin flag (1/0), volatility
 * (i/s/v) and name, joined by U+001F; v / m = a user view's / materialized view's definition;
 * p = a table's parent "schema.name".
 */

/** Functions with their volatility, and user views' definitions: what policy needs to judge calls (no column rules). */
export const FUNCTIONS_SQL =
  "SELECT 'fn', '', '', string_agg(DISTINCT (p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace)::int::text || p.provolatile::text || p.proname, chr(31)) " +
  'FROM pg_catalog.pg_proc p ' +
  // a view runs its definition when read (a materialized view does not): lineage follows both
  "UNION ALL SELECT c.relkind::text, n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c " +
  "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v','m') AND n.nspname NOT IN ('pg_catalog','information_schema')";

/** Tables' parents too, for lineage (column rules), in one result with the functions and views. */
export const LINEAGE_SQL =
  "SELECT 'p', cn.nspname, c.relname, pn.nspname || '.' || p.relname FROM pg_catalog.pg_inherits i " +
  'JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace ' +
  'JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace ' +
  `UNION ALL ${FUNCTIONS_SQL}`;


/** The lineage catalog from LINEAGE_SQL's rows and the relations (with columns) already read. */
export function parseLineageRows(rows: Buffer[], tables: ReadonlyMap<string, { name: string; columns: string[] }>): LineageCatalog {
  const relations = new Map<string, LineageRelation & { parents?: string[] }>();
  for (const [key, t] of tables) {
    const dot = key.indexOf('.');
    relations.set(key, { schema: key.slice(0, dot), name: key.slice(dot + 1), columns: t.columns });
  }
  const builtinFunctions = new Set<string>();
  const otherFunctions = new Set<string>();
  const volatileBuiltins = new Set<string>();
  const volatileOthers = new Set<string>();
  const viewDependencies = new Map<string, { functions: [string | undefined, string][]; relations: string[] }>();
  for (const payload of rows) {
    const [kind, schema, name, value] = dataRowFields(payload, 4);
    const rel = relations.get(`${schema}.${name}`);
    if ((kind === 'v' || kind === 'm') && value !== undefined) {
      if (rel) rel.definition = value;
      if (kind === 'v') viewDependencies.set(`${schema}.${name}`, definitionCalls(value));
    } else if (kind === 'p' && rel && value !== undefined) (rel.parents ??= []).push(value);
    else if (kind === 'fn') {
      for (const f of value ? value.split('\x1f') : []) {
        const builtin = f[0] === '1';
        const fname = f.slice(2);
        (builtin ? builtinFunctions : otherFunctions).add(fname);
        if (f[1] === 'v') (builtin ? volatileBuiltins : volatileOthers).add(fname);
      }
    }
  }
  return { relations, builtinFunctions, otherFunctions, volatileBuiltins, volatileOthers, viewDependencies };
}

/**
 * What a view's definition calls and reads, from the real parser; names as pg_get_viewdef
 * printed them (unqualified when visible on the catalog's search path, public). A definition
 * that cannot be analysed calls an unknown function: reading the view may write.
 */
function definitionCalls(definition: string): { functions: [string | undefined, string][]; relations: string[] } {
  let q;
  try {
    q = analyzeQuery(definition);
  } catch {
    q = undefined; // the parser is not loaded (a tool reading the catalog without it)
  }
  if (!q || q.error || !q.statements.length) return { functions: [[undefined, '(unreadable view definition)']], relations: [] };
  return {
    functions: q.statements.flatMap((s) => s.functions.map((f): [string | undefined, string] => [f.schema, f.name])),
    relations: q.statements.flatMap((s) => s.relations.map((r) => `${r.schema ?? 'public'}.${r.name}`)),
  };
}
