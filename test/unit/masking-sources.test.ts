/** Column rules follow a column's sources (the table columns it was read from), not only its output name. */
import { describe, expect, it } from 'vitest';
import { compileMasking, type ResultColumn } from '../../src/masking/plan.js';

const masker = compileMasking([{ columns: ['ssn', 'customers.email', 'billing.*.iban'], strategy: 'redact' }]);
const col = (name: string, sources?: ResultColumn['sources'], tableName?: string): ResultColumn => ({ name, typeOid: 25, format: 0, sources, tableName });
const kinds = (cols: ResultColumn[]) => masker.forColumns(cols).columns.map((p) => p?.kind ?? null);

describe('column rules and sources', () => {
  it('an output renamed from a masked column is masked through its source', () => {
    expect(kinds([col('x', [{ schema: 'public', table: 'customers', column: 'ssn' }])])).toEqual(['whole']);
    expect(kinds([col('x', [{ schema: 'public', table: 'customers', column: 'email' }])])).toEqual(['whole']);
    expect(kinds([col('x', [{ schema: 'billing', table: 'accounts', column: 'iban' }])])).toEqual(['whole']);
  });

  it("a source's table and schema count: the same column name elsewhere is not masked", () => {
    expect(kinds([col('x', [{ schema: 'public', table: 'orders', column: 'email' }])])).toEqual([null]);
    expect(kinds([col('x', [{ schema: 'public', table: 'accounts', column: 'iban' }])])).toEqual([null]);
  });

  it('any one of several sources is enough (an expression over two columns), and the name still counts', () => {
    expect(kinds([col('x', [{ schema: 'public', table: 'orders', column: 'note' }, { schema: 'public', table: 'customers', column: 'ssn' }])])).toEqual(['whole']);
    expect(kinds([col('ssn', [{ schema: 'public', table: 'orders', column: 'note' }])])).toEqual(['whole']);
    expect(kinds([col('email', [], 'public.customers'), col('note', [])])).toEqual(['whole', null]);
  });
});
