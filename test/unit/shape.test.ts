import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { literalShape } from '../../src/policy/shape.js';
import { analyzeQuery, initAnalysis } from '../../src/policy/analysis.js';

beforeAll(() => initAnalysis());

/** what the policy sees of a statement */
const effects = (sql: string) => analyzeQuery(sql).statements.map(({ kinds, relations, functions, opaque }) => ({ kinds, relations, functions, opaque }));

describe('literalShape', () => {
  it('replaces strings and numbers in plain DML', () => {
    expect(literalShape('SELECT abalance FROM pgbench_accounts WHERE aid = 81234;')).toBe('SELECT abalance FROM pgbench_accounts WHERE aid = 0;');
    expect(literalShape("select * from t where a = 'x''y' and b > 1.5e-3 and c = $1")).toBe("select * from t where a = '' and b > 0 and c = $1");
    expect(literalShape("insert into notes (body) values ('hi'), ('there')")).toBe("insert into notes (body) values (''), ('')");
    expect(literalShape('select "weird 1 \'col\'" from t')).toBe('select "weird 1 \'col\'" from t');
  });

  it('shapes statements that differ only in literals alike', () => {
    expect(literalShape("update t set a = 'one' where id = 1")).toBe(literalShape("update t set a = 'two' where id = 2"));
  });

  it('gives up on everything it cannot be sure of', () => {
    for (const sql of [
      "explain analyze delete from t where id = 1", // literals change meaning in options
      "copy t to stdout with (header 1)",
      "set work_mem = '64MB'",
      "select E'a\\\\'b'", "select e'x'", "select B'101'", "select X'ff'", "select U&'d\\\\0061'", "select N'x'",
      "select 'a\\\\b'", // backslash: depends on standard_conforming_strings
      "select $q$ ' $q$, pg_read_file('x'), $q$ ' $q$", // a dollar quote hiding a call
      "select $$x$$", "select 1 -- comment", "select /* c */ 1", "select 1abc", "select 'unterminated",
      'select "unterminated', "select 1e", "select 1.2.3",
    ]) expect(literalShape(sql), sql).toBeUndefined();
  });

  it('gives up when a later statement of the message is not plain DML (its literals may matter)', () => {
    // shaped, `analyze 1` would read as `analyze 0`: a plain EXPLAIN, and the delete would pass as a read
    const sql = 'select 1; explain (analyze 1) delete from t';
    expect(literalShape(sql)).toBeUndefined();
    expect(analyzeQuery(sql).statements[1].kinds).toContain('delete');
    expect(literalShape("select 1; copy t to stdout with (header 1)")).toBeUndefined();
    expect(literalShape("select 1; select 'a';; values (2);")).toBe("select 0; select '';; values (0);");
  });

  it('gives up on a NUL, where the parser stops reading', () => {
    // the parser sees `select '` (an error, denied); shaped, it would see `select '' from t`
    expect(literalShape("select '\0' from t")).toBeUndefined();
  });

  it('never changes what the policy sees: kinds, relations, functions', () => {
    const corpus = [
      "SELECT abalance FROM pgbench_accounts WHERE aid = 81234",
      "select pg_read_file('/etc/passwd'), 1",
      "with d as (delete from t where id = 5 returning *) select * from d",
      "select * from a join b on a.x = b.y where a.z in (1, 2, 'x') for update",
      "insert into t (a, b) values (1, 'x') on conflict (a) do update set b = 'y'",
      "select lo_export(1234, '/tmp/x')",
      "select * from dblink('host=x', 'select 1') as t(a int)",
      "delete from t where name = 'drop table x; --'",
      "select 'a', \"b\"\"c\", $1::int, 1.5, .5 from s.t",
      "values (1, 'a'), (2, 'b')",
      "table customers",
    ];
    for (const sql of corpus) {
      const shape = literalShape(sql);
      expect(shape, sql).toBeDefined();
      expect(effects(shape!), sql).toEqual(effects(sql));
    }
  });

  it('property: literal text never changes the shape or what the policy sees', () => {
    const literal = fc.oneof(
      fc.string({ maxLength: 12 }).filter((s) => !s.includes('\\')).map((s) => `'${s.replace(/'/g, "''")}'`),
      fc.integer().map((n) => String(Math.abs(n))),
      fc.double({ min: 0, max: 1e6, noNaN: true }).map((d) => d.toFixed(3)),
    );
    fc.assert(
      fc.property(literal, literal, (a, b) => {
        const sql = `select x from public.t where a = ${a} and b = ${b} and f(${a}) is not null`;
        const shape = literalShape(sql);
        const blank = (lit: string) => (lit.startsWith("'") ? "''" : '0');
        expect(shape).toBe(`select x from public.t where a = ${blank(a)} and b = ${blank(b)} and f(${blank(a)}) is not null`);
        expect(effects(shape!)).toEqual(effects(sql));
      }),
      { numRuns: 200 },
    );
  });
});
