/**
 * Fuzzing how the proxy reads a Kubernetes request's method and URL (request-info.ts).
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { requestInfo } from '../../src/protocols/kubernetes/request-info.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'get', 'TRACE', '');
const segment = fc.oneof(
  fc.constantFrom('api', 'apis', 'v1', 'apps', 'namespaces', 'shop', 'pods', 'web', 'exec', 'log', 'watch', 'proxy', 'secrets', 'status'),
  fc.constantFrom('', '.', '..', '%2e', '%2E%2e', '%2f', '%2F', '%00', '%', '%zz', '%ED%A0%80', '%C3%A9', 'é', ' ', '#', ';', '~'),
  fc.string({ maxLength: 8 }),
);
const query = fc.array(
  fc.tuple(fc.constantFrom('watch', 'command', 'container', 'stdin', 'tty', 'ports', 'fieldSelector', 'x'), fc.oneof(fc.constantFrom('true', '0', 'false', 'metadata.name=web', 'metadata.name==a,b=c', '%3B', ';', '%zz', 'a+b'), fc.string({ maxLength: 6 }))),
  { maxLength: 4 },
).map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&'));
const url = fc.oneof(
  fc.tuple(fc.array(segment, { maxLength: 9 }), fc.boolean(), fc.option(query, { nil: undefined })).map(([segs, trailing, q]) => `/${segs.join('/')}${trailing ? '/' : ''}${q === undefined ? '' : `?${q}`}`),
  fc.string({ maxLength: 60 }),
  fc.nat({ max: 20_000 }).map((n) => `/api/v1/namespaces/${'a'.repeat(n)}/pods`),
);

const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'];

/** Percent-encodes every unreserved character of a clean path segment: the server decodes them all alike. */
const encodeAll = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

describe('Kubernetes request info, fuzzed', () => {
  it('any method and URL: never throws; an accepted request has a clean decoded path and a known verb', () => {
    fc.assert(
      fc.property(method, url, (m, u) => {
        const info = requestInfo(m, u);
        if (info.invalid !== undefined) {
          expect(typeof info.invalid).toBe('string');
          return;
        }
        expect(info.path.startsWith('/')).toBe(true);
        const segs = info.path.split('/').slice(1);
        if (segs.at(-1) === '') segs.pop();
        for (const s of segs) {
          expect(s).not.toBe('');
          expect(s).not.toBe('.');
          expect(s).not.toBe('..');
          expect(s.includes('\0')).toBe(false);
        }
        if (info.isResourceRequest) {
          expect(VERBS).toContain(info.verb);
          // the resource and subresource are the path's, from the resource on (a name may also come from a field selector)
          expect(info.resource).toBe(info.parts[0] ?? '');
          expect(info.subresource).toBe(info.parts[2] ?? '');
          if (info.parts[1] !== undefined) expect(info.name).toBe(info.parts[1]);
        } else expect(info.verb).toBe(m.toLowerCase());
      }),
      fuzz(4000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('metamorphic: percent-encoding path segments does not change what is read', () => {
    const clean = fc.array(fc.oneof(fc.constantFrom('api', 'apis', 'v1', 'apps', 'namespaces', 'shop', 'pods', 'web', 'exec', 'watch', 'secrets'), fc.stringMatching(/^[a-z0-9.-]{1,8}$/)), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(method, clean, fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), (m, segs, which) => {
        const plain = requestInfo(m, `/${segs.join('/')}`);
        const encoded = requestInfo(m, `/${segs.map((s, i) => (which[i] ? encodeAll(s) : s)).join('/')}`);
        // a refusal quotes the raw segment: only the fact of refusing must agree
        if (plain.invalid !== undefined) expect(encoded.invalid).toBeDefined();
        else expect(encoded).toEqual(plain);
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
