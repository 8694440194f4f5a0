/**
 * Which function calls may change the database, from the catalog. A built-in (pg_catalog)
 * may write when it is *volatile* (pg_proc.provolatile), but for a short list of volatile
 * built-ins that change nothing a policy cares about (clocks, randomness, sleeping, sizes
 * and status), plus the two STABLE ones that assign a transaction id. A function outside
 * pg_catalog may always write, whatever its volatility: PostgreSQL refuses an UPDATE written
 * in a STABLE function's body, but not a call of a volatile function from it (a STABLE
 * wrapper of nextval() moves the sequence); a rule allows one by name. Names are judged
 * as a whole (an overloaded name writes if any overload may), and a name the catalog read
 * at login does not know (created since) may write. Reading a view may write when its
 * definition calls such a function, directly or through another view. Pure.
 */

export interface FunctionEffects {
  /** may a call of this function change the database? */
  writes(schema: string | undefined, name: string): boolean;
  /** reading this relation (a view) calls a function that may write: that function ("schema.name", or "name" as the view wrote it), or undefined */
  readWrites(schema: string | undefined, name: string): string | undefined;
}

/** STABLE built-ins with a side effect all the same: they assign the transaction an id. */
const WRITING_STABLE = new Set(['txid_current', 'pg_current_xact_id']);

/**
 * Volatile built-ins that change no data, no sequence, no lock and no file: they read the
 * clock, randomness, sizes, WAL positions, locks held and statistics of the own transaction.
 * `set_config` is not here and not a write either: the analysis gives it its own kind (set).
 */
export const HARMLESS_VOLATILE: ReadonlySet<string> = new Set([
  'random', 'setseed', 'clock_timestamp', 'timeofday', 'gen_random_uuid', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
  'currval', 'lastval', 'pg_sequence_last_value',
  'pg_relation_size', 'pg_table_size', 'pg_indexes_size', 'pg_total_relation_size', 'pg_database_size', 'pg_tablespace_size',
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_get_wal_replay_pause_state', 'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn', 'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn',
  'pg_last_xact_replay_timestamp', 'pg_last_committed_xact', 'pg_xact_commit_timestamp', 'pg_xact_commit_timestamp_origin',
  'pg_xact_status', 'txid_status', 'pg_lock_status', 'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
  'pg_isolation_test_session_is_blocked', 'pg_partition_tree', 'pg_partition_ancestors', 'pg_jit_available',
  'pg_notification_queue_usage', 'pg_control_checkpoint', 'pg_control_init', 'pg_control_recovery', 'pg_control_system',
  'pg_collation_actual_version', 'pg_database_collation_actual_version', 'current_query', 'pg_stat_have_stats',
  'pg_stat_clear_snapshot', 'pg_export_snapshot', 'set_config',
]);

/** The per-transaction statistics readers (pg_stat_get_xact_*) are reads too. */
const HARMLESS_PREFIXES = ['pg_stat_get_xact_'];

export function harmless(name: string): boolean {
  return HARMLESS_VOLATILE.has(name) || HARMLESS_PREFIXES.some((p) => name.startsWith(p));
}

/** What the catalog says of functions (lineage-context's LineageCatalog carries it). */
export interface FunctionCatalog {
  /** function names in pg_catalog */
  readonly builtinFunctions: ReadonlySet<string>;
  /** function names defined in any other schema */
  readonly otherFunctions: ReadonlySet<string>;
  /** names in pg_catalog with a volatile overload */
  readonly volatileBuiltins?: ReadonlySet<string>;
  /** names outside pg_catalog with a volatile overload */
  readonly volatileOthers?: ReadonlySet<string>;
  /** what each user view runs when read (its definition, parsed): functions (schema or undefined, name) and relations ("schema.name") */
  readonly viewDependencies?: ReadonlyMap<string, { functions: readonly (readonly [string | undefined, string])[]; relations: readonly string[] }>;
}

const byCatalog = new WeakMap<FunctionCatalog, FunctionEffects>();

/** Effects as one catalog tells them; one object per catalog, so verdicts are cached per catalog. */
export function catalogFunctionEffects(catalog: FunctionCatalog): FunctionEffects {
  let effects = byCatalog.get(catalog);
  if (!effects) {
    const { builtinFunctions, otherFunctions } = catalog;
    const volatileBuiltins = catalog.volatileBuiltins;
    const volatileOthers = catalog.volatileOthers;
    // a catalog read without volatility (an older reader) knows nothing: every call may write
    if (!volatileBuiltins || !volatileOthers) return UNKNOWN_EFFECTS;
    const builtinWrites = (name: string) => (volatileBuiltins.has(name) && !harmless(name)) || WRITING_STABLE.has(name);
    const writes = (schema: string | undefined, name: string): boolean => {
      if (schema === 'pg_catalog') return builtinWrites(name) || !builtinFunctions.has(name);
      // unqualified, it may resolve to a built-in or, by overloading or the path, to another schema's: any of those may write
      if (schema === undefined && builtinFunctions.has(name) && !otherFunctions.has(name)) return builtinWrites(name);
      return true;
    };
    const views = viewWriters(catalog, writes);
    effects = {
      writes,
      readWrites: (schema, name) => (schema !== undefined ? views.get(`${schema}.${name}`) : views.get(`*.${name}`)),
    };
    byCatalog.set(catalog, effects);
  }
  return effects;
}

/**
 * The views whose reading calls a function that may write, directly or through the views
 * they read, each with that function; by "schema.view" and by "*.view" (an unqualified name
 * may be any schema's).
 */
function viewWriters(catalog: FunctionCatalog, writes: FunctionEffects['writes']): Map<string, string> {
  const out = new Map<string, string>();
  const deps = catalog.viewDependencies;
  if (!deps) return out;
  const resolving = new Set<string>();
  const writerOf = (view: string): string | undefined => {
    if (out.has(view)) return out.get(view);
    const d = deps.get(view);
    if (!d || resolving.has(view)) return undefined;
    resolving.add(view);
    const direct = d.functions.find(([schema, name]) => writes(schema, name));
    const writer = direct ? (direct[0] ? `${direct[0]}.${direct[1]}` : direct[1]) : d.relations.map(writerOf).find((w) => w !== undefined);
    resolving.delete(view);
    if (writer) out.set(view, writer);
    return writer;
  };
  for (const view of deps.keys()) {
    const writer = writerOf(view);
    if (writer) out.set(`*.${view.slice(view.indexOf('.') + 1)}`, writer);
  }
  return out;
}

/** No catalog could be read: every call but the harmless built-ins may write (fail closed). */
export const UNKNOWN_EFFECTS: FunctionEffects = {
  writes: (schema, name) => !((schema === undefined || schema === 'pg_catalog') && harmless(name)),
  readWrites: () => undefined,
};
