/**
 * DataRow rewriting. Runs on every row of every result set, so: fields the plan leaves alone are
 * never decoded, nothing is allocated for a row in which nothing changes, and a changed row is
 * assembled with one allocation by copying the untouched stretches of the original as is.
 * Binary-format values are handled per type in value.ts: text-like types and jsonb are masked in
 * place; any other binary value that must be masked becomes NULL, because a masked string has no
 * valid encoding in, say, int8 or an array's binary layout.
 */
import type { RowPlan } from './plan.js';
import type { MaskCounts } from './counts.js';
import { maskWireValue } from './value.js';

/** A wire value that changed: the original field [at, end) including its length word, and its replacement (null: NULL). */
interface Edit {
  at: number;
  end: number;
  value: Buffer | null;
}

export class MalformedRowError extends Error {
  constructor(what: string) {
    super(`malformed DataRow: ${what}`);
    this.name = 'MalformedRowError';
  }
}

const DATA_ROW = 0x44; // 'D'

/**
 * Masks one DataRow. `payload` is the message body after the 5-byte header (int16 field count,
 * then per field an int32 length, -1 for NULL, and that many bytes). Returns the whole new
 * message ('D', length, body), or null when nothing changed and the original bytes should be
 * forwarded. Throws MalformedRowError rather than forwarding a row it could not check.
 */
export function maskDataRow(payload: Buffer, plan: RowPlan, counts: MaskCounts): Buffer | null {
  if (plan.touchesNothing) return null;
  const size = payload.length;
  if (size < 2) throw new MalformedRowError('no field count');
  const fields = payload.readInt16BE(0);
  if (fields < 0) throw new MalformedRowError('negative field count');
  const columns = plan.columns;
  let edits: Edit[] | null = null;
  let delta = 0;
  let off = 2;
  for (let i = 0; i < fields; i++) {
    if (off + 4 > size) throw new MalformedRowError(`field ${i} is cut short`);
    const at = off;
    const len = payload.readInt32BE(off);
    off += 4;
    if (len === -1) continue;
    if (len < 0 || off + len > size) throw new MalformedRowError(`field ${i} has a bad length`);
    const col = i < columns.length ? columns[i] : plan.other;
    if (col !== null) {
      const value = maskWireValue(payload, off, off + len, col, counts);
      if (value !== undefined) {
        (edits ??= []).push({ at, end: off + len, value });
        delta += (value === null ? 0 : value.length) - len;
      }
    }
    off += len;
  }
  if (off !== size) throw new MalformedRowError('bytes after the last field');
  if (edits === null) return null;

  const out = Buffer.allocUnsafe(5 + size + delta);
  out[0] = DATA_ROW;
  out.writeInt32BE(4 + size + delta, 1);
  let w = 5;
  let r = 0;
  for (const e of edits) {
    w += payload.copy(out, w, r, e.at);
    if (e.value === null) w = out.writeInt32BE(-1, w);
    else {
      w = out.writeInt32BE(e.value.length, w);
      w += e.value.copy(out, w);
    }
    r = e.end;
  }
  payload.copy(out, w, r, size);
  return out;
}
