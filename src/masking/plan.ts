/**
 * Compiles a policy's masking rules once, then turns each result set's columns into a RowPlan:
 * per column, nothing, a whole-value strategy, or detectors to run over its values.
 *
 * Rule semantics (rules apply in order):
 * - `columns` only: the whole value of a matching column is masked; the first such rule wins.
 * - `detectors` only: the detectors run on every column a detector can apply to.
 * - both: the detectors run on the matching columns only (scoped detection, e.g. emails in `notes`).
 * A column that a column rule masks whole runs no detectors. When several rules name the same
 * detector for a column, the first rule's strategy is used.
 *
 * Column patterns are `column`, `table.column` or `schema.table.column`; `*` matches any run of
 * characters within one segment; case-insensitive (unquoted identifiers fold to lower case, and
 * over-matching a masking rule is the safe direction). A column whose table is unknown (computed,
 * or the caller could not resolve it) matches a pattern's table/schema segments only where they
 * are exactly `*`: `*.ssn` covers `SELECT ssn AS ssn`-style computed columns, `customers.ssn` does not.
 * A column rule also matches a column when it matches one of the column's sources (the table
 * column it was read from): `SELECT ssn AS x FROM customers` is masked by a rule on `ssn`.
 */
import type { MaskingRuleDef } from '../config/types.js';
import { getDetector } from './detectors.js';
import { globToRegExp } from '../util/glob.js';
import { makeStrategy, type Strategy, type StrategyName } from './strategies.js';
import type { Scanner } from './apply.js';
import { INT8_OID, JSONB_OID, JSON_OID, NO_DETECT_OIDS, NUMERIC_OID, TEXT_LIKE_OIDS } from './pgtypes.js';

export type { Scanner } from './apply.js';

/** A table column a result column's values come from. */
export interface SourceColumn {
  schema: string;
  table: string;
  column: string;
}

/** A result column as RowDescription describes it. */
export interface ResultColumn {
  name: string;
  /**
   * the table columns its values come from (the one RowDescription names by table OID and
   * attnum, and any lineage found in the statement): a column rule matching any of them masks
   * the column, whatever its output name
   */
  sources?: readonly SourceColumn[];
  /** "schema.table"; undefined when the column is computed or its table is unknown */
  tableName?: string;
  /** the column comes from a table whose name could not be resolved: every table/schema segment matches (mask more, never less) */
  unresolvedTable?: boolean;
  /** 0 when unknown (e.g. COPY columns known by name only) */
  typeOid: number;
  format: 0 | 1;
}

/**
 * How a column's wire bytes become text and back:
 * - text: UTF-8 text, masked in place (text format of any type; binary text-like types)
 * - json: UTF-8 JSON text that must stay valid JSON
 * - jsonb: binary jsonb, a version byte (1) then JSON text
 * - int8 / numeric: binary numbers, rendered to decimal for detection; a hit NULLs the value
 * - opaque: any other binary type; scanned as (lossy) UTF-8, a hit NULLs the value
 */
export type ValueCodec = 'text' | 'json' | 'jsonb' | 'int8' | 'numeric' | 'opaque';

export type ColumnPlan =
  | {
      readonly kind: 'whole';
      readonly codec: ValueCodec;
      readonly strategy: Strategy;
      /** strategy is redact: the output does not depend on the value, which need not be decoded */
      readonly redact: boolean;
      /** "column:<name>" */
      readonly countKey: string;
    }
  | { readonly kind: 'scan'; readonly codec: ValueCodec; readonly scanners: readonly Scanner[] };

export interface RowPlan {
  /** no rule can touch any column: forward rows without looking at them */
  readonly touchesNothing: boolean;
  /** by field position; null: leave the field alone */
  readonly columns: readonly (ColumnPlan | null)[];
  /** for fields beyond `columns` (COPY with unknown columns); null when the columns are known */
  readonly other: ColumnPlan | null;
}

export interface MaskerOptions {
  /** key for the `hash` strategy; required when a rule uses it */
  hashKey?: string | Uint8Array;
  /** OIDs of extension types whose binary form is plain text (citext, …): masked in place, not NULLed */
  textLikeOids?: Iterable<number>;
}

/** A compiled `[schema.][table.]column` glob. */
export interface ColumnPattern {
  source: string;
  column: RegExp;
  /** undefined: the pattern has no such segment; null: the segment is `*` */
  table?: RegExp | null;
  schema?: RegExp | null;
}

interface CompiledRule {
  /** its position in the rules the masker was given */
  index: number;
  patterns: ColumnPattern[] | null;
  scanners: Scanner[] | null;
  strategy: Strategy;
  strategyName: StrategyName;
  redact: boolean;
}

/** Which rules mask a column, for people reading policies (`interlock policy check`); rules by index. */
export type ColumnMasking =
  | { kind: 'whole'; rule: number; strategy: StrategyName }
  | { kind: 'scan'; detectors: { detector: string; rule: number; strategy: StrategyName }[] }
  | { kind: 'none' };

function segment(glob: string): RegExp | null {
  if (glob === '*') return null;
  const body = glob
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 'i');
}

/** Throws for a pattern that is not [schema.][table.]column with non-empty segments. */
export function compileColumnPattern(source: string): ColumnPattern {
  const parts = source.split('.');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    throw new Error(`masking column pattern "${source}" is not [schema.][table.]column`);
  }
  const column = segment(parts[parts.length - 1]) ?? /^/;
  const p: ColumnPattern = { source, column };
  if (parts.length >= 2) p.table = segment(parts[parts.length - 2]);
  if (parts.length === 3) p.schema = segment(parts[0]);
  return p;
}

function segmentMatches(re: RegExp | null | undefined, value: string | undefined): boolean {
  if (re === undefined || re === null) return true;
  return value !== undefined && re.test(value);
}

export function patternMatches(p: ColumnPattern, name: string, schema: string | undefined, table: string | undefined): boolean {
  return p.column.test(name) && segmentMatches(p.table, table) && segmentMatches(p.schema, schema);
}

export class Masker {
  private readonly rules: CompiledRule[];
  private readonly textLike: ReadonlySet<number>;
  /** scanners of every detector rule, for columns nobody can name */
  private readonly anyColumnScanners: Scanner[];
  private readonly allowedFunctions: RegExp[];
  private lineage?: Masker['lineageRules'];

  constructor(rules: readonly MaskingRuleDef[], opts: MaskerOptions = {}) {
    this.textLike = opts.textLikeOids ? new Set([...TEXT_LIKE_OIDS, ...opts.textLikeOids]) : TEXT_LIKE_OIDS;
    this.rules = rules.map((r, index) => {
      const strategy = makeStrategy(r.strategy, opts.hashKey);
      const patterns = r.columns?.length ? r.columns.map(compileColumnPattern) : null;
      const scanners = r.detectors?.length
        ? r.detectors.map((d) => ({ detector: getDetector(d), strategy, countKey: d }))
        : null;
      return { index, patterns, scanners, strategy, strategyName: r.strategy, redact: r.strategy === 'redact' };
    });
    this.anyColumnScanners = dedupe(this.rules.flatMap((r) => r.scanners ?? []));
    this.allowedFunctions = rules.flatMap((r) => r.allowFunctions ?? []).map((g) => globToRegExp(g.toLowerCase(), '.'));
  }

  /** True when no rule exists at all (the caller may skip planning entirely). */
  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Some rule masks by column (such rules cannot follow COPY, whose columns are unnamed). */
  get hasColumnRules(): boolean {
    return this.rules.some((r) => r.patterns !== null);
  }

  /** Some column pattern names a table or schema: the caller should resolve table OIDs to names. */
  get needsTableNames(): boolean {
    return this.rules.some((r) => r.patterns?.some((p) => p.table || p.schema));
  }

  /** Does a column rule cover this table column? (lineage: such a column may only be selected as is) */
  coversColumn(source: { schema: string; table: string; column: string }): boolean {
    return this.rules.some((r) => r.patterns?.some((p) => patternMatches(p, source.column, source.schema, source.table)));
  }

  /** The rules as lineage reads them; one object per masker, so that analyses are cached per rule set. */
  get lineageRules(): { masked(source: { schema: string; table: string; column: string }): boolean; functionAllowed(qualifiedName: string): boolean } {
    return (this.lineage ??= { masked: (s) => this.coversColumn(s), functionAllowed: (n) => this.allowsFunction(n) });
  }

  /** A masking rule allows calls of this function ("schema.name") while column rules apply. */
  allowsFunction(qualifiedName: string): boolean {
    const n = qualifiedName.toLowerCase();
    return this.allowedFunctions.some((re) => re.test(n));
  }

  /** Plan for a result set; call once per RowDescription (or COPY column list). */
  forColumns(columns: readonly ResultColumn[]): RowPlan {
    const plans = columns.map((c) => this.columnPlan(c));
    return { touchesNothing: plans.every((p) => p === null), columns: plans, other: null };
  }

  /**
   * Plan for rows whose columns are unknown (e.g. COPY (query) TO STDOUT without a column list):
   * column rules cannot apply, every detector rule runs on every field as text.
   */
  forUnknownColumns(): RowPlan {
    const other: ColumnPlan | null = this.anyColumnScanners.length
      ? { kind: 'scan', codec: 'text', scanners: this.anyColumnScanners }
      : null;
    return { touchesNothing: other === null, columns: [], other };
  }

  /** The rules behind forColumns' plan of each column: a whole-value rule, the detectors (first rule per detector), or none. */
  explain(columns: readonly ResultColumn[]): ColumnMasking[] {
    return columns.map((c) => {
      const chosen = this.rulesFor(c);
      if (chosen === null) return { kind: 'none' };
      if ('whole' in chosen) return { kind: 'whole', rule: chosen.whole.index, strategy: chosen.whole.strategyName };
      const seen = new Set<string>();
      const detectors = chosen.detecting.flatMap((r) => r.scanners!.map((s) => ({ detector: s.detector.name, rule: r.index, strategy: r.strategyName })));
      return { kind: 'scan', detectors: detectors.filter((d) => !seen.has(d.detector) && (seen.add(d.detector), true)) };
    });
  }

  private columnPlan(c: ResultColumn): ColumnPlan | null {
    const chosen = this.rulesFor(c);
    if (chosen === null) return null;
    const codec = codecOf(c, this.textLike);
    if ('whole' in chosen) {
      const r = chosen.whole;
      return { kind: 'whole', codec, strategy: r.strategy, redact: r.redact, countKey: `column:${c.name}` };
    }
    return { kind: 'scan', codec, scanners: dedupe(chosen.detecting.flatMap((r) => r.scanners!)) };
  }

  /** The first column rule masking the column whole, else the detector rules that scan it (in order), else null. */
  private rulesFor(c: ResultColumn): { whole: CompiledRule } | { detecting: CompiledRule[] } | null {
    let schema: string | undefined;
    let table: string | undefined;
    if (c.tableName !== undefined) {
      const dot = c.tableName.indexOf('.');
      if (dot === -1) table = c.tableName;
      else {
        schema = c.tableName.slice(0, dot);
        table = c.tableName.slice(dot + 1);
      }
    }
    const byName = c.unresolvedTable
      ? (p: ColumnPattern) => p.column.test(c.name)
      : (p: ColumnPattern) => patternMatches(p, c.name, schema, table);
    const sources = c.sources;
    const matches = sources?.length
      ? (r: CompiledRule) => r.patterns!.some((p) => byName(p) || sources.some((src) => patternMatches(p, src.column, src.schema, src.table)))
      : (r: CompiledRule) => r.patterns!.some(byName);
    for (const r of this.rules) {
      if (r.patterns !== null && r.scanners === null && matches(r)) return { whole: r };
    }
    if (NO_DETECT_OIDS.has(c.typeOid)) return null; // nothing a detector looks for fits these types
    const detecting = this.rules.filter((r) => r.scanners !== null && (r.patterns === null || matches(r)));
    return detecting.length ? { detecting } : null;
  }
}

export function compileMasking(rules: readonly MaskingRuleDef[], opts: MaskerOptions = {}): Masker {
  return new Masker(rules, opts);
}

/** First scanner per detector wins (rule order). */
function dedupe(scanners: Scanner[]): Scanner[] {
  const seen = new Set<string>();
  return scanners.filter((s) => !seen.has(s.detector.name) && (seen.add(s.detector.name), true));
}

function codecOf(c: ResultColumn, textLike: ReadonlySet<number>): ValueCodec {
  if (c.format === 0) return c.typeOid === JSON_OID || c.typeOid === JSONB_OID ? 'json' : 'text';
  if (textLike.has(c.typeOid)) return 'text';
  switch (c.typeOid) {
    case JSON_OID:
      return 'json';
    case JSONB_OID:
      return 'jsonb';
    case INT8_OID:
      return 'int8';
    case NUMERIC_OID:
      return 'numeric';
    default:
      return 'opaque';
  }
}
