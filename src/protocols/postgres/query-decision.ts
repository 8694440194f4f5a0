/**
 * The decision on one query text as a PostgreSQL session enforces it: policy's verdict
 * first, then column masking's say. Pure: the session and `interlock policy check` both
 * decide through here, so what the check prints is what the proxy does.
 */
import type { Decision, QueryVerdict } from '../../policy/rules.js';
import type { Masker } from '../../masking/plan.js';
import type { LineageJudge } from '../../masking/lineage-judge.js';
import type { SourceColumn } from '../../masking/lineage.js';
import type { Catalog } from './catalog.js';
import { copyOutsOf, type CopyOut } from './results.js';
import { LOGIN_SEARCH_PATH, resolveRelation, type SearchPath } from '../../policy/search-path.js';

/** What column masking knows in a session; each part undefined when it does not apply. */
export interface MaskingState {
  masker?: Masker;
  /** the catalog read at login; undefined when not needed or not readable */
  catalog?: Catalog;
  /** set while column rules apply */
  lineage?: LineageJudge;
  /** every search_path the statement may run under (default: the login path) */
  paths?: readonly SearchPath[];
  /** the name a Parse gives the statement (SQL's EXECUTE can run it too) */
  preparedAs?: string;
}

/** A COPY ... TO and the columns its rows carry, for the result masker. */
export interface CopyColumns {
  copy: CopyOut;
  columns?: { names: string[]; tableName?: string; sources?: readonly (readonly SourceColumn[])[] };
}

export interface QueryDecision {
  decision: Decision;
  /** column masking overruled policy (an allowed or held statement is refused) */
  byMasking: boolean;
  /** the allowed statement's COPY ... TO outputs, when masking applies to results */
  copies?: CopyColumns[];
}

const COPY_COLUMNS_UNKNOWN = 'COPY TO of a query, or of a table whose columns are unknown, is not allowed while column masking applies; use SELECT';

export function decideWithMasking(sql: string, verdict: QueryVerdict, m: MaskingState): QueryDecision {
  let { decision } = verdict;
  const masksResults = m.masker !== undefined && !m.masker.empty;
  const paths = m.paths ?? [LOGIN_SEARCH_PATH];
  const copies = decision.action === 'allow' && masksResults && verdict.kinds.includes('copy_to') ? copyColumns(sql, m.masker!, m.catalog, paths, m.lineage) : undefined;
  if (copies === null) decision = { action: 'deny', message: COPY_COLUMNS_UNKNOWN };
  // policy may run it: column masking has its say (a masked column used other than as a direct output), under every path it may run under
  const refusal = decision.action !== 'deny' ? m.lineage?.check(sql, paths, m.preparedAs, verdict.shape) : undefined;
  if (refusal !== undefined) decision = { action: 'deny', message: refusal };
  return { decision, byMasking: decision !== verdict.decision, ...(copies ? { copies } : {}) };
}

/**
 * Each COPY ... TO in `sql` with the columns its rows will carry (when column rules
 * need them: from the statement's column list, or the table's columns in the catalog
 * read at login), or null when column rules apply and some COPY's columns are unknown.
 */
function copyColumns(sql: string, masker: Masker, catalog: Catalog | undefined, paths: readonly SearchPath[], lineage?: LineageJudge): CopyColumns[] | null {
  const needNames = masker.hasColumnRules;
  const out: CopyColumns[] = [];
  for (const copy of copyOutsOf(sql)) {
    if (!needNames) {
      out.push({ copy });
      continue;
    }
    const rel = copy.relation;
    const byName = catalog?.byName;
    // an unqualified table is looked up along every search_path the COPY may run under: they must agree
    const qualified = rel && (rel.schema !== undefined ? `${rel.schema}.${rel.name}` : resolveRelation(paths, rel.name, (q) => byName?.has(q) ?? false));
    if (!qualified) return null;
    const names = copy.columns ?? byName?.get(qualified)?.columns;
    if (!names) return null;
    // a partition or an inheriting child is masked like its parent: lineage names the covered columns
    const sources = lineage?.tableColumnSources(qualified, names);
    out.push({ copy, columns: sources ? { names, tableName: qualified, sources } : { names, tableName: qualified } });
  }
  return out;
}
