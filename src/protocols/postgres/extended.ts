/**
 * The extended query protocol, followed on both sides, so that every DataRow is known to
 * belong to a described result set.
 *
 * Client messages, as they go upstream, create and drop prepared statements and portals
 * and queue what the server will answer, in order; each server message answers the head
 * of that queue. Names are resolved when a message is sent, exactly as the server resolves
 * them when it runs it (it runs messages in order). A Parse or Bind that fails leaves its
 * name to what it meant before: entries that referred to it resolve through `live()`.
 * After an ErrorResponse the server skips everything up to Sync, and so does the queue.
 *
 * An Execute whose rows are not certain to be described by the time they arrive gets a
 * Describe(Portal) of ours right before it; its answer becomes the portal's plan and is
 * not passed to the client (see results.ts).
 *
 * Bounded: a hostile client may Parse millions of names. A new statement over the bounds
 * is refused (refusesParse), a new portal over them ends the session; nothing known is
 * forgotten silently, and what is forgotten on purpose (Close, DISCARD) is simply
 * described again by the server before its next rows.
 */
import type { RowPlan } from '../../masking/plan.js';
import { readCString } from './backend.js';
import { ProtocolError } from './framer.js';
import { Backend, Frontend } from './message-types.js';

/** named prepared statements one session may hold, and their text and descriptions, in bytes */
export const MAX_STATEMENTS = 4096;
export const MAX_STATEMENT_BYTES = 32 << 20;
/** named portals open at once (they close with their transaction) */
export const MAX_PORTALS = 1024;
/** plans kept per statement, one per set of result formats its Binds ask for */
const MAX_PLANS_PER_STATEMENT = 16;

/** Running it may create or drop prepared statements or portals by name (SQL PREPARE, DEALLOCATE, DISCARD). */
const REDEFINES = /\b(prepare|deallocate|discard)\b/i;

export interface Statement {
  readonly name: string;
  /** undefined when the statement was not prepared by a Parse we saw (SQL PREPARE) */
  readonly sql: string | undefined;
  /** its RowDescription (our copy) from Describe(Statement), format codes all 0; null: NoData; undefined: not described */
  description?: Buffer | null;
  /** plans of its rows by the result formats of the Bind (formatsKey); filled by the result masker */
  readonly plans: Map<string, RowPlan>;
  /** the cycle (Syncs sent before it) of its last Describe(Statement); -1 for none */
  describedIn: number;
  /** the cycle its Parse was sent in */
  readonly sentIn: number;
  /** its Parse was answered by ParseComplete */
  confirmed: boolean;
  /** its Parse failed: the name means `previous` */
  failed: boolean;
  /** until it is confirmed (then nothing older is kept alive through it) */
  previous: Statement | undefined;
  /** running it may redefine names: see REDEFINES */
  readonly redefines: boolean;
  /** what it counts against MAX_STATEMENT_BYTES while it is in the map */
  bytes: number;
}

export interface Portal {
  readonly name: string;
  /** undefined when the portal was not bound by a Bind we saw (DECLARE, a function's cursor) */
  readonly statement: Statement | undefined;
  /** the Bind's result-format codes: none (all text), one (for every column) or one per column */
  readonly formats: readonly number[];
  /** the formats as a key of Statement.plans */
  readonly formatsKey: string;
  /** its rows' plan from a Describe(Portal) answer; null: NoData; undefined: its statement's, or unknown */
  plan?: RowPlan | null;
  describedIn: number;
  /** the Executes and Querys sent when it was bound, described or executed: any other since may have replaced it */
  epoch: number;
  readonly sentIn: number;
  confirmed: boolean;
  failed: boolean;
  /** until it is confirmed */
  previous: Portal | undefined;
  /** the message sequence number of its Bind (transaction end closes portals bound before it) */
  readonly seq: number;
}

/** What the server will answer, in order. */
export type Pending =
  | { readonly kind: 'parse'; readonly statement: Statement }
  | { readonly kind: 'bind'; readonly portal: Portal }
  | { readonly kind: 'describe-statement'; readonly statement: Statement }
  | { readonly kind: 'describe-portal'; readonly portal: Portal; readonly ours: boolean }
  | { readonly kind: 'execute'; readonly portal: Portal }
  | { readonly kind: 'close' }
  | { readonly kind: 'sync'; readonly seq: number }
  | { readonly kind: 'query'; readonly sql: string; readonly seq: number; /** its statement whose results come now */ statement: number };

/** What a failed Parse or Bind leaves its name meaning. */
export function live<T extends { failed: boolean; previous: T | undefined }>(x: T | undefined): T | undefined {
  while (x?.failed) x = x.previous;
  return x;
}

const NO_FORMATS: readonly number[] = Object.freeze([]);
const TEXT_FORMATS: readonly number[] = Object.freeze([0]);
const BINARY_FORMATS: readonly number[] = Object.freeze([1]);

export class ExtendedProtocol {
  private readonly statements = new Map<string, Statement>();
  private readonly portals = new Map<string, Portal>();
  private statementBytes = 0;
  private readonly queue: Pending[] = [];
  private headAt = 0;
  /** Syncs sent: messages of one cycle are skipped together after an error */
  private cycle = 0;
  /** Executes and Querys sent */
  private executions = 0;
  /** messages sent */
  private seq = 0;
  /** an error came and no Sync has been sent since: the server ignores what is sent up to the next one */
  private ignoredUntilSync = false;

  /** The client message the next server message answers (undefined: none is pending). */
  get head(): Pending | undefined {
    return this.headAt < this.queue.length ? this.queue[this.headAt] : undefined;
  }

  /** Why a Parse of `name` must be refused (the bounds), or undefined. */
  refusesParse(name: string, sql: string): string | undefined {
    if (name === '' || this.statements.has(name)) return undefined; // replaces, or fails as a duplicate
    if (this.statements.size >= MAX_STATEMENTS) {
      return `interlock: this session holds ${MAX_STATEMENTS} prepared statements, the most it may; close some (Close, DEALLOCATE) before preparing more`;
    }
    if (this.statementBytes + sql.length > MAX_STATEMENT_BYTES) {
      return `interlock: the prepared statements of this session hold ${MAX_STATEMENT_BYTES >> 20} MiB of text and descriptions, the most they may; close some before preparing more`;
    }
    return undefined;
  }

  /**
   * A client message (whole, as it goes upstream). Returns a message to send right before
   * it (our Describe of an Execute's portal), or undefined.
   */
  sent(message: Buffer): Buffer | undefined {
    this.seq++;
    // read in place (offset 5: after type and length), no view per message
    switch (message[0]) {
      case Frontend.Parse: return this.onParse(message);
      case Frontend.Bind: return this.onBind(message);
      case Frontend.Describe: return this.onDescribe(message);
      case Frontend.Execute: return this.onExecute(message);
      case Frontend.Close: return this.onClose(message);
      case Frontend.Sync:
        this.push({ kind: 'sync', seq: this.seq });
        this.cycle++;
        return undefined;
      case Frontend.Query: return this.onQuery(message);
      default: // Flush, CopyData/CopyDone/CopyFail, Terminate: nothing answers them in turn
        return undefined;
    }
  }

  /**
   * A server message arrived: the book-keeping it implies. Returns the client message it
   * answers (before that one is done with), or undefined when it answers none that is followed.
   */
  received(type: number, payload: Buffer): Pending | undefined {
    const head = this.head;
    switch (type) {
      case Backend.ParseComplete:
        if (head?.kind !== 'parse') return this.outOfTurn('ParseComplete');
        head.statement.confirmed = true;
        head.statement.previous = undefined;
        return this.shift();
      case Backend.BindComplete:
        if (head?.kind !== 'bind') return this.outOfTurn('BindComplete');
        head.portal.confirmed = true;
        head.portal.previous = undefined; // else every unnamed portal ever bound would hang off the last one
        return this.shift();
      case Backend.CloseComplete:
        if (head?.kind !== 'close') return this.outOfTurn('CloseComplete');
        return this.shift();
      case Backend.ParameterDescription:
        if (head?.kind !== 'describe-statement') return this.outOfTurn('ParameterDescription');
        return head; // its RowDescription or NoData follows
      case Backend.RowDescription:
      case Backend.NoData:
        return this.described(head, type === Backend.NoData ? null : payload);
      case Backend.PortalSuspended:
        if (head?.kind !== 'execute') return this.outOfTurn('PortalSuspended');
        return this.shift();
      case Backend.CommandComplete:
      case Backend.EmptyQueryResponse:
        if (head?.kind === 'execute') return this.shift();
        if (head === undefined || head.kind === 'query') {
          if (head) head.statement++;
          return head;
        }
        return this.outOfTurn(type === Backend.CommandComplete ? 'CommandComplete' : 'EmptyQueryResponse');
      case Backend.ErrorResponse:
        return this.failed(head);
      case Backend.ReadyForQuery:
        return this.ready(head, payload);
      default:
        return head;
    }
  }

  // --- client side ---------------------------------------------------------------

  private onParse(m: Buffer): undefined {
    const [name, next] = name0(m, BODY);
    const [sql] = readCString(m, next);
    const previous = name === '' ? undefined : this.statements.get(name); // the unnamed one is dropped even if the Parse fails
    const statement: Statement = {
      name, sql, plans: new Map(), describedIn: -1, sentIn: this.cycle, confirmed: false, failed: false, previous,
      redefines: REDEFINES.test(sql), bytes: 0,
    };
    // over the bounds it is our refusal, bound to fail: nothing to keep
    if (name === '' || previous || this.refusesParse(name, sql) === undefined) this.setStatement(statement);
    this.push({ kind: 'parse', statement });
    return undefined;
  }

  private onBind(m: Buffer): undefined {
    const [name, afterName] = name0(m, BODY);
    const [statementName, at] = name0(m, afterName);
    const formats = resultFormats(m, at);
    const previous = this.portals.get(name);
    if (name !== '' && !previous && this.portals.size >= MAX_PORTALS) {
      throw new ProtocolError(`this session opened over ${MAX_PORTALS} portals in one transaction; the session ends`, '54000');
    }
    const portal: Portal = {
      // a name we no longer hold (forgotten after a DEALLOCATE, or prepared by SQL) is still the server's
      name, statement: this.statements.get(statementName) ?? this.foreignStatement(statementName), formats, formatsKey: formatsKey(formats),
      describedIn: -1, epoch: this.executions, sentIn: this.cycle, confirmed: false, failed: false, previous, seq: this.seq,
    };
    this.portals.set(name, portal);
    this.push({ kind: 'bind', portal });
    return undefined;
  }

  private onDescribe(m: Buffer): undefined {
    const [name] = name0(m, BODY + 1);
    if (m[BODY] === 0x53 /* S */) {
      const statement = this.statements.get(name) ?? this.foreignStatement(name);
      statement.describedIn = this.cycle;
      this.push({ kind: 'describe-statement', statement });
    } else {
      const portal = this.portals.get(name) ?? this.foreignPortal(name);
      portal.describedIn = this.cycle;
      portal.epoch = this.executions;
      this.push({ kind: 'describe-portal', portal, ours: false });
    }
    return undefined;
  }

  private onExecute(m: Buffer): Buffer | undefined {
    const [name] = name0(m, BODY);
    const portal = this.portals.get(name) ?? this.foreignPortal(name);
    let describe: Buffer | undefined;
    if (!this.ignoredUntilSync && !this.knowsRowsOf(portal)) {
      describe = describePortalMessage(name);
      portal.describedIn = this.cycle;
      this.push({ kind: 'describe-portal', portal, ours: true });
    }
    this.push({ kind: 'execute', portal });
    portal.epoch = ++this.executions;
    if (portal.statement?.redefines) this.forgetNames();
    return describe;
  }

  private onClose(m: Buffer): undefined {
    const [name] = name0(m, BODY + 1);
    if (m[BODY] === 0x53 /* S */) this.deleteStatement(name);
    else this.portals.delete(name);
    this.push({ kind: 'close' });
    return undefined;
  }

  private onQuery(m: Buffer): undefined {
    const [sql] = readCString(m, BODY);
    this.executions++;
    // a simple query runs in the unnamed statement and portal: the previous ones are gone
    this.deleteStatement('');
    this.portals.delete('');
    if (REDEFINES.test(sql)) this.forgetNames();
    this.push({ kind: 'query', sql, seq: this.seq, statement: 0 });
    return undefined;
  }

  /**
   * Will the Execute of `portal` find its rows' description on our side when they arrive?
   * Only what is confirmed, or sent in this cycle (if that fails, the Execute is skipped
   * with it), counts; and nothing else may have run since the portal was last seen.
   */
  private knowsRowsOf(p: Portal): boolean {
    if (p.epoch !== this.executions || !this.settled(p)) return false;
    if (p.plan !== undefined || p.describedIn === this.cycle) return true;
    const s = p.statement;
    return s !== undefined && this.settled(s) && (s.description !== undefined || s.describedIn === this.cycle);
  }

  private settled(x: { confirmed: boolean; sentIn: number }): boolean {
    return x.confirmed || x.sentIn === this.cycle;
  }

  /** A statement prepared behind our back (SQL PREPARE): known by name only. */
  private foreignStatement(name: string): Statement {
    // prepared by SQL PREPARE (the same namespace): lineage reads it as `EXECUTE name`, which it knows from the PREPARE
    const s: Statement = {
      name, sql: name === '' ? undefined : `EXECUTE ${quoteIdentifier(name)}`, plans: new Map(), describedIn: -1, sentIn: this.cycle, confirmed: true, failed: false,
      previous: undefined, redefines: false, bytes: 0,
    };
    if (this.statements.size < MAX_STATEMENTS) this.setStatement(s); // else it stays unnamed here: described again next time
    return s;
  }

  /** A portal opened behind our back (DECLARE, a function's cursor): known by name only. */
  private foreignPortal(name: string): Portal {
    // a cursor (the same namespace): lineage reads its rows as a FETCH, which it knows from the DECLARE
    const cursor: Statement = {
      name: '', sql: `FETCH ALL FROM ${quoteIdentifier(name)}`, plans: new Map(), describedIn: -1, sentIn: this.cycle, confirmed: true,
      failed: false, previous: undefined, redefines: false, bytes: 0,
    };
    const p: Portal = {
      name, statement: cursor, formats: NO_FORMATS, formatsKey: '', describedIn: -1, epoch: this.executions,
      sentIn: this.cycle, confirmed: true, failed: false, previous: undefined, seq: this.seq,
    };
    if (this.portals.size < MAX_PORTALS) this.portals.set(name, p);
    return p;
  }

  // --- server side ---------------------------------------------------------------

  private described(head: Pending | undefined, description: Buffer | null): Pending | undefined {
    if (head?.kind === 'describe-statement') {
      const s = live(head.statement);
      if (s) this.setDescription(s, description);
      return this.shift();
    }
    if (head?.kind === 'describe-portal') return this.shift(); // the result masker plans it
    if (description && (head === undefined || head.kind === 'query')) return head; // a simple query's result
    return this.outOfTurn(description ? 'RowDescription' : 'NoData');
  }

  /** In the extended protocol the server skips to the next Sync; a simple query just ends. */
  private failed(head: Pending | undefined): Pending | undefined {
    if (head === undefined || head.kind === 'query' || head.kind === 'sync') return head;
    while (this.head && this.head.kind !== 'sync') this.skipped(this.shift()!);
    if (!this.head) this.ignoredUntilSync = true; // its Sync is still to be sent
    return head;
  }

  /** The server never ran it: what it would have made known is not. */
  private skipped(p: Pending): void {
    switch (p.kind) {
      case 'parse': {
        const s = p.statement;
        s.failed = true;
        if (this.statements.get(s.name) === s) {
          this.deleteStatement(s.name);
          const before = live(s.previous);
          if (before) this.setStatement(before);
        }
        return;
      }
      case 'bind': {
        const portal = p.portal;
        portal.failed = true;
        if (this.portals.get(portal.name) === portal) {
          const before = live(portal.previous);
          if (before) this.portals.set(portal.name, before);
          else this.portals.delete(portal.name);
        }
        return;
      }
      case 'describe-statement':
        if (p.statement.description === undefined) p.statement.describedIn = -1;
        return;
      case 'describe-portal':
        if (p.portal.plan === undefined) p.portal.describedIn = -1;
        return;
      default:
    }
  }

  private ready(head: Pending | undefined, payload: Buffer): Pending | undefined {
    if (head !== undefined && head.kind !== 'sync' && head.kind !== 'query') return this.outOfTurn('ReadyForQuery');
    if (head) this.shift();
    // out of a transaction: every portal opened before it is closed
    if (payload[0] === 0x49 /* I */ && this.portals.size > 0) {
      const before = head?.seq ?? this.seq;
      const unnamed = this.portals.get('');
      if (unnamed && unnamed.seq < before) this.portals.delete('');
      // named portals only where there are any (most clients use the unnamed one alone)
      if (this.portals.size > 0) for (const p of this.portals.values()) if (p.seq < before) this.portals.delete(p.name);
    }
    return head;
  }

  // --- book-keeping ----------------------------------------------------------------

  private push(p: Pending): void {
    if (this.ignoredUntilSync) {
      if (p.kind !== 'sync') return this.skipped(p); // no answer will come
      this.ignoredUntilSync = false;
    }
    this.queue.push(p);
  }

  private shift(): Pending | undefined {
    const p = this.head;
    if (p === undefined) return undefined;
    this.headAt++;
    if (this.headAt === this.queue.length) {
      this.queue.length = 0;
      this.headAt = 0;
    } else if (this.headAt >= 1024) {
      this.queue.splice(0, this.headAt);
      this.headAt = 0;
    }
    return p;
  }

  private outOfTurn(what: string): never {
    const head = this.head;
    throw new ProtocolError(`the server sent ${what} while interlock expected the answer to ${head ? head.kind : 'nothing'}; the session ends`);
  }

  /** Statements and portals may have been redefined behind our back: every name is described again before use. */
  private forgetNames(): void {
    this.statements.clear();
    this.statementBytes = 0;
    this.portals.clear();
  }

  private setStatement(s: Statement): void {
    this.deleteStatement(s.name);
    s.bytes = (s.sql?.length ?? 0) + (s.description?.length ?? 0);
    this.statements.set(s.name, s);
    this.statementBytes += s.bytes;
  }

  private deleteStatement(name: string): void {
    const s = this.statements.get(name);
    if (!s) return;
    this.statements.delete(name);
    this.statementBytes -= s.bytes;
  }

  private setDescription(s: Statement, description: Buffer | null): void {
    s.description = description && Buffer.from(description); // a view would hold the server's whole read
    s.plans.clear();
    if (this.statements.get(s.name) !== s) return;
    const grown = (s.sql?.length ?? 0) + (s.description?.length ?? 0);
    this.statementBytes += grown - s.bytes;
    s.bytes = grown;
  }
}

/** Caches a plan on its statement, bounded. */
export function keepPlan(s: Statement, formatsKey: string, plan: RowPlan): void {
  if (s.plans.size >= MAX_PLANS_PER_STATEMENT) s.plans.clear();
  s.plans.set(formatsKey, plan);
}

/** The format of result column `i` under a Bind's format codes. */
export function formatOf(formats: readonly number[], i: number): 0 | 1 {
  const code = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
  return code === 1 ? 1 : 0;
}

/** Where a message's body begins: after its type byte and length. */
const BODY = 5;
const UNNAMED: [string, number] = ['', 0];

/**
 * A statement or portal name at `at`, as readCString reads it; most are the unnamed one,
 * answered without allocating (a shared tuple: callers destructure it at once).
 */
function name0(m: Buffer, at: number): readonly [string, number] {
  if (m[at] === 0 && at < m.length) {
    UNNAMED[1] = at + 1;
    return UNNAMED;
  }
  return readCString(m, at);
}

/** The result-format codes at the end of a Bind, after its parameters (which start at `at`). */
function resultFormats(body: Buffer, at: number): readonly number[] {
  const need = (n: number) => {
    if (at + n > body.length) throw new ProtocolError('Bind message is cut short');
  };
  need(2);
  const paramFormats = body.readInt16BE(at);
  at += 2 + 2 * Math.max(paramFormats, 0);
  need(2);
  const params = body.readInt16BE(at);
  at += 2;
  for (let i = 0; i < params; i++) {
    need(4);
    const len = body.readInt32BE(at);
    at += 4 + Math.max(len, 0);
  }
  need(2);
  const n = body.readInt16BE(at);
  at += 2;
  need(2 * Math.max(n, 0));
  if (n <= 0) return NO_FORMATS;
  if (n === 1) return body.readInt16BE(at) === 1 ? BINARY_FORMATS : TEXT_FORMATS;
  const codes: number[] = new Array(n);
  for (let i = 0; i < n; i++) codes[i] = body.readInt16BE(at + 2 * i);
  return codes;
}

function formatsKey(formats: readonly number[]): string {
  if (formats === NO_FORMATS) return '';
  if (formats === TEXT_FORMATS) return ''; // the same as none
  if (formats === BINARY_FORMATS) return '1';
  let key = '';
  for (const f of formats) key += f === 1 ? '1' : '0';
  return key;
}

/** Describe(Portal name). */
function describePortalMessage(name: string): Buffer {
  const len = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(7 + len);
  out[0] = Frontend.Describe;
  out.writeInt32BE(6 + len, 1);
  out[5] = 0x50; // P
  out.write(name, 6, 'utf8');
  out[6 + len] = 0;
  return out;
}

/** A name as a quoted SQL identifier. */
function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
