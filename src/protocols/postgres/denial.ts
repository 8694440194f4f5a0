/**
 * How a denied command is refused without the session losing step with the server.
 *
 * The command is replaced by one that fails where the original would have been
 * answered: a call of a function that cannot exist (`pg_catalog."interlock-denial-7"()`),
 * which the server rejects while parsing, exactly as it rejects any bad statement.
 * So everything a real error does stays true: the ErrorResponse comes in its place in
 * a pipeline, the extended protocol skips to Sync, an open transaction is aborted,
 * ReadyForQuery carries the right status. On the way back, that error is rewritten
 * into ours: SQLSTATE 42501 and the rule's message.
 */
import { serialize } from 'pg-protocol';
import { errorResponse, readErrorFields } from './backend.js';
import type { Frame } from './framer.js';

export const DENIED_SQLSTATE = '42501';
const UNDEFINED_FUNCTION = '42883';
const MARKER = /interlock-denial-(\d+)/;
/** denials whose error never came back (the transaction was already aborted, say) are forgotten past this */
const MAX_PENDING = 1024;

export interface Refusal {
  message: string;
  detail?: string;
}

export class Denials {
  private next = 1;
  private readonly pending = new Map<number, Refusal>();

  /** In place of a simple Query, or a FunctionCall (whose reply has the same shape). */
  query(refusal: Refusal): Buffer {
    return serialize.query(this.statement(refusal));
  }

  /** In place of a Parse: the same statement name, so a later Bind finds nothing, as after any failed Parse. */
  parse(name: string, refusal: Refusal): Buffer {
    return serialize.parse({ name, text: this.statement(refusal), types: [] });
  }

  /** Our error in place of the server's, for an ErrorResponse that answers one of our denials. */
  rewrite(f: Frame): Buffer | undefined {
    if (this.pending.size === 0) return undefined;
    const e = readErrorFields(f.payload);
    const id = e.C === UNDEFINED_FUNCTION ? MARKER.exec(e.M ?? '')?.[1] : undefined;
    const refusal = id === undefined ? undefined : this.pending.get(Number(id));
    if (!refusal) return undefined;
    // errors come back in order: older denials still pending never reached the parser
    for (const k of this.pending.keys()) {
      this.pending.delete(k);
      if (k === Number(id)) break;
    }
    return errorResponse({ severity: 'ERROR', code: DENIED_SQLSTATE, message: refusal.message, detail: refusal.detail });
  }

  private statement(refusal: Refusal): string {
    const id = this.next++;
    this.pending.set(id, refusal);
    if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
    return `SELECT pg_catalog."interlock-denial-${id}"()`;
  }
}
