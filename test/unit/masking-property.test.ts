import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, DataRowMessage } from 'pg-protocol/dist/messages.js';
import { compileMasking, type ResultColumn } from '../../src/masking/plan.js';
import { maskDataRow } from '../../src/masking/datarow.js';
import { maskCopyLine } from '../../src/masking/copy.js';

const masker = compileMasking(
  [
    { columns: ['ssn'], strategy: 'redact' },
    { columns: ['token'], strategy: 'hash' },
    { detectors: ['email', 'credit_card'], strategy: 'partial' },
    { detectors: ['phone', 'iban', 'jwt'], strategy: 'redact' },
  ],
  { hashKey: 'property' },
);

// ---------------------------------------------------------------------------------------------
// generators

/** Luhn-valid 16-digit numbers, plain or grouped 4-4-4-4 with spaces or dashes. */
const card = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 15, maxLength: 15 }), fc.constantFrom('', ' ', '-'))
  .map(([digits, sep]) => {
    let sum = 0;
    digits.forEach((d, i) => {
      // the check digit will be rightmost, so the digit just left of it is doubled
      let x = d;
      if ((15 - i) % 2 === 1) {
        x *= 2;
        if (x > 9) x -= 9;
      }
      sum += x;
    });
    let s = [...digits, (10 - (sum % 10)) % 10].join('');
    if (/^0+$/.test(s)) s = '1000000000000008'; // all zeros is no card; this one is Luhn-valid
    return sep === '' ? s : [0, 4, 8, 12].map((i) => s.slice(i, i + 4)).join(sep);
  });

const email = fc.emailAddress();
const secret = fc.oneof(email.map((v) => ({ kind: 'email', v })), card.map((v) => ({ kind: 'card', v })));

/** Free text (any Unicode), sometimes with a secret in the middle, set off by spaces. */
const value = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((t) => ({ text: t, secrets: [] as string[] })) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.string({ unit: 'binary', maxLength: 20 }), secret, fc.string({ unit: 'binary', maxLength: 20 }))
      .map(([a, s, b]) => ({ text: `${a} ${s.v} ${b}`, secrets: [s.v] })),
  },
);

type ColumnKind = 'text' | 'varchar-bin' | 'int4' | 'bytea-bin' | 'ssn' | 'token';
const column = fc.constantFrom<ColumnKind>('text', 'text', 'varchar-bin', 'int4', 'bytea-bin', 'ssn', 'token');

function describeColumn(kind: ColumnKind, i: number): ResultColumn {
  switch (kind) {
    case 'text':
      return { name: `c${i}`, tableName: 'public.t', typeOid: 25, format: 0 };
    case 'varchar-bin':
      return { name: `c${i}`, tableName: 'public.t', typeOid: 1043, format: 1 };
    case 'int4':
      return { name: `c${i}`, tableName: 'public.t', typeOid: 23, format: 0 };
    case 'bytea-bin':
      return { name: `c${i}`, tableName: 'public.t', typeOid: 17, format: 1 };
    case 'ssn':
    case 'token':
      return { name: kind, tableName: 'public.t', typeOid: 25, format: 0 };
  }
}

function encodeField(kind: ColumnKind, v: { text: string } | null): Buffer | null {
  if (v === null) return null;
  if (kind === 'int4') return Buffer.from(String(v.text.length * 7919));
  if (kind === 'bytea-bin') return Buffer.from(v.text.slice(0, 8), 'utf8'); // short: can hold no secret
  return Buffer.from(v.text, 'utf8');
}

function dataRow(fields: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0].writeInt16BE(fields.length);
  for (const f of fields) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(f === null ? -1 : f.length);
    parts.push(len);
    if (f !== null) parts.push(f);
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head[0] = 0x44;
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function rawFields(msg: Buffer): (Buffer | null)[] {
  const out: (Buffer | null)[] = [];
  let off = 7;
  for (let i = 0; i < msg.readInt16BE(5); i++) {
    const len = msg.readInt32BE(off);
    off += 4;
    out.push(len === -1 ? null : msg.subarray(off, off + len));
    if (len !== -1) off += len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('masking properties', () => {
  it('masked DataRow streams stay decodable, untouched columns byte-identical, no secret survives', () => {
    const table = fc
      .array(column, { minLength: 1, maxLength: 8 })
      .chain((kinds) =>
        fc.tuple(fc.constant(kinds), fc.array(fc.tuple(...kinds.map(() => value)), { minLength: 1, maxLength: 6 })),
      );
    fc.assert(
      fc.property(table, ([kinds, rows]) => {
        const plan = masker.forColumns(kinds.map(describeColumn));
        const originals = rows.map((r) => dataRow(r.map((v, i) => encodeField(kinds[i], v))));
        const masked = originals.map((m) => maskDataRow(m.subarray(5), plan, {}) ?? m);

        const parsed: BackendMessage[] = [];
        new Parser().parse(Buffer.concat(masked), (m) => parsed.push(m));
        expect(parsed).toHaveLength(rows.length);

        parsed.forEach((m, r) => {
          expect(m.name).toBe('dataRow');
          const fields = (m as DataRowMessage).fields;
          expect(fields).toHaveLength(kinds.length);
          const before = rawFields(originals[r]);
          const after = rawFields(masked[r]);
          kinds.forEach((kind, c) => {
            const v = rows[r][c];
            if (plan.columns[c] === null) expect(after[c]).toEqual(before[c]);
            if (v === null) expect(after[c]).toBeNull();
            else if (kind === 'ssn') expect(fields[c]).toBe('[redacted]');
            else if (kind === 'token') expect(fields[c]).toMatch(/^h:[0-9a-f]{16}$/);
            else if (kind === 'text' || kind === 'varchar-bin') {
              for (const s of v.secrets) expect(fields[c]).not.toContain(s);
            }
          });
        });
      }),
      { numRuns: 200 },
    );
  });

  it('masked COPY text and CSV rows keep their field count and lose their secrets', () => {
    const row = fc.array(value, { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(row, fc.constantFrom('text' as const, 'csv' as const), (fields, format) => {
        const plan = masker.forUnknownColumns();
        const line = Buffer.from(encodeCopy(fields.map((f) => f?.text ?? null), format) + '\n', 'utf8');
        const out = maskCopyLine(line, format, plan, {}) ?? line;
        expect(out[out.length - 1]).toBe(0x0a);
        const decoded = decodeCopy(out.toString('utf8').slice(0, -1), format);
        expect(decoded).toHaveLength(fields.length);
        fields.forEach((f, i) => {
          if (f === null) expect(decoded[i]).toBeNull();
          else {
            expect(decoded[i]).not.toBeNull();
            for (const s of f.secrets) expect(decoded[i]).not.toContain(s);
            if (f.secrets.length === 0 && out === line) expect(decoded[i]).toBe(Buffer.from(f.text, 'utf8').toString()); // lone surrogates become U+FFFD
          }
        });
      }),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// reference COPY encoders/decoders (the server's rules, written independently of src/)

function encodeCopy(fields: (string | null)[], format: 'text' | 'csv'): string {
  if (format === 'text') {
    return fields
      .map((f) =>
        f === null
          ? '\\N'
          : f.replace(/[\\\n\r\t]/g, (c) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c]!),
      )
      .join('\t');
  }
  return fields
    .map((f) => (f === null ? '' : f === '' || /[",\n\r]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f))
    .join(',');
}

function decodeCopy(line: string, format: 'text' | 'csv'): (string | null)[] {
  if (format === 'text') {
    return line.split('\t').map((f) =>
      f === '\\N'
        ? null
        : f.replace(/\\(.)/gs, (_, c: string) => ({ n: '\n', r: '\r', t: '\t' })[c] ?? c),
    );
  }
  const out: (string | null)[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        if (line[i] === '"' && line[i + 1] === '"') {
          v += '"';
          i += 2;
        } else if (line[i] === '"') {
          i++;
          break;
        } else v += line[i++];
      }
      out.push(v);
    } else {
      let j = line.indexOf(',', i);
      if (j === -1) j = line.length;
      const v = line.slice(i, j);
      out.push(v === '' ? null : v);
      i = j;
    }
    if (i >= line.length) return out;
    i++; // the comma
  }
}
