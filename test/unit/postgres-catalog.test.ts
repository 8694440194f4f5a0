/** The login catalog: parsed from its DataRows, and one copy shared while it reads the same. */
import { describe, expect, it } from 'vitest';
import { CatalogReader } from '../../src/protocols/postgres/catalog.js';

/** a DataRow payload (field count, then length-prefixed fields) of the catalog query */
function row(oid: number, schema: string, table: string, columns: string[], attnums = columns.map((_, i) => i + 1)): Buffer {
  const fields = [String(oid), schema, table, columns.join('\x1f'), attnums.join(',')].map((f) => Buffer.from(f));
  const head = Buffer.alloc(2);
  head.writeInt16BE(fields.length);
  return Buffer.concat([head, ...fields.flatMap((f) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(f.length);
    return [len, f];
  })]);
}

const read = (key: string, rows: Buffer[]) => {
  const r = new CatalogReader();
  for (const p of rows) r.row(p);
  return r.finish(key);
};

describe('CatalogReader', () => {
  const rows = [row(16384, 'public', 'customers', ['id', 'name', 'email']), row(16390, 'sales', 'orders', ['id', 'total'])];

  it('reads tables by oid and by name, with their columns in order', () => {
    const c = read('t1\norders', rows);
    expect(c.byOid.get(16384)?.name).toBe('public.customers');
    expect(c.byName.get('sales.orders')).toEqual({ name: 'sales.orders', columns: ['id', 'total'] });
  });

  it('knows each column by its attribute number, with gaps where columns were dropped', () => {
    const c = read('t3\norders', [row(16500, 'public', 'people', ['id', 'ssn', 'email'], [1, 3, 4]), row(16501, 'public', 'empty', [], [])]);
    const people = c.byOid.get(16500)!;
    expect([people.schema, people.table]).toEqual(['public', 'people']);
    expect([...people.columns]).toEqual([[1, 'id'], [3, 'ssn'], [4, 'email']]);
    expect(people.columns.get(2)).toBeUndefined();
    expect(c.byName.get('public.people')?.columns).toEqual(['id', 'ssn', 'email']);
    expect(c.byOid.get(16501)?.columns.size).toBe(0);
  });

  it('refuses a row whose attnums do not pair up with its columns', () => {
    expect(() => read('t4\norders', [row(16600, 'public', 'odd', ['a', 'b'], [1])])).toThrow(/attnums/);
  });

  it('hands sessions that read the same catalog one shared copy, and a changed schema its own', () => {
    const a = read('t2\norders', rows);
    expect(read('t2\norders', rows)).toBe(a);
    const changed = read('t2\norders', [...rows, row(16400, 'public', 'refunds', ['id'])]);
    expect(changed).not.toBe(a);
    expect(changed.byName.has('public.refunds')).toBe(true);
    expect(a.byName.has('public.refunds')).toBe(false); // a shared catalog is never changed
    expect(read('other\norders', rows)).not.toBe(a); // per target and database
  });
});
