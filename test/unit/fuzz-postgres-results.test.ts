/**
 * Fuzzing the server → client masking relay (ResultMasker) on framed backend messages.
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { MessageFramer, ProtocolError, type Frame } from '../../src/protocols/postgres/framer.js';
import { ResultMasker } from '../../src/protocols/postgres/results.js';
import { compileMasking, MalformedRowError } from '../../src/masking/index.js';
import { bytes, fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const masker = compileMasking([
  { columns: ['ssn'], strategy: 'redact' },
  { detectors: ['email', 'credit_card'], strategy: 'redact' },
]);
const SECRET = 'alan.turing@example.org';

function message(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (s: string) => Buffer.from(s + '\0', 'utf8');

function rowDescription(names: string[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0].writeInt16BE(names.length);
  for (const n of names) {
    const fixed = Buffer.alloc(18);
    fixed.writeUInt32BE(25, 6); // text
    parts.push(cstr(n), fixed);
  }
  return message(0x54, Buffer.concat(parts));
}

function dataRow(fields: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0].writeInt16BE(fields.length);
  for (const f of fields) {
    const len = Buffer.alloc(4);
    const b = f === null ? null : Buffer.from(f, 'utf8');
    len.writeInt32BE(b === null ? -1 : b.length);
    parts.push(len, ...(b ? [b] : []));
  }
  return message(0x44, Buffer.concat(parts));
}

const cell = fc.oneof(fc.constant(null), fc.string({ maxLength: 12 }), fc.string({ maxLength: 6 }).map((s) => `${s} ${SECRET} ${s}`));

/** A result set: description, rows, tag, ready; or a COPY TO in text format. */
const resultSet = fc.oneof(
  fc.array(fc.constantFrom('ssn', 'note', 'id'), { minLength: 1, maxLength: 4 }).chain((cols) =>
    fc.array(fc.array(cell, { minLength: cols.length, maxLength: cols.length }), { maxLength: 4 }).map((rows) => [
      rowDescription(cols),
      ...rows.map(dataRow),
      message(0x43, cstr(`SELECT ${rows.length}`)),
      message(0x5a, Buffer.from('I')),
    ]),
  ),
  fc.array(fc.array(cell, { minLength: 1, maxLength: 3 }), { maxLength: 4 }).map((rows) => [
    message(0x48, Buffer.from([0, 0, 0])),
    ...rows.map((r) => message(0x64, Buffer.from(r.map((c) => c ?? '\\N').join('\t') + '\n'))),
    message(0x63, Buffer.alloc(0)),
    message(0x43, cstr(`COPY ${rows.length}`)),
    message(0x5a, Buffer.from('I')),
  ]),
);

function frameAll(wire: Buffer): Frame[] {
  const f = new MessageFramer();
  f.push(wire);
  const out: Frame[] = [];
  for (let m = f.next(); m; m = f.next()) out.push(m);
  return out;
}

function parse(wire: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(wire, (m) => out.push(m));
  return out;
}

describe('ResultMasker, fuzzed', () => {
  it('well-formed result sets: output parses as the same messages, and no detected secret gets through', () => {
    fc.assert(
      fc.property(fc.array(resultSet, { maxLength: 4 }), (sets) => {
        const wire = Buffer.concat(sets.flat());
        const rm = new ResultMasker(masker, undefined, () => {});
        const out = Buffer.concat(frameAll(wire).map((f) => rm.frame(f)));
        expect(parse(out).map((m) => m.name)).toEqual(parse(wire).map((m) => m.name));
        expect(out.includes(SECRET)).toBe(false);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('damaged rows and COPY data (after a well-formed description): only MalformedRowError or ProtocolError', () => {
    const damagedRow = fc.tuple(bytes(40), fc.constantFrom(0x44, 0x64, 0x43, 0x5a)).map(([body, type]) => message(type, body));
    const stream = fc.tuple(fc.constantFrom(['ssn'], ['note', 'ssn'], ['id']), fc.array(damagedRow, { maxLength: 6 }));
    fc.assert(
      fc.property(stream, ([cols, rest]) => {
        const rm = new ResultMasker(masker, undefined, () => {});
        rm.expectCopy({ format: 'text', header: false, options: {} });
        for (const f of frameAll(Buffer.concat([message(0x48, Buffer.from([0, 0, 0])), rowDescription([...cols]), ...rest]))) {
          try {
            const out = rm.frame(f);
            expect(Buffer.isBuffer(out)).toBe(true);
          } catch (e) {
            if (!(e instanceof MalformedRowError) && !(e instanceof ProtocolError)) throw e;
          }
        }
      }),
      fuzz(2000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  // found by fuzzing: a RowDescription cut short was read past its end (a RangeError, so
  // "internal error" instead of "invalid message" to the agent)
  it('a truncated RowDescription fails as a ProtocolError', () => {
    const rm = new ResultMasker(masker, undefined, () => {});
    // 'T', length 8: one column, named "a", and nothing after the name
    const wire = Buffer.from([0x54, 0, 0, 0, 8, 0, 1, 0x61, 0]);
    const [f] = frameAll(wire);
    expect(() => rm.frame(f)).toThrow(ProtocolError);
  });

  it('an empty RowDescription body fails as a ProtocolError', () => {
    const rm = new ResultMasker(masker, undefined, () => {});
    const [f] = frameAll(Buffer.from([0x54, 0, 0, 0, 4]));
    expect(() => rm.frame(f)).toThrow(ProtocolError);
  });
});
