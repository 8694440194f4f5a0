/**
 * The upstream's tables and their columns, read once per session at login, for masking
 * rules that name tables and columns. Sessions of one target and database nearly always
 * read the very same catalog (thousands of names): an identical one is shared, so a
 * thousand idle sessions hold one copy of it, not a thousand. Shared catalogs are never
 * changed; a changed schema reads differently and gets its own.
 */
import { createHash, type Hash } from 'node:crypto';
import { ProtocolError } from './framer.js';
import type { LineageCatalog } from '../../masking/lineage-context.js';
import { FUNCTIONS_SQL, LINEAGE_SQL, parseLineageRows } from './catalog-lineage.js';
import { dataRowFields } from './data-row.js';

/** the catalog query and, for lineage (column rules), its views, parents and function names, in one round trip */

/**
 * every relation a column can come from, with its columns (names, and their attribute numbers:
 * RowDescription names a column's source by table OID and attnum), for masking rules
 */
export const CATALOG_SQL =
  'SELECT c.oid, n.nspname, c.relname, (SELECT string_agg(a.attname, chr(31) ORDER BY a.attnum) FROM pg_catalog.pg_attribute a ' +
  'WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ' +
  "(SELECT string_agg(a.attnum::text, ',' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a " +
  'WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) ' +
  "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','v','m','p','f')";

/** the catalog query and, for lineage (column rules), its views, parents and function names, in one round trip */
export const CATALOG_WITH_LINEAGE_SQL = `${CATALOG_SQL};${LINEAGE_SQL}`;
/** the same without the tables (no column rules): the functions, for the policy's judgement of calls */
export const FUNCTION_CATALOG_SQL = `SELECT 1 WHERE false;${FUNCTIONS_SQL}`;
/** A relation as the catalog lists it. */
export interface CatalogTable {
  /** "schema.table" */
  readonly name: string;
  readonly schema: string;
  readonly table: string;
  /** column names by attribute number; dropped columns leave gaps */
  readonly columns: ReadonlyMap<number, string>;
}

export interface Catalog {
  /** relations by OID (RowDescription names a column's table by OID, and the column by attnum) */
  readonly byOid: ReadonlyMap<number, CatalogTable>;
  /** the table and its columns in order, by "schema.table" (a COPY names its table) */
  readonly byName: ReadonlyMap<string, { name: string; columns: string[] }>;
  /** read when column rules apply: views, parents and functions, for lineage */
  readonly lineage?: LineageCatalog;
}

/** the last catalog read per target and database; bounded, as databases may be the agent's choice */
const shared = new Map<string, { digest: string; catalog: Catalog }>();
const MAX_SHARED = 64;

/** Collects the catalog query's DataRows during login; parses them only when no identical catalog is shared. */
export class CatalogReader {
  private readonly hash: Hash = createHash('sha256');
  /** the rows' payloads (views): kept only until finish() */
  private rows: Buffer[] = [];
  /** LINEAGE_SQL's rows, the second result */
  private lineageRows: Buffer[] = [];
  private results = 0;

  row(payload: Buffer): void {
    this.hash.update(payload);
    (this.results === 0 ? this.rows : this.lineageRows).push(payload);
  }

  /** a result ended (CommandComplete): the next rows are the next query's */
  resultDone(): void {
    this.results++;
    this.hash.update(`\0${this.results}`);
  }

  /** The catalog these rows describe, shared with earlier sessions of `key` that read the same. */
  finish(key: string): Catalog {
    const digest = this.hash.digest('base64');
    const rows = this.rows;
    const lineageRows = this.lineageRows;
    this.rows = [];
    this.lineageRows = [];
    const known = shared.get(key);
    if (known?.digest === digest) return known.catalog;
    const tables = parseRows(rows);
    // two results: the lineage query was asked for and answered
    const catalog: Catalog = this.results >= 2 ? { ...tables, lineage: parseLineageRows(lineageRows, tables.byName) } : tables;
    shared.delete(key);
    if (shared.size >= MAX_SHARED) shared.delete(shared.keys().next().value!);
    shared.set(key, { digest, catalog });
    return catalog;
  }
}

/** DataRows of CATALOG_SQL, each read by tableOf. */
function parseRows(rows: Buffer[]): Catalog {
  const byOid = new Map<number, CatalogTable>();
  const byName = new Map<string, { name: string; columns: string[] }>();
  for (const payload of rows) {
    const { oid, table, names } = tableOf(readFields(payload, 5));
    byOid.set(oid, table);
    byName.set(table.name, { name: table.name, columns: names });
  }
  return { byOid, byName };
}

/** One catalog row: oid, schema, table, column names joined by U+001F, their attnums joined by commas. */
function tableOf([oid, schema, relname, names, attnums]: string[]): { oid: number; table: CatalogTable; names: string[] } {
  const nameList = names ? names.split('\x1f') : [];
  const numbers = attnums ? attnums.split(',') : [];
  if (numbers.length !== nameList.length) throw new ProtocolError('catalog row lists a different number of attnums than of columns');
  const columns = new Map<number, string>();
  nameList.forEach((n, i) => columns.set(Number(numbers[i]), n));
  return { oid: Number(oid), table: { name: `${schema}.${relname}`, schema, table: relname, columns }, names: nameList };
}

/** The first `count` fields of a DataRow payload, as text ('' for NULL). */
function readFields(payload: Buffer, count: number): string[] {
  return dataRowFields(payload, count).map((f) => f ?? '');
}
