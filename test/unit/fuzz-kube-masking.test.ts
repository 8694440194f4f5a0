/**
 * Fuzzing Kubernetes response masking: random JSON, Secrets in every wrapping the API uses, and
 * watch streams cut at arbitrary points. See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KubeResponseMasker, UnmaskableResponseError, WatchStreamMasker } from '../../src/protocols/kubernetes/masking.js';
import { bytes, cuts, fuzz, split, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const masker = new KubeResponseMasker({
  detectors: [{ detectors: ['email', 'credit_card', 'jwt', 'aws_key', 'private_key'], strategy: 'redact' }],
  hashKey: Buffer.from('fuzz'),
});

// ---------------------------------------------------------------------------------------------
// Secrets: values that cannot occur by chance, in every place a Secret shows up

const secretValue = fc.stringMatching(/^[a-z0-9]{6,12}$/).map((s) => `sv-${s}`);
const secretData = fc.array(fc.tuple(fc.string({ maxLength: 8 }), secretValue), { minLength: 1, maxLength: 4 });

interface Planted {
  doc: unknown;
  /** every value a Secret holds, as it appears in the document (stringData plain, data base64) */
  values: string[];
}

const secret = fc.tuple(secretData, secretData, fc.boolean()).map(([data, stringData, withKind]): Planted => {
  const d = Object.fromEntries(data.map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  const sd = Object.fromEntries(stringData.map(([k, v]) => [k, v]));
  const obj: Record<string, unknown> = { apiVersion: 'v1', metadata: { name: 'creds', namespace: 'shop' }, type: 'Opaque', data: d, stringData: sd };
  if (withKind) obj.kind = 'Secret';
  return { doc: obj, values: [...Object.values(d), ...Object.values(sd)] };
});

/** A Secret as the API returns it: alone, in lists, in a watch event, in a table, or applied into another object's annotation. */
const wrapped = fc.tuple(secret, fc.nat({ max: 5 })).map(([s, how]): Planted => {
  const withKind = { ...(s.doc as object), kind: 'Secret' };
  switch (how) {
    case 0:
      return { doc: withKind, values: s.values };
    case 1:
      return { doc: { kind: 'SecretList', apiVersion: 'v1', items: [s.doc] }, values: s.values };
    case 2:
      return { doc: { kind: 'List', apiVersion: 'v1', items: [withKind] }, values: s.values };
    case 3:
      return { doc: { type: 'ADDED', object: withKind }, values: s.values };
    case 4:
      return { doc: { kind: 'Table', apiVersion: 'meta.k8s.io/v1', columnDefinitions: [{ name: 'Name', format: 'name' }], rows: [{ cells: ['creds'], object: withKind }] }, values: s.values };
    default:
      return {
        doc: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'x', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(withKind) + '\n' } } },
        values: s.values,
      };
  }
});

/** Planted Secrets nested inside arbitrary JSON. */
const planted = fc.tuple(wrapped, fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('a', 'items', 'object', 'spec')).map(([p, noise, key]): Planted => ({
  doc: noise !== null && typeof noise === 'object' && !Array.isArray(noise) ? { ...noise, [key]: p.doc } : [noise, p.doc],
  values: p.values,
}));

const leaked = (text: string, values: string[]) => values.filter((v) => text.includes(v));

describe('Kubernetes masking, fuzzed', () => {
  it('any JSON value: masked or refused as too deep, never another exception; unchanged values come back as they were', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const before = JSON.stringify(v);
        const { value } = masker.maskObject(v);
        expect(JSON.stringify(v)).toBe(before); // the input is not modified
        expect(() => JSON.stringify(value)).not.toThrow();
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('any body, any content type: a body or a refusal, never a throw', () => {
    const body = fc.oneof(bytes(200), fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')));
    const type = fc.constantFrom('application/json', 'application/json;stream=watch', 'text/plain', 'application/yaml', '', 'application/merge-patch+json');
    fc.assert(
      fc.property(type, body, (t, b) => {
        const r = masker.maskBody(t, b);
        if ('refuse' in r) expect(r.refuse).toMatch(/^interlock: /);
        else expect(Buffer.isBuffer(r.body)).toBe(true);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('deeply nested input is refused with UnmaskableResponseError, not a stack overflow', () => {
    // the top level is depth 0: containers at depth 513 and below (514 nested) are refused
    fc.assert(
      fc.property(fc.integer({ min: 514, max: 5000 }), fc.boolean(), (depth, arrays) => {
        const text = arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
        expect(() => masker.maskObject(JSON.parse(text))).toThrow(UnmaskableResponseError);
        expect(masker.maskBody('application/json', Buffer.from(text))).toHaveProperty('refuse');
      }),
      fuzz(50),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('no value of a Secret survives masking, wherever the Secret sits', () => {
    fc.assert(
      fc.property(planted, ({ doc, values }) => {
        const text = JSON.stringify(doc);
        expect(leaked(text, values)).not.toEqual([]); // the generator did plant them
        const r = masker.maskBody('application/json', Buffer.from(text));
        expect(r).not.toHaveProperty('refuse');
        expect(leaked((r as { body: Buffer }).body.toString(), values)).toEqual([]);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('watch streams cut anywhere: the same output as in one piece, and no Secret value in it', () => {
    const events = fc.array(fc.oneof(wrapped.map((p) => ({ doc: { type: 'MODIFIED', object: p.doc }, values: p.values })), fc.jsonValue({ maxDepth: 3 }).map((v) => ({ doc: { type: 'ADDED', object: v }, values: [] as string[] }))), { minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(events, cuts(), fc.boolean(), (evs, at, lastNewline) => {
        const stream = Buffer.from(evs.map((e) => JSON.stringify(e.doc)).join('\n') + (lastNewline ? '\n' : ''));
        const values = evs.flatMap((e) => e.values);
        const whole = new WatchStreamMasker(masker);
        const one = Buffer.concat([...whole.push(stream), ...whole.end()]);
        const pieces = new WatchStreamMasker(masker);
        const out: Buffer[] = [];
        for (const c of split(stream, at)) out.push(...pieces.push(c));
        out.push(...pieces.end());
        expect(Buffer.concat(out)).toEqual(one);
        expect(leaked(one.toString(), values)).toEqual([]);
        expect(one.toString().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))).toHaveLength(evs.length);
      }),
      fuzz(1000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('a watch line longer than the limit is refused before it is held whole', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 64 * 1024 }), { minLength: 1, maxLength: 8 }), (sizes) => {
        const stream = new WatchStreamMasker(masker, { maxLineBytes: 256 * 1024 });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let fed = 0;
        let refusedAt = -1;
        for (let k = 0; fed < 1024 * 1024 && refusedAt < 0; k++) {
          const c = chunk.subarray(0, sizes[k % sizes.length]);
          try {
            stream.push(c);
            fed += c.length;
          } catch (e) {
            expect(e).toBeInstanceOf(UnmaskableResponseError);
            refusedAt = fed + c.length;
          }
        }
        // refused by the chunk that would have taken it past the limit
        expect(refusedAt).toBeGreaterThan(256 * 1024);
        expect(fed).toBeLessThanOrEqual(256 * 1024);
      }),
      fuzz(100),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
