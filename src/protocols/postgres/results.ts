/**
 * Masking of what the server sends back, one backend message at a time. No I/O:
 * the session feeds frames in and writes out what comes back.
 *
 *   RowDescription   plan the result set once (which columns, which rules)
 *   DataRow          rewritten only when the plan touches a column, else passed through
 *   CopyOutResponse  text/CSV rows masked line by line; binary COPY cannot be masked
 *                    and is swallowed, then answered with an error in place of its tag
 *   CommandComplete  the masked-value counts of the statement are reported
 */
import { parseSync } from 'libpg-query';
import { copyDataMessage, maskCopyLine, maskDataRow, type CopyOptions, type MaskCounts } from '../../masking/index.js';
import type { Masker, ResultColumn, RowPlan } from '../../masking/plan.js';
import { errorResponse, readCString } from './backend.js';
import { ProtocolError, type Frame } from './framer.js';
import { Backend } from './message-types.js';


const DROP = Buffer.alloc(0);
const MAX_PLANS = 256;

export interface CopyFormat {
  format: 'text' | 'csv' | 'binary';
  header: boolean;
  options: CopyOptions;
}

type CopyState = { mode: 'mask'; format: CopyFormat; plan: RowPlan; skipHeader: boolean } | { mode: 'swallow' } | undefined;

export class ResultMasker {
  private plan: RowPlan | undefined;
  private copy: CopyState;
  private copyBlocked = false;
  private counts: MaskCounts = {};
  private masked = 0;
  /** COPY TO formats of the statements sent, oldest first (their CopyOutResponses come in that order) */
  private readonly copyOuts: { format: CopyFormat; plan: RowPlan }[] = [];
  private readonly plans = new Map<string, RowPlan>();

  constructor(
    private readonly masker: Masker,
    /** "schema.table" by table OID; undefined: resolution was not needed or failed */
    private readonly tableNames: ReadonlyMap<number, string> | undefined,
    private readonly onMasked: (tag: string, counts: MaskCounts) => void,
  ) {}

  /**
   * A COPY ... TO STDOUT is on its way to the server. `columns` (with the table they
   * belong to) let column rules apply to its rows; without them only detectors run.
   */
  expectCopy(copy: CopyFormat, columns?: { names: string[]; tableName?: string }): void {
    const plan = columns
      ? this.masker.forColumns(columns.names.map((name) => ({ name, tableName: columns.tableName, typeOid: 0, format: 0 })))
      : this.masker.forUnknownColumns();
    this.copyOuts.push({ format: copy, plan });
  }

  /**
   * Would frame() pass a DataRow or CopyData of the current result through untouched? Then
   * one too large to be held whole can be relayed in pieces, unread.
   */
  passesUnread(type: number): boolean {
    if (type === Backend.DataRow) return !this.plan || this.plan.touchesNothing;
    if (type === Backend.CopyData) return this.copy === undefined;
    return false;
  }

  /** What to send the client for this backend message: f.raw, a replacement, or an empty buffer (nothing). */
  frame(f: Frame): Buffer {
    switch (f.type) {
      case Backend.RowDescription:
        this.plan = this.planFor(f.payload);
        return f.raw;
      case Backend.DataRow:
        if (!this.plan || this.plan.touchesNothing) return f.raw;
        return this.count(maskDataRow(f.payload, this.plan, this.counts)) ?? f.raw;
      case Backend.CopyOutResponse:
        return this.copyOut(f);
      case Backend.CopyData:
        return this.copyData(f);
      case Backend.CopyDone:
        if (this.copy?.mode === 'swallow') return DROP;
        this.copy = undefined;
        return f.raw;
      case Backend.CommandComplete:
        return this.commandComplete(f);
      case Backend.ErrorResponse:
      case Backend.ReadyForQuery:
        this.plan = undefined;
        this.copy = undefined;
        return f.raw;
      default:
        return f.raw;
    }
  }

  /** Result sets repeat their shape (the same query again and again): plan each shape once. */
  private planFor(rowDescription: Buffer): RowPlan {
    const key = rowDescription.toString('latin1');
    let plan = this.plans.get(key);
    if (!plan) {
      plan = this.masker.forColumns(this.columns(rowDescription));
      if (this.plans.size >= MAX_PLANS) this.plans.clear();
      this.plans.set(key, plan);
    }
    return plan;
  }

  private count(replacement: Buffer | null): Buffer | null {
    if (replacement) this.masked++;
    return replacement;
  }

  private columns(payload: Buffer): ResultColumn[] {
    if (payload.length < 2) throw new ProtocolError('RowDescription too short');
    const n = payload.readInt16BE(0);
    const out: ResultColumn[] = [];
    let at = 2;
    for (let i = 0; i < n; i++) {
      const [name, next] = readCString(payload, at);
      // 18 bytes of fixed fields follow each name: table oid, column, type, size, modifier, format
      if (next + 18 > payload.length) throw new ProtocolError('RowDescription ends inside a column');
      const tableOid = payload.readUInt32BE(next);
      const typeOid = payload.readUInt32BE(next + 6);
      const format = payload.readInt16BE(next + 16) === 1 ? 1 : 0;
      at = next + 18;
      const tableName = tableOid ? this.tableNames?.get(tableOid) : undefined;
      out.push({ name, typeOid, format, tableName, unresolvedTable: tableOid !== 0 && tableName === undefined });
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

  private commandComplete(f: Frame): Buffer {
    this.plan = undefined;
    if (this.copyBlocked) {
      this.copyBlocked = false;
      this.copy = undefined;
      return errorResponse({ severity: 'ERROR', code: '42501', message: 'interlock: binary COPY output cannot be masked; use COPY in text or CSV format' });
    }
    if (this.masked > 0) {
      this.onMasked(readCString(f.payload, 0)[0], this.counts);
      this.counts = {};
      this.masked = 0;
    }
    return f.raw;
  }
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
