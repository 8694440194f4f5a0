/**
 * The extended protocol as result masking follows it (ResultMasker + ExtendedProtocol), fed
 * exact client and server messages: rows of an Execute are planned from its portal's or its
 * statement's description, a Describe of ours fills the gap, errors skip to Sync, and rows
 * nothing describes never pass as they came.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, DataRowMessage, ErrorMessage } from 'pg-protocol/dist/messages.js';
import { MessageFramer, ProtocolError, type Frame } from '../../src/protocols/postgres/framer.js';
import { ResultMasker, type OutputSources } from '../../src/protocols/postgres/results.js';
import { MAX_PORTALS, MAX_STATEMENTS } from '../../src/protocols/postgres/extended.js';
import type { CatalogTable } from '../../src/protocols/postgres/catalog.js';
import { compileMasking, REDACTED as R, type Masker } from '../../src/masking/index.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { cstr, int16, int32, message } from '../helpers/pg-wire.js';

const SSN = '078-05-1120';
const CARD = '4111 1111 1111 1111';
const EMAIL = 'ada@example.com';
const masker = compileMasking([
  { columns: ['ssn', 'customers.email'], strategy: 'redact' },
  { detectors: ['credit_card'], strategy: 'redact' },
]);
const detectorsOnly = compileMasking([{ detectors: ['credit_card'], strategy: 'redact' }]);

const CUSTOMERS_OID = 16384;
const tables = new Map<number, CatalogTable>([
  [CUSTOMERS_OID, { name: 'public.customers', schema: 'public', table: 'customers', columns: new Map([[1, 'id'], [2, 'ssn'], [3, 'email'], [4, 'note']]) }],
]);

interface Col { name: string; tableOid?: number; attnum?: number; typeOid?: number; format?: number }
const TEXT = 25;
const INT8 = 20;

function rowDescription(cols: Col[]): Buffer {
  return message('T', int16(cols.length), ...cols.map((c) => {
    const fixed = Buffer.alloc(18);
    fixed.writeUInt32BE(c.tableOid ?? 0, 0);
    fixed.writeInt16BE(c.attnum ?? 0, 4);
    fixed.writeUInt32BE(c.typeOid ?? TEXT, 6);
    fixed.writeInt16BE(-1, 10);
    fixed.writeInt16BE(c.format ?? 0, 16);
    return Buffer.concat([cstr(c.name), fixed]);
  }));
}
function dataRow(values: (string | Buffer | null)[]): Buffer {
  return message('D', int16(values.length), ...values.map((v) => {
    if (v === null) return int32(-1);
    const b = Buffer.isBuffer(v) ? v : Buffer.from(v);
    return Buffer.concat([int32(b.length), b]);
  }));
}
const int8 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const parseComplete = () => message('1');
const bindComplete = () => message('2');
const closeComplete = () => message('3');
const noData = () => message('n');
const parameterDescription = () => message('t', int16(0));
const portalSuspended = () => message('s');
const commandComplete = (tag: string) => message('C', cstr(tag));
const ready = (status = 'I') => message('Z', Buffer.from(status));
const serverError = (code: string, text: string) => message('E', Buffer.from('S'), cstr('ERROR'), Buffer.from('C'), cstr(code), Buffer.from('M'), cstr(text), Buffer.from([0]));

/** A Bind with one result-format code per column. */
function bindWithFormats(statement: string, formats: number[], portal = ''): Buffer {
  return message('B', cstr(portal), cstr(statement), int16(0), int16(0), int16(formats.length), ...formats.map(int16));
}

function frames(wire: Buffer): Frame[] {
  const f = new MessageFramer();
  f.push(wire);
  const out: Frame[] = [];
  for (let m = f.next(); m; m = f.next()) out.push(m);
  return out;
}

/** The proxy's two directions around one ResultMasker. */
class Relay {
  readonly results: ResultMasker;
  /** every Describe the proxy put before an Execute */
  readonly inserted: Buffer[] = [];
  constructor(m: Masker = masker, outputSources?: OutputSources, readonly sqls: string[] = []) {
    this.results = new ResultMasker(m, tables, () => {}, outputSources && ((sql, index) => (this.sqls.push(`${index}: ${sql}`), outputSources(sql, index))));
  }
  send(...msgs: Buffer[]): this {
    for (const m of msgs) {
      const before = this.results.sent(m);
      if (before) this.inserted.push(before);
    }
    return this;
  }
  /** What the client receives for these server messages. */
  reply(...msgs: Buffer[]): BackendMessage[] {
    const out = Buffer.concat(frames(Buffer.concat(msgs)).map((f) => this.results.frame(f)));
    const parsed: BackendMessage[] = [];
    new Parser().parse(out, (m) => parsed.push(m));
    return parsed;
  }
}

const names = (ms: BackendMessage[]) => ms.map((m) => m.name);
const rows = (ms: BackendMessage[]) => ms.filter((m): m is DataRowMessage => m.name === 'dataRow').map((m) => m.fields);
const wire = (ms: BackendMessage[]) => JSON.stringify(ms);

const customerCols: Col[] = [
  { name: 'id', tableOid: CUSTOMERS_OID, attnum: 1, typeOid: 23 },
  { name: 'ssn', tableOid: CUSTOMERS_OID, attnum: 2 },
  { name: 'note', tableOid: CUSTOMERS_OID, attnum: 4 },
];

/** A named statement prepared and described once, as pgjdbc does after prepareThreshold. */
function prepared(r: Relay, name = 'S_1', cols = customerCols, sql = 'select id, ssn, note from customers where id = $1'): void {
  r.send(serialize.parse({ name, text: sql, types: [] }), serialize.describe({ type: 'S', name }), serialize.sync());
  expect(names(r.reply(parseComplete(), parameterDescription(), rowDescription(cols), ready()))).toEqual([
    'parseComplete', 'parameterDescription', 'rowDescription', 'readyForQuery',
  ]);
}

describe('rows of an Execute are planned from what describes its portal', () => {
  it('a statement described once: every later Bind/Execute/Sync is masked, and no Describe is added', () => {
    const r = new Relay();
    prepared(r);
    for (let i = 0; i < 3; i++) {
      r.send(serialize.bind({ statement: 'S_1', values: ['1'] }), serialize.execute({}), serialize.sync());
      const got = r.reply(bindComplete(), dataRow(['1', SSN, `paid with ${CARD}`]), commandComplete('SELECT 1'), ready());
      expect(names(got)).toEqual(['bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
      expect(rows(got)).toEqual([['1', R, `paid with ${R}`]]);
    }
    expect(r.inserted).toEqual([]);
  });

  it("the Bind's result formats apply to the statement's description (which says text for every column)", () => {
    const r = new Relay();
    prepared(r, 'S_2', [{ name: 'id', typeOid: 23 }, { name: 'n', typeOid: INT8 }], 'select id, n from cards');
    // binary for every column: the bigint card number is masked as a number (NULL), not read as text
    r.send(serialize.bind({ statement: 'S_2', binary: true }), serialize.execute({}), serialize.sync());
    const binary = r.reply(bindComplete(), dataRow([int32(7), int8(4111111111111111n)]), commandComplete('SELECT 1'), ready());
    expect(rows(binary)[0][1]).toBeNull();
    // one code per column: text id, binary n
    r.send(bindWithFormats('S_2', [0, 1]), serialize.execute({}), serialize.sync());
    const mixed = r.reply(bindComplete(), dataRow(['7', int8(4111111111111111n)]), commandComplete('SELECT 1'), ready());
    expect(rows(mixed)[0]).toEqual(['7', null]);
    // text: the digits are seen as text and redacted in place
    r.send(serialize.bind({ statement: 'S_2' }), serialize.execute({}), serialize.sync());
    const text = r.reply(bindComplete(), dataRow(['7', '4111111111111111']), commandComplete('SELECT 1'), ready());
    expect(rows(text)[0]).toEqual(['7', R]);
    expect(r.inserted).toEqual([]);
  });

  it("a portal nobody described gets our Describe before its Execute, and the client never sees the answer", () => {
    const r = new Relay();
    r.send(serialize.parse({ name: 'q', text: 'select ssn, note from customers', types: [] }),
      serialize.bind({ statement: 'q' }), serialize.execute({}), serialize.sync());
    expect(r.inserted).toEqual([serialize.describe({ type: 'P', name: '' })]);
    const got = r.reply(parseComplete(), bindComplete(), rowDescription(customerCols.slice(1)), dataRow([SSN, 'ok']), commandComplete('SELECT 1'), ready());
    expect(names(got)).toEqual(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(rows(got)).toEqual([[R, 'ok']]);
  });

  it('our Describe answered by NoData (a statement without rows) is dropped as well', () => {
    const r = new Relay();
    r.send(serialize.parse({ text: 'insert into t values (1)', types: [] }), serialize.bind({}), serialize.execute({}), serialize.sync());
    expect(r.inserted.length).toBe(1);
    expect(names(r.reply(parseComplete(), bindComplete(), noData(), commandComplete('INSERT 0 1'), ready()))).toEqual([
      'parseComplete', 'bindComplete', 'commandComplete', 'readyForQuery',
    ]);
  });

  it("the client's own Describe(Portal) in the cycle is enough: nothing is added", () => {
    const r = new Relay();
    r.send(serialize.parse({ text: 'select ssn from customers', types: [] }), serialize.bind({}), serialize.describe({ type: 'P' }),
      serialize.execute({}), serialize.sync());
    expect(r.inserted).toEqual([]);
    const got = r.reply(parseComplete(), bindComplete(), rowDescription([customerCols[1]]), dataRow([SSN]), commandComplete('SELECT 1'), ready());
    expect(names(got)).toContain('rowDescription');
    expect(rows(got)).toEqual([[R]]);
  });

  it('a statement described in an earlier cycle whose answer has not come yet is not trusted: its Execute is described', () => {
    const r = new Relay();
    // pipelined: the Describe of S_9 is in flight when its Bind/Execute is sent in the next cycle
    r.send(serialize.parse({ name: 'S_9', text: 'select ssn from customers', types: [] }), serialize.describe({ type: 'S', name: 'S_9' }), serialize.sync(),
      serialize.bind({ statement: 'S_9' }), serialize.execute({}), serialize.sync());
    expect(r.inserted.length).toBe(1);
    const got = r.reply(parseComplete(), parameterDescription(), rowDescription([customerCols[1]]), ready(),
      bindComplete(), rowDescription([customerCols[1]]), dataRow([SSN]), commandComplete('SELECT 1'), ready());
    expect(names(got)).toEqual(['parseComplete', 'parameterDescription', 'rowDescription', 'readyForQuery', 'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(wire(got)).not.toContain(SSN);
  });

  it('a portal run with a row limit keeps its plan across PortalSuspended; once anything else ran, it is described again', () => {
    const r = new Relay();
    prepared(r);
    r.send(serialize.bind({ portal: 'c1', statement: 'S_1' }), serialize.execute({ portal: 'c1', rows: 1 }), serialize.flush());
    let got = r.reply(bindComplete(), dataRow(['1', SSN, 'a']), portalSuspended());
    expect(names(got)).toEqual(['bindComplete', 'dataRow', 'portalSuspended']);
    r.send(serialize.execute({ portal: 'c1', rows: 1 }), serialize.flush());
    got = r.reply(dataRow(['2', SSN, 'b']), portalSuspended());
    expect(rows(got)).toEqual([['2', R, 'b']]);
    expect(r.inserted).toEqual([]);
    // another statement ran in between (it could have closed c1 and opened another cursor of that name)
    r.send(serialize.query('select 1'));
    r.reply(rowDescription([{ name: '?column?', typeOid: 23 }]), dataRow(['1']), commandComplete('SELECT 1'), ready('T'));
    r.send(serialize.execute({ portal: 'c1' }), serialize.sync());
    expect(r.inserted).toEqual([serialize.describe({ type: 'P', name: 'c1' })]);
    got = r.reply(rowDescription(customerCols), dataRow(['3', SSN, 'c']), commandComplete('SELECT 3'), ready());
    expect(names(got)).toEqual(['dataRow', 'commandComplete', 'readyForQuery']);
    expect(rows(got)).toEqual([['3', R, 'c']]);
  });

  it('a cursor opened by SQL (DECLARE) and run by Execute is described by us', () => {
    const r = new Relay();
    r.send(serialize.query('declare cur cursor with hold for select ssn from customers'));
    r.reply(commandComplete('DECLARE CURSOR'), ready());
    r.send(serialize.execute({ portal: 'cur' }), serialize.sync());
    expect(r.inserted).toEqual([serialize.describe({ type: 'P', name: 'cur' })]);
    const got = r.reply(rowDescription([{ name: 'ssn', tableOid: CUSTOMERS_OID, attnum: 2 }]), dataRow([SSN]), commandComplete('FETCH 1'), ready());
    expect(rows(got)).toEqual([[R]]);
  });
});

describe('errors, Close and DISCARD keep the book-keeping true', () => {
  it("after an error the server skips to Sync: a failed Parse's statement is unknown, and is described when used", () => {
    const r = new Relay();
    r.send(serialize.parse({ name: 'bad', text: 'select ssn frm customers', types: [] }), serialize.describe({ type: 'S', name: 'bad' }),
      serialize.bind({ statement: 'bad' }), serialize.execute({}), serialize.sync());
    expect(r.inserted).toEqual([]); // described in this cycle: if that fails, the Execute is skipped with it
    const got = r.reply(serverError('42601', 'syntax error at or near "frm"'), ready());
    expect(names(got)).toEqual(['error', 'readyForQuery']);
    r.send(serialize.bind({ statement: 'bad' }), serialize.execute({}), serialize.sync());
    expect(r.inserted.length).toBe(1);
  });

  it('an error that comes before the rest of its cycle is sent: what follows up to Sync is ignored by the server, and by us', () => {
    const r = new Relay();
    r.send(serialize.parse({ name: 'x', text: 'selec bad', types: [] }), serialize.flush());
    expect(names(r.reply(serverError('42601', 'syntax error')))).toEqual(['error']);
    r.send(serialize.bind({ statement: 'x' }), serialize.execute({}), serialize.close({ type: 'S', name: 'x' }), serialize.sync());
    expect(r.inserted).toEqual([]); // the server will not run that Execute: nothing to describe
    expect(names(r.reply(ready()))).toEqual(['readyForQuery']);
    expect(r.results.sent(serialize.query('select 1'))).toBeUndefined();
    expect(names(r.reply(rowDescription([{ name: 'x' }]), dataRow(['1']), commandComplete('SELECT 1'), ready()))).toEqual([
      'rowDescription', 'dataRow', 'commandComplete', 'readyForQuery',
    ]);
  });

  it("a Parse that fails because the name is taken leaves the name to the statement that holds it", () => {
    const r = new Relay();
    prepared(r);
    r.send(serialize.parse({ name: 'S_1', text: 'select 1', types: [] }), serialize.sync());
    r.reply(serverError('42P05', 'prepared statement "S_1" already exists'), ready());
    r.send(serialize.bind({ statement: 'S_1' }), serialize.execute({}), serialize.sync());
    expect(r.inserted).toEqual([]);
    expect(rows(r.reply(bindComplete(), dataRow(['1', SSN, 'x']), commandComplete('SELECT 1'), ready()))).toEqual([['1', R, 'x']]);
  });

  it('pipelined cycles with an error in the middle one: the cycles around it are answered in step', () => {
    const r = new Relay();
    prepared(r);
    const cycle = () => [serialize.bind({ statement: 'S_1' }), serialize.execute({}), serialize.sync()];
    r.send(...cycle(), serialize.bind({ statement: 'missing' }), serialize.execute({}), serialize.sync(), ...cycle());
    expect(r.inserted.length).toBe(1); // only the Execute of the unknown statement's portal
    const got = r.reply(
      bindComplete(), dataRow(['1', SSN, 'a']), commandComplete('SELECT 1'), ready(),
      serverError('26000', 'prepared statement "missing" does not exist'), ready(),
      bindComplete(), dataRow(['2', SSN, 'b']), commandComplete('SELECT 1'), ready(),
    );
    expect(names(got)).toEqual(['bindComplete', 'dataRow', 'commandComplete', 'readyForQuery', 'error', 'readyForQuery',
      'bindComplete', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(wire(got)).not.toContain(SSN);
  });

  it('Close of a statement, and DEALLOCATE ALL or DISCARD ALL, forget names: their next Execute is described', () => {
    const r = new Relay();
    prepared(r);
    r.send(serialize.close({ type: 'S', name: 'S_1' }), serialize.sync());
    r.reply(closeComplete(), ready());
    r.send(serialize.bind({ statement: 'S_1' }), serialize.execute({}), serialize.sync());
    expect(r.inserted.length).toBe(1);
    r.reply(serverError('26000', 'prepared statement "S_1" does not exist'), ready());

    for (const sql of ['DEALLOCATE ALL', 'discard all']) {
      const again = new Relay();
      prepared(again);
      again.send(serialize.query(sql));
      again.reply(commandComplete(sql.toUpperCase()), ready());
      again.send(serialize.bind({ statement: 'S_1' }), serialize.execute({}), serialize.sync());
      expect(again.inserted.length).toBe(1);
      expect(again.results.sent(serialize.sync())).toBeUndefined();
    }
  });

  it('a server answer out of turn ends the session rather than guessing', () => {
    const r = new Relay();
    r.send(serialize.parse({ text: 'select 1', types: [] }), serialize.sync());
    expect(() => r.reply(bindComplete())).toThrow(ProtocolError);
  });
});

describe('rows nothing describes are never passed as they came', () => {
  /** rows whose field count is not the description's: the statement changed behind our back */
  function mismatched(m: Masker): BackendMessage[] {
    const r = new Relay(m);
    prepared(r);
    r.send(serialize.bind({ statement: 'S_1' }), serialize.execute({}), serialize.parse({ text: 'select 2', types: [] }), serialize.sync());
    return r.reply(bindComplete(), dataRow([SSN, `card ${CARD}`]), commandComplete('SELECT 1'), parseComplete(), ready());
  }

  it('with column rules: the rows are withheld, the result ends in 42501, and the client stays in step up to Sync', () => {
    const got = mismatched(masker);
    expect(names(got)).toEqual(['bindComplete', 'error', 'readyForQuery']);
    expect((got[1] as ErrorMessage).code).toBe('42501');
    expect(wire(got)).not.toContain(SSN);
  });

  it('with detectors only: every detector runs on every field', () => {
    const got = mismatched(detectorsOnly);
    expect(rows(got)).toEqual([[SSN, `card ${R}`]]);
  });

  it('a DataRow with no description at all is withheld too', () => {
    const r = new Relay();
    const got = r.reply(dataRow([SSN]), commandComplete('SELECT 1'), ready());
    expect(names(got)).toEqual(['error', 'readyForQuery']);
  });
});

describe('bounds', () => {
  it(`a session may hold ${MAX_STATEMENTS} named statements; the next new name is refused, the unnamed one never`, () => {
    const r = new Relay();
    for (let i = 0; i < MAX_STATEMENTS; i++) {
      expect(r.results.refusesParse(`s${i}`, 'select 1')).toBeUndefined();
      r.send(serialize.parse({ name: `s${i}`, text: 'select 1', types: [] }));
    }
    expect(r.results.refusesParse('one-more', 'select 1')).toMatch(/prepared statements/);
    expect(r.results.refusesParse('', 'select 1')).toBeUndefined();
    expect(r.results.refusesParse('s7', 'select 1')).toBeUndefined(); // a name it holds: the server refuses the duplicate
    r.send(serialize.close({ type: 'S', name: 's7' }));
    expect(r.results.refusesParse('one-more', 'select 1')).toBeUndefined();
  });

  it(`over ${MAX_PORTALS} open portals end the session`, () => {
    const r = new Relay();
    for (let i = 0; i < MAX_PORTALS; i++) r.send(serialize.bind({ portal: `p${i}` }));
    expect(() => r.send(serialize.bind({ portal: 'one-more' }))).toThrow(/portals/);
    expect(() => r.send(serialize.bind({ portal: 'p3' }))).not.toThrow(); // rebinding a name it holds
  });

  it('portals close with their transaction: ReadyForQuery outside one forgets those bound before it', () => {
    const r = new Relay();
    prepared(r);
    for (let i = 0; i < MAX_PORTALS; i++) r.send(serialize.bind({ portal: `p${i}`, statement: 'S_1' }));
    r.send(serialize.sync());
    r.reply(...Array.from({ length: MAX_PORTALS }, bindComplete), ready('I'));
    expect(() => r.send(serialize.bind({ portal: 'next', statement: 'S_1' }))).not.toThrow();
  });
});

describe('the statement behind each result set (for lineage)', () => {
  beforeAll(() => initAnalysis());

  const MASKED_SOURCES = [[{ schema: 'public', table: 'customers', column: 'email' }]];
  // statement `index` of the text, as the lineage judge reads it
  const lineage: OutputSources = (sql, index) => (sql.split(';')[index]?.includes('from masked_view') ? MASKED_SOURCES : undefined);
  const cols: Col[] = [{ name: 'a' }];

  it('a simple query of several statements: each result set is planned with its own statement', () => {
    const r = new Relay(masker, lineage);
    r.send(serialize.query('select a from plain_view; select a from masked_view'));
    const got = r.reply(rowDescription(cols), dataRow([EMAIL]), commandComplete('SELECT 1'),
      rowDescription(cols), dataRow([EMAIL]), commandComplete('SELECT 1'), ready());
    // the same RowDescription bytes: the statement, not the shape, tells them apart
    expect(rows(got)).toEqual([[EMAIL], [R]]);
    expect(r.sqls).toEqual(['0: select a from plain_view; select a from masked_view', '1: select a from plain_view; select a from masked_view']);
  });

  it("an Execute's rows are planned with its portal's statement, by our Describe or by the statement's", () => {
    const r = new Relay(masker, lineage);
    r.send(serialize.parse({ name: 'm', text: 'select a from masked_view', types: [] }), serialize.bind({ statement: 'm' }), serialize.execute({}), serialize.sync());
    expect(rows(r.reply(parseComplete(), bindComplete(), rowDescription(cols), dataRow([EMAIL]), commandComplete('SELECT 1'), ready()))).toEqual([[R]]);
    prepared(r, 'm2', cols, 'select a from masked_view where true');
    r.send(serialize.bind({ statement: 'm2' }), serialize.execute({}), serialize.sync());
    expect(rows(r.reply(bindComplete(), dataRow([EMAIL]), commandComplete('SELECT 1'), ready()))).toEqual([[R]]);
    expect(r.sqls).toContain('0: select a from masked_view where true');
  });

  it('the column the server names by table OID and attnum is a source: an alias does not hide it', () => {
    const r = new Relay();
    r.send(serialize.query('select ssn as x, email as y, note as z from customers'));
    const got = r.reply(rowDescription([
      { name: 'x', tableOid: CUSTOMERS_OID, attnum: 2 }, { name: 'y', tableOid: CUSTOMERS_OID, attnum: 3 }, { name: 'z', tableOid: CUSTOMERS_OID, attnum: 4 },
    ]), dataRow([SSN, EMAIL, 'fine']), commandComplete('SELECT 1'), ready());
    expect(rows(got)).toEqual([[R, R, 'fine']]);
  });
});
