import { describe, expect, it } from 'vitest';
import {
  displayWidth,
  isRightAligned,
  renderPsqlError,
  renderPsqlNotice,
  renderPsqlResult,
  renderPsqlTable,
} from '../../src/recording/replay/psql-table.js';

/**
 * Every `psql` string below was printed by psql 15 (`psql -X -c <sql>`, UTF-8 database,
 * default settings) against a PostgreSQL 15 server; `columns` (name, type OID) and `rows`
 * are what the same server sent for that statement in RowDescription and DataRow (text
 * format). Lines are listed one by one so trailing spaces stay visible.
 */
interface TableCase {
  sql: string;
  columns: [string, number][];
  rows: (string | null)[][];
  psql: string[];
}

const tableCases: TableCase[] = [
  {
    sql: "SELECT 1",
    columns: [["?column?",23]],
    rows: [["1"]],
    psql: [
      " ?column? ",
      "----------",
      "        1",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT -5 AS neg, 42 AS pos, 123456789012::int8 AS big, 3::int2 AS small, (-2147483648)::int4 AS min4",
    columns: [["neg",23],["pos",23],["big",20],["small",21],["min4",23]],
    rows: [["-5","42","123456789012","3","-2147483648"]],
    psql: [
      " neg | pos |     big      | small |    min4     ",
      "-----+-----+--------------+-------+-------------",
      "  -5 |  42 | 123456789012 |     3 | -2147483648",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 3.14::numeric AS pi, -0.001::numeric AS tiny, 1e10::float8 AS f8, 1.5::float4 AS f4, '12.50'::money AS m, 'pg_class'::regclass::oid AS o",
    columns: [["pi",1700],["tiny",1700],["f8",701],["f4",700],["m",790],["o",26]],
    rows: [["3.14","-0.001","10000000000","1.5","$12.50","1259"]],
    psql: [
      "  pi  |  tiny  |     f8      | f4  |   m    |  o   ",
      "------+--------+-------------+-----+--------+------",
      " 3.14 | -0.001 | 10000000000 | 1.5 | $12.50 | 1259",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT * FROM (VALUES ('a', NULL, ''), ('', 'bb', NULL), (NULL, NULL, NULL)) AS v(x, y, z)",
    columns: [["x",25],["y",25],["z",25]],
    rows: [["a",null,""],["","bb",null],[null,null,null]],
    psql: [
      " x | y  | z ",
      "---+----+---",
      " a |    | ",
      "   | bb | ",
      "   |    | ",
      "(3 rows)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 'x' AS very_long_column_name, 'some longer value here' AS c, 7 AS n",
    columns: [["very_long_column_name",25],["c",25],["n",23]],
    rows: [["x","some longer value here","7"]],
    psql: [
      " very_long_column_name |           c            | n ",
      "-----------------------+------------------------+---",
      " x                     | some longer value here | 7",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 'ünïcödé' AS u, '日本' AS ja, 'e' || chr(769) AS combining, '🎉 party' AS emoji, 'Straße' AS de",
    columns: [["u",25],["ja",25],["combining",25],["emoji",25],["de",25]],
    rows: [["ünïcödé","日本","e\u0301","🎉 party","Straße"]],
    psql: [
      "    u    |  ja  | combining |  emoji   |   de   ",
      "---------+------+-----------+----------+--------",
      " ünïcödé | 日本 | e\u0301         | 🎉 party | Straße",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 1 AS a, 'b' AS b WHERE false",
    columns: [["a",23],["b",25]],
    rows: [],
    psql: [
      " a | b ",
      "---+---",
      "(0 rows)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT i, i * i AS square, repeat('#', i) AS bar FROM generate_series(1, 12) AS i",
    columns: [["i",23],["square",23],["bar",25]],
    rows: [["1","1","#"],["2","4","##"],["3","9","###"],["4","16","####"],["5","25","#####"],["6","36","######"],["7","49","#######"],["8","64","########"],["9","81","#########"],["10","100","##########"],["11","121","###########"],["12","144","############"]],
    psql: [
      " i  | square |     bar      ",
      "----+--------+--------------",
      "  1 |      1 | #",
      "  2 |      4 | ##",
      "  3 |      9 | ###",
      "  4 |     16 | ####",
      "  5 |     25 | #####",
      "  6 |     36 | ######",
      "  7 |     49 | #######",
      "  8 |     64 | ########",
      "  9 |     81 | #########",
      " 10 |    100 | ##########",
      " 11 |    121 | ###########",
      " 12 |    144 | ############",
      "(12 rows)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT true AS yes, false AS no, NULL::boolean AS unknown, '2024-01-02 03:04:05+00'::timestamptz AS ts, '2024-02-29'::date AS d, '13:14:15'::time AS tm, interval '1 day 2 hours' AS iv",
    columns: [["yes",16],["no",16],["unknown",16],["ts",1184],["d",1082],["tm",1083],["iv",1186]],
    rows: [["t","f",null,"2024-01-02 03:04:05+00","2024-02-29","13:14:15","1 day 02:00:00"]],
    psql: [
      " yes | no | unknown |           ts           |     d      |    tm    |       iv       ",
      "-----+----+---------+------------------------+------------+----------+----------------",
      " t   | f  |         | 2024-01-02 03:04:05+00 | 2024-02-29 | 13:14:15 | 1 day 02:00:00",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT E'line one\\nline two\\nthree' AS multi, 'x' AS next, E'a\\nb' AS last",
    columns: [["multi",25],["next",25],["last",25]],
    rows: [["line one\nline two\nthree","x","a\nb"]],
    psql: [
      "  multi   | next | last ",
      "----------+------+------",
      " line one+| x    | a   +",
      " line two+|      | b",
      " three    |      | ",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT E'tab\\there' AS tabbed, E'ends with newline\\n' AS trailing, E'bell\\x07' AS ctl",
    columns: [["tabbed",25],["trailing",25],["ctl",25]],
    rows: [["tab\there","ends with newline\n","bell\u0007"]],
    psql: [
      "    tabbed    |     trailing      |   ctl    ",
      "--------------+-------------------+----------",
      " tab     here | ends with newline+| bell\\x07",
      "              |                   | ",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT",
    columns: [],
    rows: [[]],
    psql: [
      "--",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT '{\"k\": [1, 2]}'::jsonb AS doc, ARRAY[1, 2, 3] AS arr, '\\xdeadbeef'::bytea AS bin",
    columns: [["doc",3802],["arr",1007],["bin",17]],
    rows: [["{\"k\": [1, 2]}","{1,2,3}","\\xdeadbeef"]],
    psql: [
      "      doc      |   arr   |    bin     ",
      "---------------+---------+------------",
      " {\"k\": [1, 2]} | {1,2,3} | \\xdeadbeef",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 1 AS \"two\nline header\", 'v' AS w",
    columns: [["two\nline header",23],["w",25]],
    rows: [["1","v"]],
    psql: [
      "     two    +| w ",
      " line header |   ",
      "-------------+---",
      "           1 | v",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 'ab' AS odd, 'abc' AS even, 'abcdefg' AS x",
    columns: [["odd",25],["even",25],["x",25]],
    rows: [["ab","abc","abcdefg"]],
    psql: [
      " odd | even |    x    ",
      "-----+------+---------",
      " ab  | abc  | abcdefg",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 42 AS n, E'multi\\nline' AS t, 'last' AS l",
    columns: [["n",23],["t",25],["l",25]],
    rows: [["42","multi\nline","last"]],
    psql: [
      " n  |   t   |  l   ",
      "----+-------+------",
      " 42 | multi+| last",
      "    | line  | ",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 1 AS a, NULL::int AS b UNION ALL SELECT 22, 333",
    columns: [["a",23],["b",23]],
    rows: [["1",null],["22","333"]],
    psql: [
      " a  |  b  ",
      "----+-----",
      "  1 |    ",
      " 22 | 333",
      "(2 rows)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT 'x' AS \"日本語の列\", 5 AS \"número\"",
    columns: [["日本語の列",25],["número",23]],
    rows: [["x","5"]],
    psql: [
      " 日本語の列 | número ",
      "------------+--------",
      " x          |      5",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT E'carriage\\rreturn' AS cr, chr(133) AS nel, E'a\\tb\\tc' AS tabs, E'12345678\\tx' AS tabstop",
    columns: [["cr",25],["nel",25],["tabs",25],["tabstop",25]],
    rows: [["carriage\rreturn","\u0085","a\tb\tc","12345678\tx"]],
    psql: [
      "        cr        |  nel   |       tabs        |      tabstop      ",
      "------------------+--------+-------------------+-------------------",
      " carriage\\rreturn | \\u0085 | a       b       c | 12345678        x",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT s AS id, CASE WHEN s % 2 = 0 THEN NULL ELSE 'odd ' || s END AS label, s * 1.5 AS half FROM generate_series(-3, 3) AS s",
    columns: [["id",23],["label",25],["half",1700]],
    rows: [["-3","odd -3","-4.5"],["-2",null,"-3.0"],["-1","odd -1","-1.5"],["0",null,"0.0"],["1","odd 1","1.5"],["2",null,"3.0"],["3","odd 3","4.5"]],
    psql: [
      " id | label  | half ",
      "----+--------+------",
      " -3 | odd -3 | -4.5",
      " -2 |        | -3.0",
      " -1 | odd -1 | -1.5",
      "  0 |        |  0.0",
      "  1 | odd 1  |  1.5",
      "  2 |        |  3.0",
      "  3 | odd 3  |  4.5",
      "(7 rows)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT '' AS empty_only",
    columns: [["empty_only",25]],
    rows: [[""]],
    psql: [
      " empty_only ",
      "------------",
      " ",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT NULL AS n",
    columns: [["n",25]],
    rows: [[null]],
    psql: [
      " n ",
      "---",
      " ",
      "(1 row)",
      "",
      "",
    ],
  },
  {
    sql: "SELECT E'\\n' AS just_newline, 1 AS x",
    columns: [["just_newline",25],["x",23]],
    rows: [["\n","1"]],
    psql: [
      " just_newline | x ",
      "--------------+---",
      "             +| 1",
      "              | ",
      "(1 row)",
      "",
      "",
    ],
  },
];

/** psql's stderr for a failed statement, with the ErrorResponse fields the server sent for it. */
interface ErrorCase {
  sql: string;
  fields: Record<string, string>;
  psql: string[];
}

const errorCases: ErrorCase[] = [
  {
    sql: "INSERT INTO u VALUES (1)",
    fields: {"M":"duplicate key value violates unique constraint \"u_pkey\"","S":"ERROR","C":"23505","D":"Key (a)=(1) already exists."},
    psql: [
      "ERROR:  duplicate key value violates unique constraint \"u_pkey\"",
      "DETAIL:  Key (a)=(1) already exists.",
      "",
    ],
  },
  {
    sql: "SELECT nosuchfn(1)",
    fields: {"M":"function nosuchfn(integer) does not exist","S":"ERROR","C":"42883","H":"No function matches the given name and argument types. You might need to add explicit type casts.","P":"8"},
    psql: [
      "ERROR:  function nosuchfn(integer) does not exist",
      "LINE 1: SELECT nosuchfn(1)",
      "               ^",
      "HINT:  No function matches the given name and argument types. You might need to add explicit type casts.",
      "",
    ],
  },
  {
    sql: "SELECT 1,\n  2, nosuch",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","P":"16"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 2:   2, nosuch",
      "             ^",
      "",
    ],
  },
  {
    sql: "SELECT 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', nosuch, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","P":"101"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 1: ...aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', nosuch, 'b...",
      "                                                             ^",
      "",
    ],
  },
  {
    sql: "SELECT 1 FROM u WHERE a = (SELECT 1/0 FROM pg_class LIMIT 1) AND nosuch2",
    fields: {"M":"column \"nosuch2\" does not exist","S":"ERROR","C":"42703","P":"66"},
    psql: [
      "ERROR:  column \"nosuch2\" does not exist",
      "LINE 1: ...M u WHERE a = (SELECT 1/0 FROM pg_class LIMIT 1) AND nosuch2",
      "                                                                ^",
      "",
    ],
  },
  {
    sql: "SELECT nosuch, 'a long tail that goes on and on and on and on and on and on and on'",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","P":"8"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 1: SELECT nosuch, 'a long tail that goes on and on and on and o...",
      "               ^",
      "",
    ],
  },
  {
    sql: "SELECT '日本日本', nosuch",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","P":"16"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 1: SELECT '日本日本', nosuch",
      "                           ^",
      "",
    ],
  },
  {
    sql: "SELECT\t1,\tnosuch",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","P":"11"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 1: SELECT 1, nosuch",
      "                  ^",
      "",
    ],
  },
  {
    sql: "DO $$BEGIN PERFORM 1/0; END$$",
    fields: {"M":"division by zero","S":"ERROR","C":"22012","W":"SQL statement \"SELECT 1/0\"\nPL/pgSQL function inline_code_block line 1 at PERFORM"},
    psql: [
      "ERROR:  division by zero",
      "CONTEXT:  SQL statement \"SELECT 1/0\"",
      "PL/pgSQL function inline_code_block line 1 at PERFORM",
      "",
    ],
  },
  {
    sql: "DO $$ BEGIN EXECUTE 'SELECT nosuch'; END $$",
    fields: {"M":"column \"nosuch\" does not exist","S":"ERROR","C":"42703","p":"8","q":"SELECT nosuch","W":"PL/pgSQL function inline_code_block line 1 at EXECUTE"},
    psql: [
      "ERROR:  column \"nosuch\" does not exist",
      "LINE 1: SELECT nosuch",
      "               ^",
      "QUERY:  SELECT nosuch",
      "CONTEXT:  PL/pgSQL function inline_code_block line 1 at EXECUTE",
      "",
    ],
  },
];

const columnsOf = (c: TableCase) => c.columns.map(([name, typeOid]) => ({ name, typeOid }));

describe('renderPsqlTable reproduces psql byte for byte', () => {
  for (const c of tableCases) {
    it(c.sql.split('\n')[0], () => {
      expect(renderPsqlTable(columnsOf(c), c.rows)).toBe(c.psql.join('\n'));
    });
  }

  it('covers what it claims to: right alignment, NULLs, multi-line cells, wide text, zero rows, zero columns', () => {
    const all = tableCases.flatMap((c) => c.columns.map(([, oid]) => oid));
    for (const oid of [20, 21, 23, 26, 700, 701, 790, 1700]) expect(all).toContain(oid);
    expect(tableCases.some((c) => c.rows.some((r) => r.includes(null)))).toBe(true);
    expect(tableCases.some((c) => c.psql.some((l) => l.includes('+|')))).toBe(true);
    expect(tableCases.some((c) => c.rows.flat().includes('日本'))).toBe(true);
    expect(tableCases.some((c) => c.rows.length === 0)).toBe(true);
    expect(tableCases.some((c) => c.columns.length === 0)).toBe(true);
  });
});

describe('renderPsqlResult', () => {
  const items = { columns: [{ name: 'id', typeOid: 23 }, { name: 'price', typeOid: 1700 }], rows: [['3', '0']] };
  // psql -X -c "UPDATE items SET price = 0 WHERE id = 3 RETURNING id, price"
  const returning = [' id | price ', '----+-------', '  3 |     0', '(1 row)', '', 'UPDATE 1', ''].join('\n');

  it('prints the tag alone for a statement without a result set', () => {
    expect(renderPsqlResult({ rows: [], tag: 'INSERT 0 1' })).toBe('INSERT 0 1\n');
    expect(renderPsqlResult({ rows: [], tag: 'CREATE TABLE' })).toBe('CREATE TABLE\n');
    expect(renderPsqlResult({ rows: [], tag: 'BEGIN' })).toBe('BEGIN\n');
  });

  it('prints the rows then the tag for INSERT/UPDATE/DELETE … RETURNING, as psql does', () => {
    expect(renderPsqlResult({ ...items, tag: 'UPDATE 1' })).toBe(returning);
  });

  it('prints no tag after the rows of a SELECT, SHOW or FETCH', () => {
    const table = renderPsqlResult({ ...items, tag: 'SELECT 1' });
    expect(table).toBe(returning.replace('UPDATE 1\n', ''));
    expect(renderPsqlResult({ ...items, tag: 'FETCH 1' })).toBe(table);
  });

  it('prints nothing for an empty query', () => {
    expect(renderPsqlResult({ rows: [] })).toBe('');
  });
});

describe('renderPsqlError reproduces psql byte for byte', () => {
  for (const c of errorCases) {
    it(c.sql.split('\n')[0].slice(0, 60), () => {
      expect(renderPsqlError(c.fields, c.sql)).toBe(c.psql.join('\n'));
    });
  }

  it('leaves out the LINE excerpt when it does not know the query', () => {
    const fields = { S: 'ERROR', C: '42703', M: 'column "nosuch" does not exist', P: '8' };
    expect(renderPsqlError(fields)).toBe('ERROR:  column "nosuch" does not exist\n');
  });

  it('prints a notice like psql: severity, message, detail, hint, no context', () => {
    const fields = { S: 'NOTICE', C: '00000', M: 'hi there', D: 'some detail', W: 'PL/pgSQL function inline_code_block line 1 at RAISE' };
    expect(renderPsqlNotice(fields)).toBe('NOTICE:  hi there\nDETAIL:  some detail\n');
  });
});

describe('displayWidth', () => {
  it('counts terminal columns, not bytes or UTF-16 units', () => {
    expect(displayWidth('abc')).toBe(3);
    expect(displayWidth('ünïcödé')).toBe(7);
    expect(displayWidth('日本')).toBe(4);
    expect(displayWidth('e\u0301')).toBe(1);
    expect(displayWidth('🎉')).toBe(2);
    expect(displayWidth('Ｆｕｌｌ')).toBe(8);
    expect(displayWidth('한국어')).toBe(6);
    // regional indicators are emoji but psql counts them narrow
    expect(displayWidth('🇩🇪')).toBe(2);
  });
});

describe('isRightAligned', () => {
  it('right-aligns the numeric types only', () => {
    for (const oid of [20, 21, 23, 26, 700, 701, 790, 1700]) expect(isRightAligned(oid)).toBe(true);
    for (const oid of [16, 25, 1043, 1082, 1184, 3802, 0]) expect(isRightAligned(oid)).toBe(false);
  });
});
