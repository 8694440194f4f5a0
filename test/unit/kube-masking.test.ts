import { describe, it, expect } from 'vitest';
import {
  KubeResponseMasker,
  LogStreamMasker,
  SECRET_MARKER,
  SECRET_MARKER_BASE64,
  UnmaskableResponseError,
  WatchStreamMasker,
  negotiateJson,
} from '../../src/protocols/kubernetes/masking.js';

// ---------------------------------------------------------------------------------------------
// fixtures

const masker = new KubeResponseMasker({
  detectors: [
    { detectors: ['email', 'aws_key', 'credit_card', 'private_key'], strategy: 'redact' },
    { detectors: ['jwt'], strategy: 'hash' },
    { columns: ['users.ssn'], strategy: 'redact' }, // a column rule: nothing to apply it to here
  ],
  hashKey: Buffer.from('test-hash-key'),
});

const PASSWORD = 'hunter2-correct-horse';
const API_TOKEN = 'tok_live_8c1f0e2d4b';
const STRING_DATA = 'stringdata-plain-value';
const EMAIL = 'alice@example.com';
const AWS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const CARD = '4111 1111 1111 1111';
const SECRET_VALUES = [PASSWORD, API_TOKEN, STRING_DATA];

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function secret(name: string, withTypeMeta = true): Record<string, unknown> {
  return {
    ...(withTypeMeta ? { kind: 'Secret', apiVersion: 'v1' } : {}),
    metadata: { name, namespace: 'prod', uid: '1f0b8a9e-0000-4000-8000-000000000001', resourceVersion: '4242' },
    type: 'Opaque',
    data: { password: b64(PASSWORD), 'api-token': b64(API_TOKEN) },
    stringData: { extra: STRING_DATA },
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

/** Masks a JSON body and returns the output text and counts; fails on refusal. */
function maskJson(v: unknown, contentType = 'application/json') {
  const r = masker.maskBody(contentType, json(v));
  if ('refuse' in r) throw new Error(r.refuse);
  return { text: r.body.toString('utf8'), out: JSON.parse(r.body.toString('utf8')) as any, counts: r.counts };
}

/** No value may survive in any form a client could read back. */
function expectNoLeak(output: string, values: readonly string[]): void {
  for (const v of values) {
    for (const form of [v, b64(v), Buffer.from(v).toString('base64url'), JSON.stringify(v).slice(1, -1)]) {
      expect(output, `leaked ${JSON.stringify(v)} as ${JSON.stringify(form)}`).not.toContain(form);
    }
  }
}

function expectRedactedSecret(s: any): void {
  expect(Object.keys(s.data)).toEqual(['password', 'api-token']);
  for (const v of Object.values(s.data)) {
    expect(v).toBe(SECRET_MARKER_BASE64);
    expect(Buffer.from(v as string, 'base64').toString('utf8')).toBe(SECRET_MARKER);
  }
  expect(s.stringData).toEqual({ extra: SECRET_MARKER });
}

// ---------------------------------------------------------------------------------------------

describe('Secrets', () => {
  it('redacts every data and stringData value of a Secret (get), keeping keys and identity', () => {
    const { text, out, counts } = maskJson(secret('db'));
    expectRedactedSecret(out);
    expect(out.metadata).toEqual(secret('db').metadata);
    expect(out.type).toBe('Opaque');
    expect(counts).toEqual({ secret: 3 });
    expectNoLeak(text, SECRET_VALUES);
  });

  it('redacts the items of a SecretList, which carry no kind of their own (list)', () => {
    const list = {
      kind: 'SecretList',
      apiVersion: 'v1',
      metadata: { resourceVersion: '99', continue: 'eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ' },
      items: [secret('a', false), secret('b', false)],
    };
    const { text, out, counts } = maskJson(list);
    for (const item of out.items) expectRedactedSecret(item);
    expect(out.metadata).toEqual(list.metadata);
    expect(counts.secret).toBe(6);
    expectNoLeak(text, SECRET_VALUES);
  });

  it('redacts Secrets inside a mixed List and leaves the other items be', () => {
    const cm = { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'c' }, data: { mode: 'fast' } };
    const { text, out } = maskJson({ kind: 'List', apiVersion: 'v1', items: [cm, secret('s')] });
    expect(out.items[0]).toEqual(cm);
    expectRedactedSecret(out.items[1]);
    expectNoLeak(text, SECRET_VALUES);
  });

  it('treats a kind-less object shaped like a Secret as one', () => {
    const { value } = masker.maskObject({ rows: [{ object: secret('x', false) }] });
    expectRedactedSecret((value as any).rows[0].object);
  });

  it('keeps a key named __proto__ a plain key', () => {
    const s = JSON.parse(`{"kind":"Secret","type":"Opaque","metadata":{"name":"p"},"data":{"__proto__":"${b64(PASSWORD)}"}}`);
    const { text, out } = maskJson(s);
    expect(Object.keys(out.data)).toEqual(['__proto__']);
    expect(text).toContain(`"__proto__":"${SECRET_MARKER_BASE64}"`);
    expectNoLeak(text, [PASSWORD]);
  });

  it('does not modify the object it is given', () => {
    const input = secret('db');
    const before = JSON.stringify(input);
    masker.maskObject(input);
    expect(JSON.stringify(input)).toBe(before);
  });
});

describe('Tables', () => {
  const table = (rows: unknown[]) => ({
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: '100' },
    columnDefinitions: [
      { name: 'Name', type: 'string', format: 'name' },
      { name: 'Type', type: 'string', format: '' },
      { name: 'Data', type: 'string', format: '' },
      { name: 'Age', type: 'string', format: '' },
    ],
    rows,
  });

  it('masks full row objects (includeObject=Object) and scans cells, except names', () => {
    const { text, out, counts } = maskJson(
      table([
        { cells: ['db', 'Opaque', 2, '5d'], object: secret('db') },
        { cells: ['owner-alice@example.com', `contact ${EMAIL}`, 0, '1d'], object: secret('other') },
      ]),
    );
    expectRedactedSecret(out.rows[0].object);
    expectRedactedSecret(out.rows[1].object);
    expect(out.rows[0].cells).toEqual(['db', 'Opaque', 2, '5d']);
    expect(out.rows[1].cells[0]).toBe('owner-alice@example.com'); // the name column identifies the row
    expect(out.rows[1].cells[1]).toBe('contact [redacted]');
    expect(counts).toEqual({ secret: 6, email: 1 });
    expectNoLeak(text, SECRET_VALUES);
  });

  it('masks the last-applied annotation of PartialObjectMetadata rows', () => {
    const applied = JSON.stringify(secret('db')) + '\n';
    const row = {
      cells: ['db', 'Opaque', 2, '5d'],
      object: {
        kind: 'PartialObjectMetadata',
        apiVersion: 'meta.k8s.io/v1',
        metadata: { name: 'db', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': applied } },
      },
    };
    const { text, out } = maskJson(table([row]));
    const annotation = out.rows[0].object.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'];
    expect(annotation.endsWith('\n')).toBe(true);
    expectRedactedSecret(JSON.parse(annotation));
    expectNoLeak(text, SECRET_VALUES);
  });
});

describe('content detectors', () => {
  it('masks an AWS key and an email in ConfigMap data, and in binaryData', () => {
    const cm = {
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: { name: 'app-config', namespace: 'prod', labels: { app: 'web' } },
      data: {
        'credentials.ini': `[default]\naws_access_key_id = ${AWS_KEY_ID}\n`,
        aws_secret_access_key: AWS_SECRET, // only recognisable by its key
        'owner.txt': `owner: ${EMAIL}, on call`,
        mode: 'fast',
      },
      binaryData: { 'contact.bin': b64(`mail ${EMAIL}`), 'blob.bin': Buffer.from([0xff, 0xfe, 0, 1]).toString('base64') },
    };
    const { text, out, counts } = maskJson(cm);
    expect(out.data).toEqual({
      'credentials.ini': '[default]\naws_access_key_id = [redacted]\n',
      aws_secret_access_key: '[redacted]',
      'owner.txt': 'owner: [redacted], on call',
      mode: 'fast',
    });
    expect(Buffer.from(out.binaryData['contact.bin'], 'base64').toString('utf8')).toBe('mail [redacted]');
    expect(out.binaryData['blob.bin']).toBe(cm.binaryData['blob.bin']);
    expect(out.metadata).toEqual(cm.metadata);
    expect(counts).toEqual({ aws_key: 2, email: 2 });
    expectNoLeak(text, [AWS_KEY_ID, AWS_SECRET, EMAIL]);
  });

  it('masks a credit card in Deployment env values, init containers included, by variable name', () => {
    const container = (name: string) => ({
      name,
      image: 'registry.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      env: [
        { name: 'TEST_CARD', value: CARD },
        { name: 'AWS_SECRET_ACCESS_KEY', value: AWS_SECRET },
        { name: 'LOG_LEVEL', value: 'debug' },
        { name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
      ],
    });
    const deployment = {
      kind: 'Deployment',
      apiVersion: 'apps/v1',
      metadata: { name: 'web', namespace: 'prod', generation: 3 },
      spec: { replicas: 2, template: { spec: { initContainers: [container('init')], containers: [container('web')] } } },
    };
    const { text, out, counts } = maskJson(deployment);
    for (const c of [...out.spec.template.spec.initContainers, ...out.spec.template.spec.containers]) {
      expect(c.env[0]).toEqual({ name: 'TEST_CARD', value: '[redacted]' });
      expect(c.env[1]).toEqual({ name: 'AWS_SECRET_ACCESS_KEY', value: '[redacted]' });
      expect(c.env.slice(2)).toEqual(container('x').env.slice(2));
      expect(c.image).toBe(container('x').image);
    }
    expect(out.spec.replicas).toBe(2);
    expect(counts).toEqual({ credit_card: 2, aws_key: 2 });
    expectNoLeak(text, [CARD, CARD.replace(/ /g, ''), AWS_SECRET]);
  });

  it('masks pod templates nested in CronJobs and card numbers stored as JSON numbers', () => {
    const cron = {
      kind: 'CronJob',
      apiVersion: 'batch/v1',
      metadata: { name: 'nightly' },
      spec: {
        jobTemplate: { spec: { template: { spec: { containers: [{ name: 'c', env: [{ name: 'N', value: `x ${EMAIL}` }] }] } } } },
        billing: { card: 4111111111111111, retries: 3 },
      },
    };
    const { text, out } = maskJson(cron);
    expect(out.spec.jobTemplate.spec.template.spec.containers[0].env[0].value).toBe('x [redacted]');
    expect(out.spec.billing).toEqual({ card: '[redacted]', retries: 3 });
    expectNoLeak(text, [EMAIL, '4111111111111111']);
  });

  it('masks a Secret held in a last-applied-configuration annotation', () => {
    const applied = { ...secret('db'), metadata: { name: 'db', annotations: { owner: EMAIL } } };
    const live = {
      ...secret('db'),
      metadata: {
        name: 'db',
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(applied) + '\n', owner: EMAIL },
      },
    };
    const { text, out, counts } = maskJson(live);
    expectRedactedSecret(out);
    const annotations = out.metadata.annotations;
    expect(annotations.owner).toBe('[redacted]');
    const inner = JSON.parse(annotations['kubectl.kubernetes.io/last-applied-configuration']);
    expectRedactedSecret(inner);
    expect(inner.metadata.annotations.owner).toBe('[redacted]');
    expect(counts).toEqual({ secret: 6, email: 2 });
    expectNoLeak(text, [...SECRET_VALUES, EMAIL]);
  });

  it('redacts a last-applied-configuration that does not parse, whole', () => {
    const broken = `{"kind":"Secret","data":{"password":"${b64(PASSWORD)}"`;
    const obj = { kind: 'ConfigMap', metadata: { name: 'c', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': broken } } };
    const { text, out, counts } = maskJson(obj);
    expect(out.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']).toBe(SECRET_MARKER);
    expect(counts).toEqual({ 'annotation:kubectl.kubernetes.io/last-applied-configuration': 1 });
    expectNoLeak(text, [PASSWORD]);
  });

  it('forwards an unchanged body as the very same buffer', () => {
    const body = json({ kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'nginx' }] } });
    const r = masker.maskBody('application/json', body);
    expect(r).toEqual({ body, counts: {} });
    expect('body' in r && r.body).toBe(body);
  });

  it('masks Status messages', () => {
    const status = { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `secrets is forbidden: User "${EMAIL}" cannot list`, code: 403 };
    const { out } = maskJson(status);
    expect(out.message).toBe('secrets is forbidden: User "[redacted]" cannot list');
  });

  it('hashes with the configured key', () => {
    const jwt = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"1"}').toString('base64url')}.c2lnbmF0dXJl`;
    const { out, counts } = maskJson({ kind: 'ConfigMap', data: { token: jwt } });
    expect(out.data.token).toMatch(/^h:[0-9a-f]{16}$/);
    expect(counts).toEqual({ jwt: 1 });
  });

  it('still redacts Secrets when the policy has no detectors', () => {
    const bare = new KubeResponseMasker({ detectors: [], hashKey: Buffer.alloc(0) });
    const { value, counts } = bare.maskObject({ kind: 'ConfigMap', data: { owner: EMAIL }, items: [secret('s')] });
    expect((value as any).data.owner).toBe(EMAIL);
    expectRedactedSecret((value as any).items[0]);
    expect(counts).toEqual({ secret: 3 });
  });
});

describe('watch streams', () => {
  const events = [
    { type: 'ADDED', object: secret('db') },
    { type: 'MODIFIED', object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'c', resourceVersion: '7' }, data: { owner: `é ${EMAIL}` } } },
    { type: 'BOOKMARK', object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '8', annotations: { 'k8s.io/initial-events-end': 'true' } } } },
    { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'too old resource version', code: 410 } },
    { type: 'DELETED', object: secret('gone') },
  ];
  const lines = events.map((e) => JSON.stringify(e));
  const stream = Buffer.from(lines.join('\n') + '\n', 'utf8');
  const expected = lines
    .map((l) => {
      const parsed = JSON.parse(l);
      const { value } = masker.maskObject(parsed);
      return (value === parsed ? l : JSON.stringify(value)) + '\n';
    })
    .join('');

  const run = (chunks: Buffer[]) => {
    const w = new WatchStreamMasker(masker);
    const out = chunks.flatMap((c) => w.push(c));
    out.push(...w.end());
    return { text: Buffer.concat(out).toString('utf8'), counts: w.counts, pieces: out };
  };

  it('masks each event and passes bookmarks and errors', () => {
    const { text, counts, pieces } = run([stream]);
    expect(text).toBe(expected);
    expect(pieces).toHaveLength(events.length);
    expect(pieces[2].toString()).toBe(lines[2] + '\n');
    expect(pieces[3].toString()).toBe(lines[3] + '\n');
    expect(counts).toEqual({ secret: 6, email: 1 });
    expectNoLeak(text, [...SECRET_VALUES, EMAIL]);
  });

  it('gives the same output however the stream is split', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(run([stream.subarray(0, cut), stream.subarray(cut)]).text).toBe(expected);
    }
    const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    expect(run(bytes).text).toBe(expected);
    for (let a = 0; a < stream.length; a += 7) {
      for (let b = a; b < stream.length; b += 13) {
        expect(run([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]).text).toBe(expected);
      }
    }
  });

  it('does not depend on the caller keeping its chunks intact', () => {
    const w = new WatchStreamMasker(masker);
    const chunk = Buffer.from(stream.subarray(0, 30));
    const out = w.push(chunk);
    chunk.fill(0x20);
    out.push(...w.push(stream.subarray(30)), ...w.end());
    expect(Buffer.concat(out).toString('utf8')).toBe(expected);
  });

  it('masks the same stream given whole to maskBody', () => {
    const r = masker.maskBody('application/json;stream=watch', stream);
    expect('body' in r && r.body.toString('utf8')).toBe(expected);
  });

  it('masks an unterminated last event at the end', () => {
    const w = new WatchStreamMasker(masker);
    expect(w.push(Buffer.from(lines[0]))).toEqual([]);
    const [last] = w.end();
    expect(last.toString()).toBe(expected.split('\n')[0]);
  });

  it('refuses an event over the bound, even when it arrives in pieces', () => {
    const w = new WatchStreamMasker(masker, { maxLineBytes: 64 });
    expect(w.push(Buffer.from('{"type":"ADDED",'))).toEqual([]);
    expect(() => w.push(Buffer.alloc(60, 0x61))).toThrow(UnmaskableResponseError);
    expect(() => new WatchStreamMasker(masker, { maxLineBytes: 64 }).push(Buffer.alloc(65, 0x61))).toThrow(
      /watch event is longer than 64 bytes/,
    );
    const fits = new WatchStreamMasker(masker, { maxLineBytes: 64 });
    expect(fits.push(Buffer.from(JSON.stringify({ type: 'ADDED', object: {} }) + '\n'))).toHaveLength(1);
  });

  it('refuses an event that is not JSON', () => {
    const w = new WatchStreamMasker(masker);
    expect(() => w.push(Buffer.from('{"type":"ADDED","object":\n'))).toThrow(/not valid JSON/);
    expect(masker.maskBody('application/json;stream=watch', Buffer.from('nope\n'))).toEqual({
      refuse: 'interlock: a watch event is not valid JSON and cannot be masked',
    });
  });
});

describe('maskBody content types', () => {
  it('refuses protobuf and YAML, and JSON that does not parse', () => {
    const body = Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0c]);
    for (const type of ['application/vnd.kubernetes.protobuf', 'application/vnd.kubernetes.protobuf;stream=watch', 'application/yaml', '']) {
      const r = masker.maskBody(type, body);
      expect(r).toHaveProperty('refuse');
      expect((r as { refuse: string }).refuse).toMatch(/^interlock: only JSON responses can be masked/);
    }
    expect(masker.maskBody('application/json', Buffer.from('{"kind":'))).toEqual({
      refuse: 'interlock: the response is not valid JSON and cannot be masked',
    });
  });

  it('accepts JSON with parameters and +json types, and passes empty bodies', () => {
    expect('body' in masker.maskBody('application/json; charset=utf-8', json(secret('s')))).toBe(true);
    expect('body' in masker.maskBody('Application/Merge-Patch+JSON', json({}))).toBe(true);
    const empty = Buffer.alloc(0);
    expect(masker.maskBody('application/vnd.kubernetes.protobuf', empty)).toEqual({ body: empty, counts: {} });
  });

  it('refuses JSON nested beyond any real object', () => {
    const deep = Buffer.from('['.repeat(5000) + ']'.repeat(5000));
    expect(masker.maskBody('application/json', deep)).toEqual({
      refuse: expect.stringMatching(/nests deeper than \d+ levels/),
    });
  });

  it('scans plain-text logs, whole or followed line by line', () => {
    const logs = `start\nuser ${EMAIL} logged in\ncard ${CARD}\n`;
    const r = masker.maskBody('text/plain; charset=utf-8', Buffer.from(logs));
    expect('body' in r && r.body.toString()).toBe('start\nuser [redacted] logged in\ncard [redacted]\n');
    const follow = new LogStreamMasker(masker);
    const bytes = Buffer.from(logs);
    const out = [...follow.push(bytes.subarray(0, 12)), ...follow.push(bytes.subarray(12)), ...follow.end()];
    expect(Buffer.concat(out).toString()).toBe('start\nuser [redacted] logged in\ncard [redacted]\n');
    expect(follow.counts).toEqual({ email: 1, credit_card: 1 });
  });
});

describe('negotiateJson', () => {
  it("keeps kubectl's JSON Table request as it is", () => {
    const accept = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
    expect(negotiateJson(accept)).toBe(accept);
  });

  it('turns protobuf entries into JSON ones, once', () => {
    expect(negotiateJson('application/vnd.kubernetes.protobuf,application/json')).toBe('application/json');
    expect(negotiateJson('application/vnd.kubernetes.protobuf')).toBe('application/json');
    expect(
      negotiateJson('application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json'),
    ).toBe('application/json;as=Table;v=v1;g=meta.k8s.io,application/json');
    expect(negotiateJson('application/vnd.kubernetes.protobuf;stream=watch')).toBe('application/json;stream=watch');
  });

  it('drops YAML and wildcards, and falls back to JSON', () => {
    expect(negotiateJson(undefined)).toBe('application/json');
    expect(negotiateJson('')).toBe('application/json');
    expect(negotiateJson('*/*')).toBe('application/json');
    expect(negotiateJson('application/yaml')).toBe('application/json');
    expect(negotiateJson('application/json, */*')).toBe('application/json');
    expect(negotiateJson('application/yaml, application/json; q=0.9')).toBe('application/json;q=0.9');
  });
});
