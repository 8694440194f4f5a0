/**
 * Masking of what the server sends back, one backend message at a time. No I/O:
 * the session feeds frames in and writes out what comes back, and tells it every
 * client message it sends upstream (sent), so that each result set is known by the
 * statement it answers (extended.ts).
 *
 *   RowDescription   plan the result set once (which columns, which rules)
 *   Execute's rows   planned from its portal's description: the client's Describe, or
 *                    its statement's with the Bind's formats, or our own Describe
 *   DataRow          rewritten only when the plan touches a column, else passed through;
 *                    a row no description covers is never passed as is (unplannedRow)
 *   CopyOutResponse  text/CSV rows masked line by line; binary COPY cannot be masked
 *                    and is swallowed, then answered with an error in place of its tag
 *   CommandComplete  the masked-value counts of the statement are reported
 */
import { parseSync } from 'libpg-query';
import { copyDataMessage, maskCopyLine, maskDataRow, type CopyOptions, type MaskCounts } from '../../masking/index.js';
import type { Masker, ResultColumn, RowPlan, SourceColumn } from '../../masking/plan.js';
import { UNFOLLOWED } from '../../masking/lineage-judge.js';
import { errorResponse, readCString } from './backend.js';
import type { CatalogTable } from './catalog.js';
import { ExtendedProtocol, formatOf, keepPlan, live, type Pending, type Portal } from './extended.js';
import { ProtocolError, type Frame } from './framer.js';
import { Backend } from './message-types.js';


const DROP = Buffer.alloc(0);
const MAX_PLANS = 256;

/** For the text of one statement: per output column, the table columns its values come from (lineage). */
/**
 * Lineage's masked sources by output position for statement `index` of a query text, or
 * undefined. The same array comes back for the same statement shape: plans are kept by it.
 */
export type OutputSources = (querySql: string, index: number) => LineageSources | undefined;
export type LineageSources = readonly (readonly SourceColumn[] | undefined)[];

export interface CopyFormat {
  format: 'text' | 'csv' | 'binary';
  header: boolean;
  options: CopyOptions;
}

type CopyState = { mode: 'mask'; format: CopyFormat; plan: RowPlan; skipHeader: boolean } | { mode: 'swallow' } | undefined;

/** The current result's rows cannot be planned: no description covers them, or they do not fit it. */
const UNPLANNED: RowPlan = Object.freeze({ touchesNothing: false, columns: [], other: null });

export class ResultMasker {
  /** the current result's plan; undefined until its first row asks */
  private plan: RowPlan | undefined;
  private copy: CopyState;
  private copyBlocked = false;
  /** rows of the current result were withheld (unplannedRow): its end becomes an error */
  private rowsWithheld = false;
  /** we answered an Execute with an error the server did not send: its replies up to ReadyForQuery are not the client's */
  private swallowing = false;
  private counts: MaskCounts = {};
  private masked = 0;
  /** COPY TO formats of the statements sent, oldest first (their CopyOutResponses come in that order) */
  private readonly copyOuts: { format: CopyFormat; plan: RowPlan }[] = [];
  private readonly plans = new Map<string, RowPlan>();
  /** plans of results lineage describes, by its sources object (one per statement shape): weakly, as shapes leave the cache */
  private readonly plansByLineage = new WeakMap<LineageSources, Map<string, RowPlan>>();
  private readonly protocol = new ExtendedProtocol();
  private readonly unknownColumns: RowPlan;

  constructor(
    private readonly masker: Masker,
    /** relations by table OID; undefined: resolution was not needed or failed */
    private readonly tables: ReadonlyMap<number, CatalogTable> | undefined,
    private readonly onMasked: (tag: string, counts: MaskCounts) => void,
    /** lineage of a statement's output columns, when it is known (by statement text) */
    private readonly outputSources?: OutputSources,
  ) {
    this.unknownColumns = masker.forUnknownColumns();
  }

  /** A client message on its way upstream (whole). Returns a message to send right before it, or undefined. */
  sent(message: Buffer): Buffer | undefined {
    return this.protocol.sent(message);
  }

  /** Why a Parse of `name` must be refused (too many prepared statements), or undefined. */
  refusesParse(name: string, sql: string): string | undefined {
    return this.protocol.refusesParse(name, sql);
  }

  /**
   * A COPY ... TO STDOUT is on its way to the server. `columns` (with the table they
   * belong to) let column rules apply to its rows; without them only detectors run.
   */
  expectCopy(copy: CopyFormat, columns?: { names: string[]; tableName?: string; sources?: readonly (readonly SourceColumn[])[] }): void {
    const plan = columns
      ? this.masker.forColumns(columns.names.map((name, i) => ({ name, tableName: columns.tableName, typeOid: 0, format: 0, sources: columns.sources?.[i] })))
      : this.masker.forUnknownColumns();
    this.copyOuts.push({ format: copy, plan });
  }

  /**
   * Would frame() pass a DataRow or CopyData of the current result through untouched? Then
   * one too large to be held whole can be relayed in pieces, unread.
   */
  passesUnread(type: number): boolean {
    if (type === Backend.DataRow) return (this.plan ??= this.rowsPlan()).touchesNothing && !this.swallowing;
    if (type === Backend.CopyData) return this.copy === undefined;
    return false;
  }

  /** What to send the client for this backend message: f.raw, a replacement, or an empty buffer (nothing). */
  frame(f: Frame): Buffer {
    if (f.type === Backend.DataRow) return this.swallowing ? DROP : this.dataRow(f);
    const swallowing = this.swallowing;
    const answers = this.protocol.received(f.type, f.payload);
    const out = this.message(f, answers);
    if (!swallowing || !answersClient(f.type)) return out;
    if (answers?.kind === 'sync') {
      this.swallowing = false; // the Sync's ReadyForQuery: the client is back in step
      return out;
    }
    return DROP;
  }

  private dataRow(f: Frame): Buffer {
    const plan = (this.plan ??= this.rowsPlan());
    // a plan whose columns are not the row's (a statement redefined behind our back) is no plan
    if (plan === UNPLANNED || (f.payload.length >= 2 ? f.payload.readInt16BE(0) : -1) !== plan.columns.length) return this.unplannedRow(f);
    if (plan.touchesNothing) return f.raw;
    return this.count(maskDataRow(f.payload, plan, this.counts)) ?? f.raw;
  }

  /**
   * A row no description covers is never passed as is: every detector runs on every field;
   * and where column rules apply (which need the columns) it is withheld, and its result
   * ends in an error.
   */
  private unplannedRow(f: Frame): Buffer {
    if (this.masker.hasColumnRules) {
      this.rowsWithheld = true;
      return DROP;
    }
    return this.count(maskDataRow(f.payload, this.unknownColumns, this.counts)) ?? f.raw;
  }

  private message(f: Frame, answers: Pending | undefined): Buffer {
    switch (f.type) {
      case Backend.RowDescription:
        return this.rowDescription(f, answers);
      case Backend.NoData:
        if (answers?.kind === 'describe-portal') {
          const portal = live(answers.portal);
          if (portal) portal.plan = null;
          if (answers.ours) return DROP;
        }
        return f.raw;
      case Backend.CopyOutResponse:
        return this.copyOut(f);
      case Backend.CopyData:
        return this.copyData(f);
      case Backend.CopyDone:
        if (this.copy?.mode === 'swallow') return DROP;
        this.copy = undefined;
        return f.raw;
      case Backend.CommandComplete:
      case Backend.PortalSuspended:
      case Backend.EmptyQueryResponse:
        return this.resultEnd(f, answers);
      case Backend.ErrorResponse:
      case Backend.ReadyForQuery:
        this.plan = undefined;
        this.copy = undefined;
        this.rowsWithheld = false;
        return f.raw;
      default:
        return f.raw;
    }
  }

  private rowDescription(f: Frame, answers: Pending | undefined): Buffer {
    if (answers?.kind === 'describe-statement') return f.raw; // a statement's shape, kept by the protocol: no rows follow it
    if (answers?.kind === 'describe-portal') {
      const portal = live(answers.portal);
      if (portal) portal.plan = this.planFor(f.payload, this.lineageOf(live(portal.statement)?.sql, 0));
      return answers.ours ? DROP : f.raw;
    }
    // a simple query's result: its rows follow
    this.plan = this.planFor(f.payload, answers?.kind === 'query' ? this.lineageOf(answers.sql, answers.statement) : undefined);
    return f.raw;
  }

  /** The plan of the rows now arriving, when no RowDescription came with them: their Execute's portal's. */
  private rowsPlan(): RowPlan {
    const head = this.protocol.head;
    if (head?.kind !== 'execute') return UNPLANNED;
    const portal = live(head.portal);
    return (portal && this.portalPlan(portal)) ?? UNPLANNED;
  }

  /** A portal's described rows, or its statement's with the Bind's formats applied; null or undefined when unknown. */
  private portalPlan(portal: Portal): RowPlan | null | undefined {
    if (portal.plan !== undefined) return portal.plan;
    const s = live(portal.statement);
    if (!s?.description) return undefined;
    let plan = s.plans.get(portal.formatsKey);
    if (!plan) {
      const lineage = this.lineageOf(s.sql, 0);
      plan = lineage === UNFOLLOWED ? UNPLANNED : this.masker.forColumns(this.columns(s.description, lineage, portal.formats));
      keepPlan(s, portal.formatsKey, plan);
    }
    return plan;
  }

  /** Lineage's sources for statement `index` of a query text (a simple query's, or a prepared statement's). */
  private lineageOf(sql: string | undefined, index: number): LineageSources | undefined {
    if (!this.outputSources) return undefined;
    // rows of a statement whose text we do not hold (prepared behind our back) cannot be followed
    return sql === undefined ? UNFOLLOWED : this.outputSources(sql, index);
  }

  /**
   * Result sets repeat their shape (the same query again and again): plan each shape once,
   * per lineage where lineage applies (its sources are one object per statement shape).
   */
  private planFor(rowDescription: Buffer, lineage: LineageSources | undefined): RowPlan {
    if (lineage === UNFOLLOWED) return UNPLANNED; // its rows are withheld where column rules apply
    let plans = this.plans;
    if (lineage) {
      plans = this.plansByLineage.get(lineage) ?? new Map();
      if (plans.size === 0) this.plansByLineage.set(lineage, plans);
    }
    const key = rowDescription.toString('latin1');
    let plan = plans.get(key);
    if (!plan) {
      plan = this.masker.forColumns(this.columns(rowDescription, lineage));
      if (plans.size >= MAX_PLANS) plans.clear();
      plans.set(key, plan);
    }
    return plan;
  }

  private count(replacement: Buffer | null): Buffer | null {
    if (replacement) this.masked++;
    return replacement;
  }

  /**
   * The columns of a RowDescription, each with its sources: the table column the server
   * names (table OID, attnum) and the statement's lineage. `formats`: a Bind's result
   * formats, in place of the description's own (a statement's description has none yet).
   */
  private columns(payload: Buffer, lineage: LineageSources | undefined, formats?: readonly number[]): ResultColumn[] {
    if (payload.length < 2) throw new ProtocolError('RowDescription too short');
    const n = payload.readInt16BE(0);
    const out: ResultColumn[] = [];
    let at = 2;
    for (let i = 0; i < n; i++) {
      const [name, next] = readCString(payload, at);
      // 18 bytes of fixed fields follow each name: table oid, column, type, size, modifier, format
      if (next + 18 > payload.length) throw new ProtocolError('RowDescription ends inside a column');
      const tableOid = payload.readUInt32BE(next);
      const attnum = payload.readInt16BE(next + 4);
      const typeOid = payload.readUInt32BE(next + 6);
      const format = formats ? formatOf(formats, i) : payload.readInt16BE(next + 16) === 1 ? 1 : 0;
      at = next + 18;
      const table = tableOid ? this.tables?.get(tableOid) : undefined;
      const column: ResultColumn = { name, typeOid, format, tableName: table?.name, unresolvedTable: tableOid !== 0 && table === undefined };
      const read = table?.columns.get(attnum);
      const sources = [...(read !== undefined ? [{ schema: table!.schema, table: table!.table, column: read }] : []), ...(lineage?.[i] ?? [])];
      if (sources.length) column.sources = sources;
      out.push(column);
    }
    return out;
  }

  private copyOut(f: Frame): Buffer {
    const expected = this.copyOuts.shift();
    const format: CopyFormat = expected?.format ?? { format: 'text', header: false, options: {} };
    const plan = expected?.plan ?? this.masker.forUnknownColumns();
    const binary = f.payload[0] === 1 || format.format === 'binary';
    if (binary && !plan.touchesNothing) {
      this.copy = { mode: 'swallow' };
      this.copyBlocked = true;
      return DROP;
    }
    this.copy = plan.touchesNothing ? undefined : { mode: 'mask', format, plan, skipHeader: format.header };
    return f.raw;
  }

  private copyData(f: Frame): Buffer {
    const c = this.copy;
    if (!c) return f.raw;
    if (c.mode === 'swallow') return DROP;
    if (c.skipHeader) {
      c.skipHeader = false; // the header row holds column names, not data
      return f.raw;
    }
    const body = maskCopyLine(f.payload, c.format.format === 'csv' ? 'csv' : 'text', c.plan, this.counts, c.format.options);
    if (!body) return f.raw;
    this.masked++;
    return copyDataMessage(body);
  }

  /** CommandComplete, PortalSuspended or EmptyQueryResponse: the end of a result (or of its first rows). */
  private resultEnd(f: Frame, answers: Pending | undefined): Buffer {
    this.plan = undefined;
    if (this.rowsWithheld) {
      this.rowsWithheld = false;
      // the client now expects the server to skip to Sync, as after any error in the extended protocol
      if (answers?.kind === 'execute') this.swallowing = true;
      return errorResponse({
        severity: 'ERROR', code: '42501',
        message: 'interlock: rows of a result whose columns are not described cannot be masked; they were withheld (Describe the statement or portal)',
      });
    }
    if (this.copyBlocked) {
      this.copyBlocked = false;
      this.copy = undefined;
      return errorResponse({ severity: 'ERROR', code: '42501', message: 'interlock: binary COPY output cannot be masked; use COPY in text or CSV format' });
    }
    if (f.type === Backend.CommandComplete && this.masked > 0) {
      this.onMasked(readCString(f.payload, 0)[0], this.counts);
      this.counts = {};
      this.masked = 0;
    }
    return f.raw;
  }
}

/** Messages that answer a client's message (not NoticeResponse, ParameterStatus, NotificationResponse). */
function answersClient(type: number): boolean {
  return type !== 0x4e && type !== 0x53 && type !== 0x41;
}

/** What a COPY ... TO statement sends: its format and options, and where its columns come from. */
export interface CopyOut extends CopyFormat {
  /** the table copied, when it is a table (not a query) */
  relation?: { schema?: string; name: string };
  /** the column list written in the statement, if any */
  columns?: string[];
}

/** Every COPY ... TO in `sql`, in order, read with the real parser. */
export function copyOutsOf(sql: string): CopyOut[] {
  const out: CopyOut[] = [];
  try {
    for (const raw of parseSync(sql).stmts ?? []) {
      const c = (raw.stmt as { CopyStmt?: CopyStmtAst }).CopyStmt;
      if (!c || c.is_from) continue;
      const copy: CopyOut = { format: 'text', header: false, options: {} };
      if (c.relation?.relname) copy.relation = { schema: c.relation.schemaname, name: c.relation.relname };
      if (c.attlist?.length) copy.columns = c.attlist.map((a) => a.String?.sval ?? '');
      for (const o of c.options ?? []) {
        const { defname, arg } = o.DefElem;
        const value = argText(arg);
        const lower = value?.toLowerCase();
        if (defname === 'format' && (lower === 'csv' || lower === 'binary' || lower === 'text')) copy.format = lower;
        else if (defname === 'header') copy.header = value === undefined || !['false', 'off', '0'].includes(lower!);
        else if (defname === 'delimiter' && value !== undefined) copy.options.delimiter = value;
        else if (defname === 'null' && value !== undefined) copy.options.null = value;
        else if (defname === 'quote' && value !== undefined) copy.options.quote = value;
        else if (defname === 'escape' && value !== undefined) copy.options.escape = value;
      }
      out.push(copy);
    }
  } catch {
    // not parseable here: the policy already refused it
  }
  return out;
}

interface CopyStmtAst {
  is_from?: boolean;
  relation?: { schemaname?: string; relname?: string };
  attlist?: { String?: { sval?: string } }[];
  options?: { DefElem: { defname: string; arg?: unknown } }[];
}

function argText(arg: unknown): string | undefined {
  const a = arg as { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean } } | undefined;
  if (!a) return undefined;
  if (a.String) return a.String.sval;
  if (a.Integer) return String(a.Integer.ival ?? 0);
  if (a.Boolean) return a.Boolean.boolval ? 'true' : 'false';
  return undefined;
}
