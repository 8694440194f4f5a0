/**
 * Lineage of masked columns, statement by statement, on a small catalog: direct outputs are
 * found by position through every kind of renaming; every other use is refused by name.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initAnalysis } from '../../src/policy/analysis.js';
import { compileMasking } from '../../src/masking/plan.js';
import { LineageJudge } from '../../src/masking/lineage-judge.js';
import type { LineageCatalog } from '../../src/masking/lineage-context.js';
import type { LineageRelation } from '../../src/masking/lineage.js';

const rel = (schema: string, name: string, columns: string[], definition?: string): [string, LineageRelation] =>
  [`${schema}.${name}`, definition === undefined ? { schema, name, columns } : { schema, name, columns, definition }];

export const CATALOG: LineageCatalog = {
  relations: new Map([
    rel('public', 'customers', ['id', 'name', 'email', 'ssn', 'card', 'note']),
    rel('public', 'orders', ['id', 'customer_id', 'total']),
    rel('public', 'vendors', ['id', 'ssn']),
    rel('private', 'secrets', ['id', 'ssn']),
    rel('public', 'contacts', ['id', 'tax_id', 'email'], ' SELECT customers.id,\n    customers.ssn AS tax_id,\n    customers.email\n   FROM customers;'),
    rel('public', 'shouting', ['u'], ' SELECT upper(customers.ssn) AS u\n   FROM customers;'),
    rel('public', 'filtered', ['name'], " SELECT customers.name\n   FROM customers\n  WHERE customers.ssn ~~ '078%'::text;"),
    rel('public', 'contact_names', ['id', 'tax_id'], ' SELECT contacts.id, contacts.tax_id FROM contacts;'),
    ['public.customers_2024', { schema: 'public', name: 'customers_2024', columns: ['id', 'name', 'email', 'ssn', 'card', 'note'], parents: ['public.customers'] }],
    rel('pg_catalog', 'pg_stats', ['schemaname', 'tablename', 'attname', 'most_common_vals']),
    rel('pg_catalog', 'pg_class', ['oid', 'relname']),
  ]),
  builtinFunctions: new Set(['upper', 'lower', 'count', 'row_to_json', 'json_agg', 'array_agg', 'string_agg', 'encode', 'convert_to',
    'translate', 'max', 'now', 'set_config', 'generate_series', 'length', 'query_to_xml', 'row_number', 'to_json']),
  otherFunctions: new Set(['lookup', 'length']),
};

const masker = compileMasking([
  { columns: ['ssn', 'customers.email'], strategy: 'redact' },
  { detectors: ['credit_card'], strategy: 'redact' },
  { allowFunctions: ['public.safe_*'], strategy: 'redact' },
]);
const rules = { masked: (s: { schema: string; table: string; column: string }) => masker.coversColumn(s), functionAllowed: (q: string) => masker.allowsFunction(q) };

const judge = () => new LineageJudge(CATALOG, rules);
const sourcesOf = (sql: string) => judge().outputs(sql)?.map((s) => s.map((c) => `${c.table}.${c.column}`).join('+'));

beforeAll(() => initAnalysis());

describe('direct outputs are masked by position, whatever their name', () => {
  it.each([
    ['select id, name, ssn, email from customers', ['', '', 'customers.ssn', 'customers.email']],
    ['select ssn as x, email as y from customers', ['customers.ssn', 'customers.email']],
    ['select * from customers', ['', '', 'customers.email', 'customers.ssn', '', '']],
    ['select c.* from customers c', ['', '', 'customers.email', 'customers.ssn', '', '']],
    ['select o.total, c.* from orders o join customers c on c.id = o.customer_id', ['', '', '', 'customers.email', 'customers.ssn', '', '']],
    ['select s from (select ssn as s from customers) t', ['customers.ssn']],
    ['with w as (select ssn from customers) select * from w', ['customers.ssn']],
    ['with w(a) as (select ssn from customers) select a from w', ['customers.ssn']],
    ['select x from customers c(a, b, c, x)', ['customers.ssn']],
    ["select ssn from customers union all select 'none'", ['customers.ssn']],
    ["select 'none' union all select ssn from customers", ['customers.ssn']],
    ['select tax_id from contacts', ['customers.ssn']],
    ['select * from contact_names', ['', 'customers.ssn']],
    ['select ssn from vendors', ['vendors.ssn']],
    ['table customers', ['', '', 'customers.email', 'customers.ssn', '', '']],
    ['select * from orders o join customers c using (id)', ['', '', '', '', 'customers.email', 'customers.ssn', '', '']],
    ['update customers set note = $1 where id = 1 returning ssn', ['customers.ssn']],
    ['select ssn from private.secrets', ['secrets.ssn']],
  ])('%s', (sql, expected) => {
    expect(judge().check(sql)).toBeUndefined();
    expect(sourcesOf(sql)).toEqual(expected);
  });

  it('a cursor and a prepared statement keep the outputs they were declared with', () => {
    const j = judge();
    expect(j.check('declare c cursor for select name, ssn as x from customers')).toBeUndefined();
    expect(j.outputs('fetch 10 from c')?.map((s) => s.length)).toEqual([0, 1]);
    expect(j.check('prepare p as select email from customers union all select note from customers')).toBeUndefined();
    expect(j.outputs('execute p')?.[0]?.[0]?.column).toBe('email');
  });

  it('ORDER BY position is judged by the exact text, not its shape', () => {
    expect(judge().check('select name, ssn from customers order by 1')).toBeUndefined();
    expect(judge().check('select name, ssn from customers order by 2')).toMatch(/customers\.ssn is masked.*ORDER BY/);
  });
});

describe('any other use of a masked column refuses the statement, naming the column', () => {
  it.each([
    ["select ssn || '' from customers", 'customers.ssn', 'an expression'],
    ['select upper(email) from customers', 'customers.email', 'a function or aggregate'],
    ['select lower(ssn) from customers', 'customers.ssn', ''],
    ['select ssn::bytea from customers', 'customers.ssn', ''],
    ["select encode(convert_to(ssn, 'UTF8'), 'base64') from customers", 'customers.ssn', ''],
    ['select row_to_json(c) from customers c', 'customers.', 'whole-row'],
    ['select c from customers c', 'customers.', 'whole-row'],
    ['select customers from customers', 'customers.', 'whole-row'],
    ['select to_json(c.*) from customers c', 'customers.', 'whole-row'],
    ['select (c).ssn from customers c', 'customers.', ''],
    ['select array_agg(ssn) from customers', 'customers.ssn', ''],
    ["select string_agg(email, ',') from customers", 'customers.email', ''],
    ['select json_agg(email) from customers', 'customers.email', ''],
    ['select max(ssn) from customers', 'customers.ssn', ''],
    ["select count(*) from customers where ssn like '078%'", 'customers.ssn', 'WHERE'],
    ['select name from customers order by ssn', 'customers.ssn', 'ORDER BY'],
    ['select ssn from customers order by ssn', 'customers.ssn', 'ORDER BY'],
    ['select count(*) from customers group by ssn', 'customers.ssn', 'GROUP BY'],
    ['select distinct ssn from customers', 'customers.ssn', 'DISTINCT'],
    ['select distinct on (ssn) name from customers', 'customers.ssn', 'DISTINCT'],
    ['select name from customers group by name having max(ssn) > $1', 'customers.ssn', 'HAVING'],
    ['select row_number() over (order by ssn) from customers', 'customers.ssn', ''],
    ['select 1 from customers a join vendors b using (ssn)', 'customers.ssn', 'USING'],
    ['select 1 from customers a natural join vendors b', 'customers.ssn', 'USING'],
    ['select 1 from customers a join vendors b on a.ssn = b.ssn', 'customers.ssn', 'JOIN'],
    ["select ssn from customers union select 'x'", 'customers.ssn', 'UNION'],
    ["select ssn from customers intersect select '078-05-1120'", 'customers.ssn', 'INTERSECT'],
    ["select ssn from customers except all select 'x'", 'customers.ssn', 'EXCEPT'],
    ['select u from shouting', 'shouting', 'customers.ssn'],
    ['select name from filtered', 'filtered', 'customers.ssn'],
    ['select name from customers where id in (select id from customers where ssn = $1)', 'customers.ssn', 'WHERE'],
    ['select (select ssn from customers limit 1)', 'customers.ssn', 'subquery'],
    ['select name from customers where exists (select ssn from customers)', 'customers.ssn', 'subquery'],
    ['select name from customers c where (select c.ssn) is not null', 'customers.ssn', ''],
    ["select s from (select ssn || '' as s from customers) t", 'customers.ssn', ''],
    ['insert into orders (id) select ssn::int from customers', 'customers.ssn', ''],
    ['insert into vendors select id, ssn from customers', 'customers.ssn', 'INSERT'],
    ['create table t as select ssn from customers', 'customers.ssn', 'CREATE TABLE AS'],
    ['select ssn into t from customers', 'customers.ssn', 'SELECT INTO'],
    ['create view v as select ssn from customers', 'customers.ssn', 'CREATE VIEW'],
    ['update customers set note = ssn', 'customers.ssn', 'UPDATE'],
    ['delete from customers where ssn = $1', 'customers.ssn', 'WHERE'],
    ['with d as (delete from customers returning ssn) select ssn || \'\' from d', 'customers.ssn', ''],
    ["select t.ssn from customers t where t.ssn like '0%'", 'customers.ssn', 'WHERE'],
    ['select 1 from customers, lateral (select ssn || \'\' as s) x', 'customers.ssn', ''],
    ['explain analyze select 1 from customers where ssn = $1', 'customers.ssn', 'WHERE'],
    ['declare c cursor for select upper(ssn) from customers', 'customers.ssn', ''],
    ['prepare p as select 1 from customers where ssn = $1', 'customers.ssn', 'WHERE'],
    ['copy (select lower(ssn) from customers) to stdout', 'customers.ssn', ''],
    ['select coalesce(ssn, name) from customers', 'customers.ssn', ''],
    ['select case when ssn > $1 then 1 end from customers', 'customers.ssn', ''],
    ['select name from customers limit (select count(ssn) from customers)', 'customers.ssn', ''],
  ])('%s', (sql, column, clause) => {
    const r = judge().check(sql);
    expect(r).toContain(column);
    expect(r).toContain(clause);
  });

  it.each([
    ['select lookup(1)', /lookup\(\) is not a built-in/],
    ['select public.lookup(1)', /lookup\(\) is not a built-in/],
    ['select length(name) from customers', /length\(\) is not a built-in/], // also defined outside pg_catalog
    ["select query_to_xml('select ssn from customers', true, false, '')", /runs SQL/],
    ["select most_common_vals from pg_stats where attname = 'ssn'", /samples of column values/],
    ["do $$ begin raise notice '%', (select ssn from customers limit 1); end $$", /DO blocks/],
    ['create function f() returns text language sql as $$ select ssn from customers $$', /creating functions/],
    ['alter table customers rename column ssn to x', /customers has masked columns/],
    ['alter table customers rename to c2', /customers has masked columns/],
    ['alter schema public rename to p2', /schema public holds masked/],
    ['create trigger t before insert on orders for each row execute function f()', /creating functions, triggers/],
  ])('%s is refused', (sql, message) => {
    expect(judge().check(sql)).toMatch(message);
  });

  it('allows what touches no masked column, and functions a rule allows by name', () => {
    for (const sql of [
      'select name, upper(name), count(*) over () from customers where id > 1 order by name',
      'select o.total from orders o join customers c on c.id = o.customer_id where c.name like $1',
      'select safe_name(1)', 'select public.safe_name(id) from customers', 'select pg_catalog.length(name) from customers',
      'select relname from pg_class', "select set_config('application_name', 'x', false)", 'select now()',
      'select * from generate_series(1, 3) g(x)', 'insert into orders values (1, 2, 3)', "update customers set ssn = 'x' where id = 1",
      'alter table orders add column note text', 'select count(*) from customers', 'begin', 'select 1',
    ]) expect(judge().check(sql), sql).toBeUndefined();
  });

  it('refuses everything when the catalog could not be read', () => {
    expect(new LineageJudge(undefined, rules).check('select 1')).toMatch(/catalog could not be read/);
  });
});

describe('FROM items that read other FROM items', () => {
  it.each([
    ["select 1 from customers c join lateral row_to_json(c) j on true", 'customers.'],
    ["select 1 from customers c, lateral (select c.ssn || '' as s) x", 'customers.ssn'],
    ["select ssn || '' from customers tablesample system (100)", 'customers.ssn'],
  ])('%s', (sql, column) => {
    expect(judge().check(sql)).toContain(column);
  });
  it('a sampled table keeps its lineage', () => {
    expect(sourcesOf('select ssn from customers tablesample bernoulli (50)')).toEqual(['customers.ssn']);
  });
});

describe('partitions and inheriting children hold their parent\'s rows', () => {
  it('their columns are masked as the parent\'s, on the wire and in COPY', () => {
    expect(sourcesOf('select name, email from customers_2024')).toEqual(['', 'customers.email']);
    expect(judge().check("select email || '' from customers_2024")).toContain('customers.email');
    expect(judge().tableColumnSources('public.customers_2024', ['id', 'email'])?.map((s) => s.map((c) => `${c.table}.${c.column}`))).toEqual([[], ['customers.email']]);
  });
});

describe('cursors and prepared statements lineage never saw declared', () => {
  it('a FETCH or EXECUTE of an unknown name is refused; declared in the same text or before, it is followed', () => {
    const j = judge();
    expect(j.check('fetch all from nowhere')).toMatch(/cursor nowhere was not declared through interlock/);
    expect(j.check('execute p1')).toMatch(/prepared p1 was not declared/);
    expect(j.check("declare c cursor for select ssn from customers union all select 'x'; fetch all from c")).toBeUndefined();
    expect(j.outputs('fetch all from c')?.[0]?.[0]?.column).toBe('ssn');
  });

  it('a Parse of a named statement is what a later SQL EXECUTE of that name returns', () => {
    const j = judge();
    expect(j.check("select email from customers union all select 'x'", undefined, 'S_1')).toBeUndefined();
    expect(j.check('execute "S_1"')).toBeUndefined();
    expect(j.outputs('EXECUTE "S_1"')?.[0]?.[0]?.column).toBe('email');
  });
});
