import { describe, it, expect } from 'vitest';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, DataRowMessage } from 'pg-protocol/dist/messages.js';
import { compileMasking, type ResultColumn } from '../../src/masking/plan.js';
import { maskDataRow, MalformedRowError } from '../../src/masking/datarow.js';
import { maskCopyLine, copyDataMessage } from '../../src/masking/copy.js';
import { keyedHash } from '../../src/masking/strategies.js';
import type { MaskCounts } from '../../src/masking/counts.js';

// ---------------------------------------------------------------------------------------------
// wire helpers

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function dataRow(fields: (string | Buffer | null)[]): Buffer {
  const n = Buffer.alloc(2);
  n.writeInt16BE(fields.length);
  const parts = fields.map((f) => {
    if (f === null) return int32(-1);
    const bytes = typeof f === 'string' ? Buffer.from(f, 'utf8') : f;
    return Buffer.concat([int32(bytes.length), bytes]);
  });
  const body = Buffer.concat([n, ...parts]);
  return Buffer.concat([Buffer.from('D'), int32(4 + body.length), body]);
}

const bodyOf = (msg: Buffer) => msg.subarray(5);

function parseAll(buf: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(buf, (m) => out.push(m));
  return out;
}

/** Text fields as pg-protocol decodes them. */
function pgFields(msg: Buffer): (string | null)[] {
  const [m] = parseAll(msg);
  expect(m.name).toBe('dataRow');
  return (m as DataRowMessage).fields;
}

/** Raw field bytes, for binary columns. */
function rawFields(msg: Buffer): (Buffer | null)[] {
  expect(msg[0]).toBe(0x44);
  expect(msg.readInt32BE(1)).toBe(msg.length - 1);
  const out: (Buffer | null)[] = [];
  let off = 7;
  for (let i = 0; i < msg.readInt16BE(5); i++) {
    const len = msg.readInt32BE(off);
    off += 4;
    if (len === -1) out.push(null);
    else {
      out.push(msg.subarray(off, off + len));
      off += len;
    }
  }
  expect(off).toBe(msg.length);
  return out;
}

const col = (name: string, tableName?: string, typeOid = 25, format: 0 | 1 = 0): ResultColumn => ({
  name,
  tableName,
  typeOid,
  format,
});

const hashKey = 'test-key';
const h = keyedHash(hashKey);

// ---------------------------------------------------------------------------------------------

describe('plan', () => {
  const masker = compileMasking(
    [
      { columns: ['ssn'], strategy: 'redact' },
      { columns: ['customers.email'], strategy: 'hash' },
      { columns: ['public.cards.*'], strategy: 'partial' },
      { detectors: ['email', 'credit_card'], strategy: 'redact' },
      { columns: ['notes', '*.comment*'], detectors: ['phone', 'email'], strategy: 'partial' },
      { columns: ['email'], strategy: 'redact' },
    ],
    { hashKey },
  );

  const kindOf = (c: ResultColumn) => {
    const p = masker.forColumns([c]).columns[0];
    if (p === null) return null;
    return p.kind === 'whole' ? `whole:${p.countKey}` : `scan:${p.scanners.map((s) => `${s.detector.name}/${s.strategy.name}`).join(',')}`;
  };

  it('the first matching column rule wins, by [schema.]table.column glob', () => {
    expect(kindOf(col('ssn', 'public.people'))).toBe('whole:column:ssn');
    expect(kindOf(col('SSN', 'public.people'))).toBe('whole:column:SSN'); // case-insensitive
    const p = masker.forColumns([col('email', 'crm.customers')]).columns[0];
    expect(p?.kind === 'whole' && p.strategy('x')).toBe(h('x')); // customers.email (hash) before email (redact)
    expect(kindOf(col('number', 'public.cards'))).toBe('whole:column:number');
    expect(kindOf(col('number', 'archive.cards'))).toBe('scan:email/redact,credit_card/redact');
    expect(kindOf(col('email', 'public.orders'))).toBe('whole:column:email');
  });

  it('detector rules apply to every scannable column, scoped ones to their columns', () => {
    expect(kindOf(col('notes', 'public.orders'))).toBe('scan:email/redact,credit_card/redact,phone/partial');
    expect(kindOf(col('comment_text', 'public.orders'))).toBe('scan:email/redact,credit_card/redact,phone/partial');
    expect(kindOf(col('body', 'public.orders'))).toBe('scan:email/redact,credit_card/redact');
    expect(kindOf(col('total', 'public.orders', 1700))).toBe('scan:email/redact,credit_card/redact'); // numeric may hold a card
    expect(kindOf(col('id', 'public.orders', 23))).toBeNull(); // int4 cannot
    expect(kindOf(col('created', 'public.orders', 1184))).toBeNull();
  });

  it('a column of unknown table only matches wildcard table segments', () => {
    const m = compileMasking([
      { columns: ['*.ssn'], strategy: 'redact' },
      { columns: ['people.dob'], strategy: 'redact' },
    ]);
    const plan = m.forColumns([col('ssn'), col('dob'), col('dob', 'public.people'), col('dob', 'public.other')]);
    expect(plan.columns.map((c) => c?.kind ?? null)).toEqual(['whole', null, 'whole', null]);
  });

  it('touchesNothing when no rule can touch any column', () => {
    const m = compileMasking([{ columns: ['ssn'], strategy: 'redact' }]);
    expect(m.forColumns([col('id', 't.x', 23), col('name', 't.x')]).touchesNothing).toBe(true);
    expect(m.forColumns([col('id', 't.x', 23), col('ssn', 't.x', 23)]).touchesNothing).toBe(false);
    expect(m.forUnknownColumns().touchesNothing).toBe(true);
    const d = compileMasking([{ detectors: ['email'], strategy: 'redact' }]);
    expect(d.forColumns([col('id', 't.x', 23), col('at', 't.x', 1114)]).touchesNothing).toBe(true);
    expect(d.forColumns([col('name', 't.x')]).touchesNothing).toBe(false);
    expect(d.forUnknownColumns().touchesNothing).toBe(false);
    expect(compileMasking([]).forColumns([col('x')]).touchesNothing).toBe(true);
  });

  it('rejects bad patterns and hash without a key', () => {
    expect(() => compileMasking([{ columns: ['a.b.c.d'], strategy: 'redact' }])).toThrow(/not \[schema/);
    expect(() => compileMasking([{ columns: ['a..b'], strategy: 'redact' }])).toThrow(/not \[schema/);
    expect(() => compileMasking([{ columns: ['x'], strategy: 'hash' }])).toThrow(/hash key/);
    expect(() => compileMasking([{ detectors: ['nope'] as never, strategy: 'redact' }])).toThrow(/unknown detector/);
  });
});

describe('maskDataRow', () => {
  const masker = compileMasking(
    [
      { columns: ['ssn'], strategy: 'redact' },
      { columns: ['card'], strategy: 'partial' },
      { columns: ['customer'], strategy: 'hash' },
      { detectors: ['email', 'credit_card', 'phone', 'private_key'], strategy: 'redact' },
    ],
    { hashKey },
  );

  it('masks text-format rows in place and leaves other fields byte-identical', () => {
    const plan = masker.forColumns([
      col('id', 't.p', 23),
      col('note', 't.p'),
      col('ssn', 't.p'),
      col('card', 't.p'),
      col('customer', 't.p'),
      col('empty', 't.p'),
      col('bio', 't.p'),
    ]);
    const msg = dataRow([
      '17',
      'call alan@example.org or 4111 1111 1111 1111',
      '123-45-6789',
      '4111-1111-1111-1111',
      'Alan Turing',
      null,
      'Grüße an jürgen@münchen.de ☎ +44 20 7946 0958 — ok',
    ]);
    const counts: MaskCounts = {};
    const out = maskDataRow(bodyOf(msg), plan, counts);
    expect(out).not.toBeNull();
    expect(pgFields(out!)).toEqual([
      '17',
      'call [redacted] or [redacted]',
      '[redacted]',
      '****-****-****-1111',
      h('Alan Turing'),
      null,
      'Grüße an [redacted] ☎ [redacted] — ok',
    ]);
    expect(counts).toEqual({ email: 2, credit_card: 1, phone: 1, 'column:ssn': 1, 'column:card': 1, 'column:customer': 1 });
    expect(rawFields(out!)[0]).toEqual(Buffer.from('17'));
  });

  it('returns null when nothing changed, or when the plan touches nothing', () => {
    const plan = masker.forColumns([col('id', 't.p', 23), col('note', 't.p')]);
    const counts: MaskCounts = {};
    expect(maskDataRow(bodyOf(dataRow(['1', 'nothing to see here'])), plan, counts)).toBeNull();
    expect(maskDataRow(bodyOf(dataRow(['1', null])), plan, counts)).toBeNull();
    expect(counts).toEqual({});
    const none = masker.forColumns([col('id', 't.p', 23)]);
    expect(none.touchesNothing).toBe(true);
    expect(maskDataRow(Buffer.from('garbage'), none, counts)).toBeNull(); // not even looked at
  });

  it('NULLs stay NULL, even under column rules', () => {
    const plan = masker.forColumns([col('ssn', 't.p'), col('note', 't.p')]);
    const counts: MaskCounts = {};
    expect(maskDataRow(bodyOf(dataRow([null, null])), plan, counts)).toBeNull();
    expect(counts).toEqual({});
  });

  it('binary columns: text-like in place, jsonb keeps its version byte, the rest NULLed', () => {
    const numericCard = Buffer.from([0, 4, 0, 3, 0, 0, 0, 0, 0x10, 0x0f, 0x04, 0x57, 0x04, 0x57, 0x04, 0x57]); // 4111111111111111
    const numericSmall = Buffer.from([0, 1, 0, 0, 0, 0, 0, 2, 0, 42, 0x13, 0x88]); // 42.50
    const int8 = Buffer.alloc(8);
    int8.writeBigInt64BE(4111111111111111n);
    const int8Small = Buffer.alloc(8);
    int8Small.writeBigInt64BE(42n);
    const int4 = int32(123456789);
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n';
    const plan = masker.forColumns([
      col('note', 't.p', 25, 1),
      col('doc', 't.p', 3802, 1),
      col('ssn', 't.p', 23, 1),
      col('amount', 't.p', 1700, 1),
      col('amount2', 't.p', 1700, 1),
      col('big', 't.p', 20, 1),
      col('big2', 't.p', 20, 1),
      col('blob', 't.p', 17, 1),
      col('blob2', 't.p', 17, 1),
      col('ssn2', 't.p', 25, 1),
    ]);
    const msg = dataRow([
      'mail alan@example.org',
      Buffer.concat([Buffer.from([1]), Buffer.from('{"e": "alan@example.org", "n": 1}')]),
      int4,
      numericCard,
      numericSmall,
      int8,
      int8Small,
      Buffer.from(pem),
      Buffer.from([0xde, 0xad, 0xbe, 0xef]),
      'plain',
    ]);
    const counts: MaskCounts = {};
    const out = maskDataRow(bodyOf(msg), plan, counts)!;
    const f = rawFields(out);
    expect(f[0]).toEqual(Buffer.from('mail [redacted]'));
    expect(f[1]![0]).toBe(1);
    expect(JSON.parse(f[1]!.subarray(1).toString())).toEqual({ e: '[redacted]', n: 1 });
    expect(f[2]).toBeNull(); // int4 under a column rule: no valid int4 says "redacted"
    expect(f[3]).toBeNull(); // numeric holding a card number
    expect(f[4]).toEqual(numericSmall);
    expect(f[5]).toBeNull(); // bigint holding a card number
    expect(f[6]).toEqual(int8Small);
    expect(f[7]).toBeNull(); // bytea holding a private key
    expect(f[8]).toEqual(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    expect(f[9]).toEqual(Buffer.from('plain'));
    expect(counts).toEqual({ email: 2, 'column:ssn': 1, credit_card: 2, private_key: 1 });
  });

  it('json stays valid JSON', () => {
    const m = compileMasking(
      [
        { columns: ['secret'], strategy: 'redact' },
        { columns: ['hashed'], strategy: 'hash' },
        { detectors: ['email', 'credit_card', 'gcp_key', 'private_key'], strategy: 'partial' },
      ],
      { hashKey },
    );
    const plan = m.forColumns([
      col('doc', 't.p', 114),
      col('secret', 't.p', 3802),
      col('hashed', 't.p', 114),
      col('sa', 't.p', 3802),
    ]);
    const doc = '{"note":"line1\\nalan@example.org","card":4111111111111111,"quote":"\\"bob@example.com\\""}';
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n';
    const sa = JSON.stringify({ type: 'service_account', private_key_id: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678', private_key: pem });
    const out = maskDataRow(bodyOf(dataRow([doc, '{"a": 1}', '[1, 2]', sa])), plan, {})!;
    const [d, s, hh, a] = pgFields(out) as string[];
    expect(JSON.parse(d)).toEqual({ note: 'line1\n****@*******.org', card: '************1111', quote: '"***@*******.com"' });
    expect(JSON.parse(s)).toBe('[redacted]');
    expect(JSON.parse(hh)).toBe(h('[1, 2]'));
    const parsed = JSON.parse(a);
    expect(parsed.private_key_id).toBe('*'.repeat(36) + '5678');
    expect(parsed.private_key).not.toContain('MIIEvQ');
    expect(parsed.type).toBe('service_account');
  });

  it('multi-byte UTF-8 around and inside masked ranges', () => {
    const m = compileMasking([{ detectors: ['email'], strategy: 'partial' }]);
    const plan = m.forColumns([col('a', 't.p'), col('b', 't.p', 1043, 1)]);
    const a = '日本語 δοκιμή@παράδειγμα.ελ 😀 end';
    const out = maskDataRow(bodyOf(dataRow([a, '😀x😀 ü@ä.de'])), plan, {})!;
    expect(pgFields(out)).toEqual(['日本語 ******@*********α.ελ 😀 end', '😀x😀 *@*.de']);
  });

  it('fields beyond RowDescription are left alone when columns are known; scanned when not', () => {
    const m = compileMasking([{ detectors: ['email'], strategy: 'redact' }]);
    const known = m.forColumns([col('a', 't.p')]);
    const row = bodyOf(dataRow(['x', 'alan@example.org']));
    expect(maskDataRow(row, known, {})).toBeNull();
    expect(pgFields(maskDataRow(row, m.forUnknownColumns(), {})!)).toEqual(['x', '[redacted]']);
  });

  it('throws on malformed rows instead of forwarding them unchecked', () => {
    const plan = compileMasking([{ detectors: ['email'], strategy: 'redact' }]).forColumns([col('a', 't.p')]);
    const good = bodyOf(dataRow(['alan@example.org']));
    expect(() => maskDataRow(good.subarray(0, good.length - 1), plan, {})).toThrow(MalformedRowError);
    expect(() => maskDataRow(Buffer.concat([good, Buffer.from([0])]), plan, {})).toThrow(MalformedRowError);
    expect(() => maskDataRow(Buffer.from([0]), plan, {})).toThrow(MalformedRowError);
    const badLen = Buffer.from(good);
    badLen.writeInt32BE(-5, 2);
    expect(() => maskDataRow(badLen, plan, {})).toThrow(MalformedRowError);
  });

  it('a stream of masked rows parses as the same number of rows', () => {
    const plan = masker.forColumns([col('note', 't.p'), col('ssn', 't.p')]);
    const rows = [dataRow(['a@example.org', '123-45-6789']), dataRow(['none', null]), dataRow([null, 'x'])];
    const stream = Buffer.concat(rows.map((r) => maskDataRow(bodyOf(r), plan, {}) ?? r));
    expect(parseAll(stream).map((m) => (m as DataRowMessage).fields)).toEqual([
      ['[redacted]', '[redacted]'],
      ['none', null],
      [null, '[redacted]'],
    ]);
  });
});

describe('maskCopyLine', () => {
  const masker = compileMasking(
    [
      { columns: ['ssn'], strategy: 'redact' },
      { detectors: ['email', 'credit_card'], strategy: 'redact' },
    ],
    { hashKey },
  );
  const copyCols = (...names: string[]) => masker.forColumns(names.map((n) => col(n, 'public.people', 0)));

  it('text format: escapes decoded before detection and re-escaped after', () => {
    const plan = copyCols('id', 'note', 'ssn', 'other');
    const line = Buffer.from('1\tline1\\nalan@example.org\\tend\\\\x\t123-45-6789\t\\N\n');
    const counts: MaskCounts = {};
    const out = maskCopyLine(line, 'text', plan, counts)!;
    expect(out.toString()).toBe('1\tline1\\n[redacted]\\tend\\\\x\t[redacted]\t\\N\n');
    expect(counts).toEqual({ email: 1, 'column:ssn': 1 });
    expect(maskCopyLine(Buffer.from('1\tnothing\t\\N\t\\N\n'), 'text', plan, {})).toBeNull();
  });

  it('text format: octal/hex escapes, custom delimiter and NULL string', () => {
    const plan = copyCols('note', 'ssn');
    // \101 = 'A', \x40 = '@': the address only exists after decoding
    const line = Buffer.from('\\101lan\\x40example.org tab\\|pipe|NULL\n');
    const out = maskCopyLine(line, 'text', plan, {}, { delimiter: '|', null: 'NULL' })!;
    expect(out.toString()).toBe('[redacted] tab\\|pipe|NULL\n');
    const plan2 = copyCols('ssn', 'note');
    expect(maskCopyLine(Buffer.from(`abc|x\\|y\\\\z alan@example.org\n`), 'text', plan2, {}, { delimiter: '|' })!.toString()).toBe(
      '[redacted]|x\\|y\\\\z [redacted]\n',
    );
  });

  it('CSV: quoted fields, doubled quotes, embedded newlines, NULL vs empty string', () => {
    const plan = copyCols('id', 'note', 'ssn', 'empty', 'nul');
    const line = Buffer.from('1,"alan@example.org, ""quoted""\nbob@example.com",123-45-6789,"",\n');
    const counts: MaskCounts = {};
    const out = maskCopyLine(line, 'csv', plan, counts)!;
    expect(out.toString()).toBe('1,"[redacted], ""quoted""\n[redacted]",[redacted],"",\n');
    expect(counts).toEqual({ email: 2, 'column:ssn': 1 });
  });

  it('CSV: a masked value that needs quoting gets quoted; custom quote/escape', () => {
    const plan = masker.forColumns([col('ssn', undefined, 0), col('note', undefined, 0)]);
    const out = maskCopyLine(Buffer.from("'a;b';'x \\'y\\' alan@example.org'\n"), 'csv', plan, {}, {
      delimiter: ';',
      quote: "'",
      escape: '\\',
    })!;
    expect(out.toString()).toBe("'[redacted]';'x \\'y\\' [redacted]'\n");
    const crlf = maskCopyLine(Buffer.from('4111111111111111,x\r\n'), 'csv', copyCols('note', 'other'), {})!;
    expect(crlf.toString()).toBe('[redacted],x\r\n');
  });

  it('unknown columns: detectors on every field', () => {
    const out = maskCopyLine(Buffer.from('a,b,alan@example.org\n'), 'csv', masker.forUnknownColumns(), {})!;
    expect(out.toString()).toBe('a,b,[redacted]\n');
  });

  it('copyDataMessage frames a body as CopyData', () => {
    const msg = copyDataMessage(Buffer.from('x\n'));
    const [m] = parseAll(msg);
    expect(m.name).toBe('copyData');
    expect(msg.readInt32BE(1)).toBe(6);
  });
});
