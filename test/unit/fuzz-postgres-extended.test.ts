/**
 * Fuzzing the extended protocol as result masking follows it: random client messages
 * (Parse, Bind, Describe, Execute with row limits, Close, Sync, Flush, simple Query,
 * DISCARD ALL, statements that fail), with the server's answers delivered to the proxy at
 * random points in between, against a model server that behaves as PostgreSQL does
 * (skip to Sync after an error, the unnamed statement and portal replaced, portals closed
 * at the end of a transaction, which BEGIN keeps open across Syncs). Properties: no masked value ever reaches the
 * client, and the client receives exactly the messages the server would have sent it
 * without the proxy (our Describes and their answers are invisible).
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { MessageFramer } from '../../src/protocols/postgres/framer.js';
import { ResultMasker } from '../../src/protocols/postgres/results.js';
import { compileMasking } from '../../src/masking/index.js';
import { cstr, int16, int32, message } from '../helpers/pg-wire.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';

const SSN = '078-05-1120';
const CARD = '4111 1111 1111 1111';
const masker = compileMasking([{ columns: ['ssn'], strategy: 'redact' }, { detectors: ['credit_card'], strategy: 'redact' }]);

/** What the model server knows of each statement text: its columns and rows, or no rows, or a syntax error. */
const SHAPES: Record<string, { cols: string[]; rows: string[][] } | 'no rows' | 'error'> = {
  'select ssn from t': { cols: ['ssn'], rows: [[SSN], [SSN]] },
  'select id, note from t': { cols: ['id', 'note'], rows: [['1', `card ${CARD}`], ['2', 'none']] },
  'insert into t values (1)': 'no rows',
  'selec bad': 'error',
};
const TEXTS = Object.keys(SHAPES);

function rowDescription(cols: string[]): Buffer {
  return message('T', int16(cols.length), ...cols.map((c) => {
    const fixed = Buffer.alloc(18);
    fixed.writeUInt32BE(25, 6);
    return Buffer.concat([cstr(c), fixed]);
  }));
}
const dataRow = (values: string[]) => message('D', int16(values.length), ...values.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]));
const error = (code: string) => message('E', Buffer.from('S'), cstr('ERROR'), Buffer.from('C'), cstr(code), Buffer.from('M'), cstr(code), Buffer.from([0]));

interface ModelPortal { text: string; next: number }

/** PostgreSQL's answers to a stream of frontend messages, as far as the protocol goes. */
class ModelServer {
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, ModelPortal>();
  private skipping = false;
  /** in a transaction block (BEGIN): portals outlive Sync; after an error every command fails until COMMIT */
  private block: 'none' | 'open' | 'aborted' = 'none';
  private out: Buffer[] = [];

  private ready(): Buffer {
    return message('Z', Buffer.from(this.block === 'none' ? 'I' : this.block === 'open' ? 'T' : 'E'));
  }

  take(): Buffer {
    const b = Buffer.concat(this.out);
    this.out = [];
    return b;
  }

  receive(bytes: Buffer): void {
    const f = new MessageFramer();
    f.push(bytes);
    for (let m = f.next(); m; m = f.next()) this.one(String.fromCharCode(m.type), m.payload);
  }

  private one(type: string, body: Buffer): void {
    if (type === 'S') {
      this.skipping = false;
      if (this.block === 'none') this.portals.clear(); // the implicit transaction ends
      return void this.out.push(this.ready());
    }
    if (this.skipping || type === 'H') return;
    const fail = (code: string) => {
      this.out.push(error(code));
      if (type !== 'Q') this.skipping = true;
      if (this.block === 'open') this.block = 'aborted';
    };
    if (this.block === 'aborted' && type !== 'Q' && type !== 'C') return fail('25P02');
    const str = (at: number) => {
      const end = body.indexOf(0, at);
      return [body.toString('utf8', at, end), end + 1] as const;
    };
    switch (type) {
      case 'P': {
        const [name, next] = str(0);
        const [text] = str(next);
        if (name === '') this.statements.delete('');
        if (SHAPES[text] === 'error') return fail('42601');
        if (name !== '' && this.statements.has(name)) return fail('42P05');
        this.statements.set(name, text);
        return void this.out.push(message('1'));
      }
      case 'B': {
        const [portal, next] = str(0);
        const [name] = str(next);
        const text = this.statements.get(name);
        if (text === undefined) return fail('26000');
        if (portal !== '' && this.portals.has(portal)) return fail('42P03');
        this.portals.set(portal, { text, next: 0 });
        return void this.out.push(message('2'));
      }
      case 'D': {
        const [name] = str(1);
        const text = body[0] === 0x53 ? this.statements.get(name) : this.portals.get(name)?.text;
        if (text === undefined) return fail(body[0] === 0x53 ? '26000' : '34000');
        if (body[0] === 0x53) this.out.push(message('t', int16(0)));
        const shape = SHAPES[text];
        return void this.out.push(typeof shape === 'object' ? rowDescription(shape.cols) : message('n'));
      }
      case 'E': {
        const [name, next] = str(0);
        const max = body.readInt32BE(next);
        const portal = this.portals.get(name);
        if (!portal) return fail('34000');
        const shape = SHAPES[portal.text];
        if (typeof shape !== 'object') return void this.out.push(message('C', cstr('INSERT 0 1')));
        const end = max > 0 ? Math.min(shape.rows.length, portal.next + max) : shape.rows.length;
        for (; portal.next < end; portal.next++) this.out.push(dataRow(shape.rows[portal.next]));
        return void this.out.push(max > 0 && portal.next < shape.rows.length ? message('s') : message('C', cstr(`SELECT ${end}`)));
      }
      case 'C': {
        const [name] = str(1);
        if (body[0] === 0x53) this.statements.delete(name);
        else this.portals.delete(name);
        return void this.out.push(message('3'));
      }
      case 'Q': {
        const [text] = str(0);
        this.statements.delete('');
        this.portals.delete('');
        if (text === 'begin' || text === 'commit') {
          if (text === 'begin' && this.block === 'aborted') fail('25P02');
          else {
            this.block = text === 'begin' ? 'open' : 'none';
            this.out.push(message('C', cstr(text === 'begin' ? 'BEGIN' : 'COMMIT')));
          }
        } else if (this.block === 'aborted') fail('25P02');
        else if (text === 'discard all') {
          this.statements.clear();
          this.out.push(message('C', cstr('DISCARD ALL')));
        } else {
          const shape = SHAPES[text];
          if (shape === 'error') fail('42601');
          else if (typeof shape === 'object') {
            this.out.push(rowDescription(shape.cols), ...shape.rows.map(dataRow), message('C', cstr(`SELECT ${shape.rows.length}`)));
          } else this.out.push(message('C', cstr('INSERT 0 1')));
        }
        if (this.block === 'none') this.portals.clear();
        return void this.out.push(this.ready());
      }
    }
  }
}

const name = fc.constantFrom('', 'a', 'b');
const portalName = fc.constantFrom('', 'p');
/** a client message, or 'deliver': what the server answered so far reaches the proxy now */
const step = fc.oneof(
  fc.record({ name, text: fc.constantFrom(...TEXTS) }).map((p) => serialize.parse({ ...p, types: [] })),
  fc.record({ portal: portalName, statement: name }).map((b) => serialize.bind(b)),
  fc.tuple(fc.constantFrom('S' as const, 'P' as const), name).map(([type, n]) => serialize.describe({ type, name: n })),
  fc.record({ portal: portalName, rows: fc.constantFrom(0, 1) }).map((e) => serialize.execute(e)),
  fc.tuple(fc.constantFrom('S' as const, 'P' as const), name).map(([type, n]) => serialize.close({ type, name: n })),
  fc.constant(serialize.sync()),
  fc.constant(serialize.flush()),
  fc.constantFrom(...TEXTS.filter((t) => SHAPES[t] !== 'no rows'), 'discard all', 'begin', 'commit').map((q) => serialize.query(q)),
  fc.constant('deliver' as const),
);

function typesOf(bytes: Buffer): string {
  const f = new MessageFramer();
  f.push(bytes);
  let s = '';
  for (let m = f.next(); m; m = f.next()) s += String.fromCharCode(m.type);
  return s;
}

describe('the extended protocol, fuzzed against a model server', () => {
  it('no masked value reaches the client, and the client gets exactly the answers to its own messages', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const server = new ModelServer();
        const alone = new ModelServer(); // the same client without the proxy
        const rm = new ResultMasker(masker, undefined, () => {});
        const toClient: Buffer[] = [];
        const deliver = () => {
          const f = new MessageFramer();
          f.push(server.take());
          for (let m = f.next(); m; m = f.next()) toClient.push(rm.frame(m));
        };
        for (const s of [...steps, serialize.sync(), 'deliver' as const]) {
          if (s === 'deliver') {
            deliver();
            continue;
          }
          const before = rm.sent(s);
          if (before) server.receive(before);
          server.receive(s);
          alone.receive(s);
        }
        const got = Buffer.concat(toClient);
        expect(got.includes(SSN)).toBe(false);
        expect(got.includes(CARD)).toBe(false);
        expect(typesOf(got)).toBe(typesOf(alone.take()));
      }),
      fuzz(3000),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
