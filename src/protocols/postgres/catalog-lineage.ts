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
import { ProtocolError } from './framer.js';

/** Rows of (kind, schema, name, value): v = view definition, p = parent "schema.name", b / o = function names joined by U+001F. */
export const LINEAGE_SQL =
  "SELECT 'v', n.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c " +
  "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v','m') AND n.nspname NOT IN ('pg_catalog','information_schema') " +
  "UNION ALL SELECT 'p', cn.nspname, c.relname, pn.nspname || '.' || p.relname FROM pg_catalog.pg_inherits i " +
  'JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace ' +
  'JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace ' +
  "UNION ALL SELECT 'b', '', '', string_agg(DISTINCT p.proname, chr(31)) FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace " +
  "UNION ALL SELECT 'o', '', '', string_agg(DISTINCT p.proname, chr(31)) FROM pg_catalog.pg_proc p WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace " +
  // names with a volatile overload, in pg_catalog and elsewhere: a call of one may write (policy/function-effects.ts)
  "UNION ALL SELECT 'vb', '', '', string_agg(DISTINCT p.proname, chr(31)) FROM pg_catalog.pg_proc p WHERE p.provolatile = 'v' AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace " +
  "UNION ALL SELECT 'vo', '', '', string_agg(DISTINCT p.proname, chr(31)) FROM pg_catalog.pg_proc p WHERE p.provolatile = 'v' AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace " +
  // what each user view runs when read: the functions ('f' schema.name) and relations ('r' schema.name) its rule depends on
  "UNION ALL SELECT 'wv', n.nspname, c.relname, string_agg(DISTINCT CASE WHEN p.oid IS NOT NULL THEN 'f' || pn.nspname || '.' || p.proname " +
  "ELSE 'r' || rn.nspname || '.' || rc.relname END, chr(31)) FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class " +
  'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ' +
  "JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid " +
  "LEFT JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.refobjid " +
  'LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace ' +
  "LEFT JOIN pg_catalog.pg_class rc ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND rc.oid = d.refobjid AND rc.oid <> c.oid " +
  'LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace ' +
  "WHERE c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND (p.oid IS NOT NULL OR rc.oid IS NOT NULL) " +
  'GROUP BY n.nspname, c.relname';

/** One DataRow's text fields (NULL as undefined); the upstream's rows are input like any other. */
export function dataRowFields(payload: Buffer, count: number): (string | undefined)[] {
  const fields: (string | undefined)[] = [];
  let at = 2;
  for (let i = 0; i < count; i++) {
    if (at + 4 > payload.length) throw new ProtocolError('catalog row ends inside a field');
    const len = payload.readInt32BE(at);
    if (at + 4 + Math.max(len, 0) > payload.length) throw new ProtocolError('catalog row field runs past the row');
    fields.push(len < 0 ? undefined : payload.toString('utf8', at + 4, at + 4 + len));
    at += 4 + Math.max(len, 0);
  }
  return fields;
}

/** The lineage catalog from LINEAGE_SQL's rows and the relations (with columns) already read. */
export function parseLineageRows(rows: Buffer[], tables: ReadonlyMap<string, { name: string; columns: string[] }>): LineageCatalog {
  const relations = new Map<string, LineageRelation & { parents?: string[] }>();
  for (const [key, t] of tables) {
    const dot = key.indexOf('.');
    relations.set(key, { schema: key.slice(0, dot), name: key.slice(dot + 1), columns: t.columns });
  }
  let builtinFunctions = new Set<string>();
  let otherFunctions = new Set<string>();
  let volatileBuiltins = new Set<string>();
  let volatileOthers = new Set<string>();
  const viewDependencies = new Map<string, { functions: [string, string][]; relations: string[] }>();
  for (const payload of rows) {
    const [kind, schema, name, value] = dataRowFields(payload, 4);
    const rel = relations.get(`${schema}.${name}`);
    if (kind === 'v' && rel && value !== undefined) rel.definition = value;
    else if (kind === 'p' && rel && value !== undefined) (rel.parents ??= []).push(value);
    else if (kind === 'b') builtinFunctions = new Set(value ? value.split('\x1f') : []);
    else if (kind === 'o') otherFunctions = new Set(value ? value.split('\x1f') : []);
    else if (kind === 'vb') volatileBuiltins = new Set(value ? value.split('\x1f') : []);
    else if (kind === 'vo') volatileOthers = new Set(value ? value.split('\x1f') : []);
    else if (kind === 'wv' && value) {
      const deps = { functions: [] as [string, string][], relations: [] as string[] };
      for (const d of value.split('\x1f')) {
        const qualified = d.slice(1);
        const dot = qualified.indexOf('.');
        if (d[0] === 'f') deps.functions.push([qualified.slice(0, dot), qualified.slice(dot + 1)]);
        else deps.relations.push(qualified);
      }
      viewDependencies.set(`${schema}.${name}`, deps);
    }
  }
  return { relations, builtinFunctions, otherFunctions, volatileBuiltins, volatileOthers, viewDependencies };
}
