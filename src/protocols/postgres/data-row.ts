/** Reading the text fields of a DataRow the upstream sent (our own catalog queries' rows). */
import { ProtocolError } from './framer.js';

/** The first `count` fields of a DataRow payload, as text (NULL as undefined); a short row is a protocol error, not a read past the end. */
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
