/**
 * Fuzzing the masking engine on arbitrary input: detectors on any text, DataRow and COPY masking
 * on any bytes. Well-formed rows and COPY lines are covered by masking-property.test.ts.
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { DETECTOR_MAP, compileMasking, maskCopyLine, maskDataRow, maskText, MalformedRowError, redact, type DetectorName, type Scanner } from '../../src/masking/index.js';
import { bytes, fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const NAMES = Object.keys(DETECTOR_MAP) as DetectorName[];
const scanners: Scanner[] = NAMES.map((name) => ({ detector: DETECTOR_MAP[name], strategy: redact, countKey: name }));

/** Text that reaches the detectors' deeper paths: digits, separators, '@', '+', base64-ish runs. */
const dense = fc
  .array(fc.constantFrom('0', '1', '4', '5', '9', ' ', '-', '.', '(', ')', '+', '@', 'a', 'Z', 'e', 'y', '=', ';', '/', '_', '"', ':', 'DE', 'AKIA', 'AIza', 'sig=', '-----BEGIN PRIVATE KEY-----', '-----END ', '\n', 'é', '\u{1F600}', '\uD800'), { maxLength: 60 })
  .map((parts) => parts.join(''));
const anyText = fc.oneof(dense, fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 80 }));

// ---------------------------------------------------------------------------------------------
// one valid secret per detector

const digits = (n: number) => fc.array(fc.integer({ min: 0, max: 9 }), { minLength: n, maxLength: n }).map((d) => d.join(''));
const alnum = (n: number, chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789') => fc.array(fc.constantFrom(...chars), { minLength: n, maxLength: n }).map((c) => c.join(''));

function luhnComplete(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return body + ((10 - (sum % 10)) % 10);
}

function ibanDE(bban: string): string {
  const rearranged = `${bban}DE00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let r = 0;
  for (const ch of rearranged) r = (r * 10 + Number(ch)) % 97;
  return `DE${String(98 - r).padStart(2, '0')}${bban}`;
}

const b64url = (s: string) => Buffer.from(s).toString('base64url');
const SECRETS: Record<DetectorName, fc.Arbitrary<{ text: string; secret: string }>> = {
  email: fc.emailAddress().map((e) => ({ text: e, secret: e })),
  credit_card: digits(15).map((d) => luhnComplete('4' + d.slice(1))).map((c) => ({ text: c, secret: c })),
  iban: digits(18).map(ibanDE).map((i) => ({ text: i, secret: i })),
  ssn: fc.tuple(fc.integer({ min: 1, max: 665 }), fc.integer({ min: 1, max: 99 }), fc.integer({ min: 1, max: 9999 })).map(([a, g, s]) => {
    const v = `${String(a).padStart(3, '0')}-${String(g).padStart(2, '0')}-${String(s).padStart(4, '0')}`;
    return { text: v, secret: v };
  }),
  phone: fc.tuple(fc.integer({ min: 2, max: 9 }), digits(2), digits(3), digits(4)).map(([a, b, c, d]) => ({ text: `${a}${b}-${c}-${d}`, secret: `${a}${b}-${c}-${d}` })),
  jwt: fc.tuple(fc.string({ maxLength: 8 }), alnum(20, 'abcdefghijklmnopqrstuvwxyz0123456789_-')).map(([sub, sig]) => {
    const t = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify({ sub }))}.${sig}`;
    return { text: t, secret: t };
  }),
  aws_key: alnum(16).map((k) => ({ text: `AKIA${k}`, secret: `AKIA${k}` })),
  gcp_key: alnum(35, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789').map((k) => ({ text: `AIza${k}`, secret: `AIza${k}` })),
  azure_key: alnum(24, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/').map((k) => ({ text: `AccountKey=${k}==`, secret: `${k}==` })),
  private_key: alnum(40, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/').map((k) => {
    const pem = `-----BEGIN PRIVATE KEY-----\n${k}\n-----END PRIVATE KEY-----`;
    return { text: pem, secret: k };
  }),
};

describe('detectors, fuzzed', () => {
  it('any text: ranges ascending, disjoint, non-empty and inside the text; never a throw', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        for (const name of NAMES) {
          const ranges = DETECTOR_MAP[name].find(text);
          let last = 0;
          for (const [s, e] of ranges) {
            expect(s, name).toBeGreaterThanOrEqual(last);
            expect(e, name).toBeGreaterThan(s);
            expect(e, name).toBeLessThanOrEqual(text.length);
            last = e;
          }
        }
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('a detector finds the same on a text whatever it scanned before (shared regex state)', () => {
    fc.assert(
      fc.property(anyText, fc.array(anyText, { maxLength: 3 }), (text, before) => {
        const fresh = NAMES.map((n) => DETECTOR_MAP[n].find(text).map((r) => [...r]));
        for (const other of before) for (const n of NAMES) DETECTOR_MAP[n].find(other);
        expect(NAMES.map((n) => DETECTOR_MAP[n].find(text).map((r) => [...r]))).toEqual(fresh);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  for (const name of NAMES) {
    it(`a ${name} set off by " | " in any text is masked: the secret never appears in the output`, () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 30 }), SECRETS[name], fc.string({ unit: 'binary', maxLength: 30 }), (a, { text, secret }, b) => {
          fc.pre(!a.includes(secret) && !b.includes(secret));
          const out = maskText(`${a} | ${text} | ${b}`, [{ detector: DETECTOR_MAP[name], strategy: redact, countKey: name }], false, {});
          expect(out).toBeDefined();
          expect(out!.includes(secret)).toBe(false);
        }),
        fuzz(300),
      );
    }, FUZZ_TEST_TIMEOUT_MS);
  }

  it('JSON text stays valid JSON when masked, and loses its secrets', () => {
    const planted = fc.oneof(...NAMES.map((n) => SECRETS[n]));
    const doc = fc.tuple(fc.jsonValue({ maxDepth: 2 }), fc.array(planted, { minLength: 1, maxLength: 3 })).map(([noise, secrets]) => ({
      text: JSON.stringify({ noise, values: secrets.map((s) => s.text) }),
      secrets: secrets.map((s) => s.secret),
    }));
    fc.assert(
      fc.property(doc, ({ text, secrets }) => {
        const out = maskText(text, scanners, true, {});
        expect(out).toBeDefined();
        const parsed = JSON.parse(out!) as { values: string[] };
        for (const s of secrets) expect(JSON.stringify(parsed.values).includes(JSON.stringify(s).slice(1, -1))).toBe(false);
      }),
      fuzz(800),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});

// ---------------------------------------------------------------------------------------------

const masker = compileMasking([
  { columns: ['ssn'], strategy: 'redact' },
  { detectors: ['email', 'credit_card', 'phone'], strategy: 'partial' },
]);
const plans = [
  masker.forUnknownColumns(),
  masker.forColumns([{ name: 'ssn', typeOid: 25, format: 0 }, { name: 'note', typeOid: 25, format: 0 }]),
  masker.forColumns([{ name: 'n', typeOid: 20, format: 1 }, { name: 'j', typeOid: 3802, format: 1 }, { name: 'm', typeOid: 1700, format: 1 }, { name: 'ssn', typeOid: 3802, format: 1 }]),
];

/** A DataRow body: either random bytes, or a field count and fields with random (often wrong) lengths. */
const rowPayload = fc.oneof(
  bytes(60),
  fc.tuple(fc.integer({ min: -2, max: 5 }), fc.array(fc.tuple(fc.integer({ min: -3, max: 30 }), bytes(30)), { maxLength: 5 })).map(([count, fields]) => {
    const parts: Buffer[] = [Buffer.alloc(2)];
    parts[0].writeInt16BE(count);
    for (const [len, body] of fields) {
      const l = Buffer.alloc(4);
      l.writeInt32BE(len);
      parts.push(l, body);
    }
    return Buffer.concat(parts);
  }),
);

describe('row and COPY masking on arbitrary bytes', () => {
  it('maskDataRow: unchanged, a DataRow pg-protocol reads with the same field count, or MalformedRowError', () => {
    fc.assert(
      fc.property(rowPayload, fc.constantFrom(...plans), (payload, plan) => {
        let out: Buffer | null;
        try {
          out = maskDataRow(payload, plan, {});
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedRowError);
          return;
        }
        if (out === null) return;
        const parsed: BackendMessage[] = [];
        new Parser().parse(out, (m) => parsed.push(m));
        expect(parsed).toHaveLength(1);
        expect(parsed[0].name).toBe('dataRow');
        expect((parsed[0] as unknown as { fieldCount: number }).fieldCount).toBe(payload.readInt16BE(0));
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('maskCopyLine (text): never throws, and keeps the number of fields and the line end', () => {
    /** fields of a text COPY line by the server's rule: a tab not escaped by a backslash separates */
    const fieldCount = (line: Buffer) => {
      let n = 1;
      const end = line.at(-1) === 0x0a ? line.length - 1 : line.length;
      for (let i = 0; i < end; i++) {
        if (line[i] === 0x5c) i++;
        else if (line[i] === 0x09) n++;
      }
      return n;
    };
    const line = fc.oneof(
      bytes(80),
      fc.array(fc.oneof(fc.string({ maxLength: 10 }), SECRETS.email.map((s) => s.text), fc.constant('\\N'), fc.constant('a\\\tb')), { minLength: 1, maxLength: 5 }).map((f) => Buffer.from(f.join('\t') + '\n')),
    );
    fc.assert(
      fc.property(line, fc.constantFrom(...plans.slice(0, 2)), (l, plan) => {
        const out = maskCopyLine(l, 'text', plan, {}) ?? l;
        expect(fieldCount(out)).toBe(fieldCount(l));
        expect(out.at(-1) === 0x0a).toBe(l.at(-1) === 0x0a);
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('maskCopyLine (csv): never throws on any bytes and options', () => {
    const opts = fc.record({ delimiter: fc.constantFrom(',', ';', '|'), quote: fc.constantFrom('"', "'"), escape: fc.constantFrom('"', '\\', "'"), null: fc.constantFrom('', 'NULL', '\\N') });
    fc.assert(
      fc.property(fc.oneof(bytes(80), fc.string({ maxLength: 60 }).map((s) => Buffer.from(s))), opts, (l, o) => {
        const out = maskCopyLine(l, 'csv', plans[0], {}, o);
        expect(out === null || Buffer.isBuffer(out)).toBe(true);
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
