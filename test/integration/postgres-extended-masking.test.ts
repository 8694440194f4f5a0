/**
 * Masking on the extended protocol against a real PostgreSQL 15, through the real
 * PostgresSession (no redirect: a loopback listener hands each connection to a session).
 * Clients that describe a prepared statement once and then only Bind/Execute (pgjdbc after
 * prepareThreshold, asyncpg, postgres.js) get DataRows with no RowDescription in their
 * cycle: none of them may carry a masked value. Driven by node-postgres with named queries
 * and by a hand-written wire client (text and binary results, pipelines, errors, row
 * limits, Close, a Bind nobody ever described, SQL PREPARE and DECLARE).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { cstr, int16, message } from '../helpers/pg-wire.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { MessageFramer } from '../../src/protocols/postgres/framer.js';
import { readErrorFields } from '../../src/protocols/postgres/backend.js';
import { serializeStartup } from '../../src/protocols/postgres/startup.js';
import type { PostgresTargetDef } from '../../src/config/types.js';
import { compileMasking } from '../../src/masking/index.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { verdictJson } from '../../src/policy/rules.js';
import { NOT_RECORDED } from '../../src/recording/recorder.js';

const HOST = '127.0.0.41';
const SSN = '078-05-1120';
const SSN2 = '219-09-9999';
const CARD = '4111111111111111';
const EMAILS = ['ada@example.com', 'alan@example.org'];
const SECRETS = [SSN, SSN2, CARD, '4111 1111 1111 1111', ...EMAILS];

const canRun = process.getuid?.() === 0;
if (!canRun && process.env.INTERLOCK_REQUIRE_BPF === '1') throw new Error('integration tests need root (they start PostgreSQL as user postgres)');

const allowAll = {
  decideText: () => ({ decision: { action: 'allow' as const, message: 'ok' }, kinds: ['select'], auditJson: verdictJson(['select'], { action: 'allow', message: 'ok' }) }),
};

interface Msg { type: string; payload: Buffer }

/** A raw protocol client: what it sends is exactly what the test writes. */
class WireClient {
  private readonly sock: Socket;
  private readonly framer = new MessageFramer({ maxMessageBytes: 1 << 26 });
  private inbox: Msg[] = [];
  private waiter?: () => void;
  closed = false;

  constructor(port: number) {
    this.sock = connect(port, '127.0.0.1');
    this.sock.on('error', () => {});
    this.sock.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.sock.on('data', (d) => {
      this.framer.push(d);
      for (let f = this.framer.next(); f; f = this.framer.next()) this.inbox.push({ type: String.fromCharCode(f.type), payload: Buffer.from(f.payload) });
      this.waiter?.();
    });
  }

  static async loggedIn(port: number): Promise<WireClient> {
    const c = new WireClient(port);
    c.sock.write(serializeStartup({ user: 'agent', database: 'orders' }));
    await c.take(1);
    return c;
  }

  send(...msgs: Buffer[]): this {
    this.sock.write(Buffer.concat(msgs));
    return this;
  }

  /** Every message up to and including the `readies`-th ReadyForQuery from now (or what came before the socket closed). */
  async take(readies: number, timeoutMs = 5000): Promise<Msg[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let seen = 0;
      const end = this.inbox.findIndex((m) => m.type === 'Z' && ++seen === readies);
      if (end >= 0) return this.inbox.splice(0, end + 1);
      if (this.closed) return this.inbox.splice(0);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${readies} ReadyForQuery; got ${this.inbox.map((m) => m.type).join('')}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
  }

  /** Messages that arrive within `ms` (for a Flush, which has no ReadyForQuery). */
  async settle(ms = 300): Promise<Msg[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.inbox.splice(0);
  }

  end(): void {
    this.sock.end(message('X'));
  }
}

const types = (ms: Msg[]) => ms.map((m) => m.type).join('');
/** A DataRow's fields as raw bytes (null for NULL). */
function fields(payload: Buffer): (Buffer | null)[] {
  const n = payload.readInt16BE(0);
  const out: (Buffer | null)[] = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = payload.readInt32BE(at);
    at += 4;
    out.push(len < 0 ? null : payload.subarray(at, at + len));
    at += Math.max(len, 0);
  }
  return out;
}
const dataRows = (ms: Msg[]) => ms.filter((m) => m.type === 'D').map((m) => fields(m.payload));
const textRows = (ms: Msg[]) => dataRows(ms).map((r) => r.map((f) => (f === null ? null : f.toString('utf8'))));
const errors = (ms: Msg[]) => ms.filter((m) => m.type === 'E').map((m) => readErrorFields(m.payload));
function expectNoSecret(ms: Msg[]): void {
  const all = Buffer.concat(ms.map((m) => m.payload)).toString('latin1');
  for (const s of SECRETS) expect(all).not.toContain(s);
  // a binary bigint card number
  const card = Buffer.alloc(8);
  card.writeBigInt64BE(BigInt(CARD));
  expect(Buffer.concat(ms.map((m) => m.payload)).includes(card)).toBe(false);
}

/** A Bind of `statement` into the unnamed portal, text parameters, these result formats. */
function bind(statement: string, params: string[] = [], resultFormats: number[] = [], portal = ''): Buffer {
  return message('B', cstr(portal), cstr(statement), int16(0), int16(params.length),
    ...params.map((p) => {
      const b = Buffer.from(p);
      const len = Buffer.alloc(4);
      len.writeInt32BE(b.length);
      return Buffer.concat([len, b]);
    }),
    int16(resultFormats.length), ...resultFormats.map(int16));
}
const parse = (name: string, text: string) => serialize.parse({ name, text, types: [] });
const describeS = (name: string) => serialize.describe({ type: 'S', name });
const execute = (portal = '', rows = 0) => serialize.execute({ portal, rows });
const sync = () => serialize.sync();

describe.skipIf(!canRun)('masking on the extended protocol, against a real PostgreSQL', () => {
  let root: string;
  let pgServer: TestPostgres;
  let server: Server;
  let port: number;
  const masked: unknown[] = [];
  const clients: { end(): unknown }[] = [];
  let direct: pg.Client;

  const SELECT = 'select id, name, ssn, email, note, n from customers where id = $1';

  beforeAll(async () => {
    await initAnalysis();
    root = mkdtempSync('/tmp/interlock-xproto-');
    chmodSync(root, 0o755);
    pgServer = startPostgres(join(root, 'pg'), { host: HOST });
    // a dropped column first: attnums have a gap, so a masked column is not found by position
    pgServer.superSql(`SET ROLE app;
      ALTER TABLE customers ADD COLUMN gone text; ALTER TABLE customers DROP COLUMN gone;
      ALTER TABLE customers ADD COLUMN ssn text, ADD COLUMN note text, ADD COLUMN n bigint;
      UPDATE customers SET ssn = '${SSN}', note = 'card 4111 1111 1111 1111', n = ${CARD} WHERE id = 1;
      UPDATE customers SET ssn = '${SSN2}', note = 'no card', n = 42 WHERE id = 2;`);
    writeFileSync(join(root, 'secret'), pgServer.password);
    const target: PostgresTargetDef = {
      name: 'real', protocol: 'postgres', address: { host: HOST, port: 5432 },
      upstream: { host: HOST, port: pgServer.port, user: 'app', database: 'orders', password: { file: join(root, 'secret') } },
    };
    // redefine() is allowed by name so that a statement redefined inside the server can be tried at all
    const masker = compileMasking([{ columns: ['ssn', 'customers.email'], strategy: 'redact' }, { detectors: ['credit_card'], strategy: 'redact' }, { allowFunctions: ['public.redefine'], strategy: 'redact' }]);
    server = createServer((client) => {
      new PostgresSession({
        client, target, judge: allowAll, masker,
        hooks: {
          audit: (event, fields) => event === 'masked' && masked.push(fields),
          auditSerialized: () => {},
          startRecording: () => NOT_RECORDED,
          cancel: () => {},
          registerCancelKey: () => ({ processId: 1, secretKey: 2 }),
          closed: () => {},
        },
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    // the truth, read without the proxy, every value as the server sent it
    direct = new pg.Client({ host: HOST, port: pgServer.port, user: 'app', password: pgServer.password, database: 'orders', types: { getTypeParser: () => (v: unknown) => v } });
    await direct.connect();
  });

  afterAll(async () => {
    for (const c of clients) await c.end();
    await direct?.end();
    server?.close();
    pgServer?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  async function wire(): Promise<WireClient> {
    const c = await WireClient.loggedIn(port);
    clients.push(c);
    return c;
  }

  /** id and name of customer `id` as the server sends them (text) */
  async function truth(id: number): Promise<string[]> {
    const r = await direct.query({ text: 'select id, name from customers where id = $1', values: [id], rowMode: 'array' });
    return r.rows[0] as string[];
  }

  it('node-postgres: a named query run again and again never shows a masked value; the other columns are as stored', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'orders' });
    await client.connect();
    clients.push(client);
    for (let i = 0; i < 5; i++) {
      for (const id of [1, 2]) {
        const r = await client.query({ name: 'by-id', text: SELECT, values: [id], rowMode: 'array' });
        expect(r.rows).toHaveLength(1);
        const [gotId, name, ssn, email, note] = r.rows[0];
        const [wantId, wantName] = await truth(id);
        expect([String(gotId), name]).toEqual([wantId, wantName]);
        expect(ssn).toBe('[redacted]');
        expect(email).toBe('[redacted]');
        expect(note).toBe(id === 1 ? 'card [redacted]' : 'no card');
      }
      // an alias does not hide the column: the server names its table and attnum
      const alias = await client.query({ name: 'alias', text: 'select ssn as x, email as y, name from customers order by id', rowMode: 'array' });
      expect(JSON.stringify(alias.rows)).not.toMatch(/078-05|219-09|@example/);
      expect(alias.rows.map((r) => r[2])).toEqual(['Ada Lovelace', 'Alan Turing']);
    }
    expect(masked.length).toBeGreaterThan(0);
  });

  it('Parse + Describe(Statement) once, then only Bind/Execute/Sync, in text and in binary', async () => {
    const c = await wire();
    c.send(parse('S_1', SELECT), describeS('S_1'), sync());
    expect(types(await c.take(1))).toBe('1tTZ');
    for (let i = 0; i < 4; i++) {
      for (const id of [1, 2]) {
        c.send(bind('S_1', [String(id)]), execute(), sync());
        const text = await c.take(1);
        expect(types(text)).toBe('2DCZ'); // no RowDescription in this cycle
        expectNoSecret(text);
        const [row] = dataRows(text);
        expect(row.slice(0, 2).map(String)).toEqual((await truth(id)).map(String));
        expect(row.slice(2, 5).map(String)).toEqual(['[redacted]', '[redacted]', id === 1 ? 'card [redacted]' : 'no card']);
        expect(row[5]?.toString()).toBe(id === 1 ? '[redacted]' : '42');

        c.send(bind('S_1', [String(id)], [1]), execute(), sync());
        const binary = await c.take(1);
        expect(types(binary)).toBe('2DCZ');
        expectNoSecret(binary);
        const [brow] = dataRows(binary);
        // int4 and text in their binary forms, byte for byte
        const [wantId, wantName] = await truth(id);
        const int4 = Buffer.alloc(4);
        int4.writeInt32BE(Number(wantId));
        expect(brow[0]).toEqual(int4);
        expect(brow[1]).toEqual(Buffer.from(wantName as string));
        // a card number in a bigint cannot be rewritten in its binary form: it is NULL
        if (id === 1) expect(brow[5]).toBeNull();
        else expect(brow[5]!.readBigInt64BE(0)).toBe(42n);
      }
    }
    // one code per column: text id, binary for the rest
    c.send(bind('S_1', ['1'], [0, 1, 1, 1, 1, 1]), execute(), sync());
    const mixed = await c.take(1);
    expectNoSecret(mixed);
    expect(dataRows(mixed)[0][0]!.toString()).toBe('1');
    c.end();
  });

  it('pipelined cycles before any answer, with an error in one of them and one inside a cycle', async () => {
    const c = await wire();
    c.send(parse('S_p', SELECT), describeS('S_p'), sync());
    await c.take(1);
    const ok = (id: number) => [bind('S_p', [String(id)]), execute(), sync()];
    c.send(
      ...ok(1), ...ok(2),
      parse('broken', 'select ssn frm customers'), bind('broken'), execute(), sync(),
      ...ok(1),
      // one cycle: a row, an error, then what the server skips
      bind('S_p', ['2']), execute(), bind('missing'), execute(), bind('S_p', ['1']), execute(), sync(),
      ...Array.from({ length: 20 }, (_, i) => ok(1 + (i % 2))).flat(),
    );
    const got = await c.take(25);
    expectNoSecret(got);
    const cycles = types(got).split(/(?<=Z)/);
    expect(cycles.slice(0, 6)).toEqual(['2DCZ', '2DCZ', 'EZ', '2DCZ', '2DCEZ', '2DCZ']);
    expect(cycles.slice(5).every((t) => t === '2DCZ')).toBe(true);
    // the broken statement is refused by interlock (it cannot be checked), the missing portal by the server
    expect(errors(got).map((e) => e.C)).toEqual(['42501', '26000']);
    expect(textRows(got).map((r) => r[2])).toEqual(Array(25 - 1).fill('[redacted]'));
    c.end();
  });

  it('Execute with a row limit: PortalSuspended, then the rest; with Flush and no Sync in between', async () => {
    const c = await wire();
    c.send(parse('S_all', 'select id, ssn, email from customers order by id'), describeS('S_all'), sync());
    await c.take(1);
    c.send(bind('S_all', [], [], 'cur'), execute('cur', 1), serialize.flush());
    const first = await c.settle();
    expect(types(first)).toBe('2Ds');
    c.send(execute('cur', 1), serialize.flush());
    const second = await c.settle();
    expect(types(second)).toBe('Ds');
    c.send(execute('cur', 0), sync());
    const rest = await c.take(1);
    expect(types(rest)).toBe('CZ');
    const all = [...first, ...second, ...rest];
    expectNoSecret(all);
    expect(textRows(all)).toEqual([['1', '[redacted]', '[redacted]'], ['2', '[redacted]', '[redacted]']]);
    c.end();
  });

  it('a Bind nobody ever described: our Describe is answered, and the client sees only what it asked for', async () => {
    const c = await wire();
    c.send(parse('nd', SELECT), sync());
    expect(types(await c.take(1))).toBe('1Z');
    c.send(bind('nd', ['1']), execute(), sync());
    const named = await c.take(1);
    expect(types(named)).toBe('2DCZ');
    expectNoSecret(named);
    expect(textRows(named)[0].slice(1, 4)).toEqual(['Ada Lovelace', '[redacted]', '[redacted]']);
    // unnamed, all in one go, binary
    c.send(parse('', 'select email, ssn as x, id from customers where id = 2'), bind('', [], [1]), execute(), sync());
    const unnamed = await c.take(1);
    expect(types(unnamed)).toBe('12DCZ');
    expectNoSecret(unnamed);
    // a statement without rows: our Describe gets NoData, which is not passed on either
    c.send(parse('', 'update customers set name = name where id = 0'), bind(''), execute(), sync());
    expect(types(await c.take(1))).toBe('12CZ');
    c.end();
  });

  it('Close forgets the statement; SQL PREPARE and DECLARE are described before their rows go out', async () => {
    const c = await wire();
    c.send(parse('S_c', SELECT), describeS('S_c'), sync(), serialize.close({ type: 'S', name: 'S_c' }), sync(), bind('S_c', ['1']), execute(), sync());
    const closed = await c.take(3);
    expect(types(closed)).toBe('1tTZ3ZEZ');
    expect(errors(closed)[0].C).toBe('26000');

    c.send(serialize.query('PREPARE sneaky AS select ssn as x, email as y, name from customers order by id'));
    await c.take(1);
    c.send(bind('sneaky'), execute(), sync());
    const sneaky = await c.take(1);
    expect(types(sneaky)).toBe('2DDCZ');
    expectNoSecret(sneaky);
    expect(textRows(sneaky).map((r) => r[2])).toEqual(['Ada Lovelace', 'Alan Turing']);

    c.send(serialize.query('BEGIN; DECLARE cur CURSOR FOR select ssn, note from customers order by id'));
    await c.take(1);
    c.send(execute('cur', 1), sync());
    const fetched = await c.take(1);
    expect(types(fetched)).toBe('DsZ');
    expectNoSecret(fetched);
    c.send(serialize.query('COMMIT'));
    await c.take(1);
    c.end();
  });

  it('a statement redefined behind our back (PREPARE inside a function) whose rows do not fit its description: withheld, 42501, in step', async () => {
    pgServer.superSql(`SET ROLE app; CREATE OR REPLACE FUNCTION redefine() RETURNS void LANGUAGE plpgsql AS $$
      BEGIN EXECUTE 'DEALLOCATE "S_r"'; EXECUTE 'PREPARE "S_r" AS select ssn, email from customers order by id'; END $$;`);
    const c = await wire();
    c.send(parse('S_r', 'select id from customers order by id'), describeS('S_r'), sync());
    expect(types(await c.take(1))).toBe('1tTZ');
    c.send(serialize.query('select redefine()'));
    expect(errors(await c.take(1))).toEqual([]);
    // the next message after the Execute is answered by the server, but the client was told it was skipped
    c.send(bind('S_r'), execute(), bind('S_r'), sync(), serialize.query('select 1'));
    const got = await c.take(2);
    expect(types(got)).toBe('2EZTDCZ');
    expect(errors(got)[0].C).toBe('42501');
    expectNoSecret(got);
    c.end();
  });
});
