import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import type { DecisionEvent, RecordedEvent, Recording, StartEvent } from '../../src/recording/events.js';
import { decodePostgresSession, renderPostgresReplay } from '../../src/recording/replay/postgres.js';
import { cstr, int16, int32, message } from '../helpers/pg-wire.js';

// ---- backend messages, written out by hand


function rowDescription(columns: [string, number][], format = 0): Buffer {
  const fields = columns.flatMap(([name, oid]) => [cstr(name), int32(0), int16(0), int32(oid), int16(-1), int32(-1), int16(format)]);
  return message('T', int16(columns.length), ...fields);
}
function dataRow(values: (string | Buffer | null)[]): Buffer {
  const cells = values.map((v) => {
    if (v === null) return int32(-1);
    const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    return Buffer.concat([int32(bytes.length), bytes]);
  });
  return message('D', int16(values.length), ...cells);
}
const commandComplete = (tag: string) => message('C', cstr(tag));
const fieldsBody = (fields: Record<string, string>) => [...Object.entries(fields).map(([k, v]) => cstr(k + v)), Buffer.from([0])];
const errorResponse = (fields: Record<string, string>) => message('E', ...fieldsBody(fields));
const noticeResponse = (fields: Record<string, string>) => message('N', ...fieldsBody(fields));
const readyForQuery = (status = 'I') => message('Z', Buffer.from(status));
const copyOutResponse = (columns: number) => message('H', Buffer.from([0]), int16(columns), ...Array.from({ length: columns }, () => int16(0)));
const copyData = (text: string) => message('d', Buffer.from(text, 'utf8'));
const copyDone = () => message('c');
const parseComplete = () => message('1');
const bindComplete = () => message('2');

// ---- a session, event by event

const START: StartEvent = {
  k: 'start',
  t: 0,
  at: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
  session: 'sess-1',
  protocol: 'postgres',
  node: 'node-a',
  workload: 'default/agent',
  groups: ['agents'],
  target: 'orders-db',
  pid: 4242,
  uid: 1000,
  comm: 'psql',
  cmdline: ['psql', '-X', '-c', 'SELECT 1'],
  dst: '10.0.0.5:5432',
  login: { clientUser: 'agent', database: 'orders', upstreamUser: 'reader' },
};

class Session {
  readonly events: RecordedEvent[] = [START];
  private t = 0;

  send(bytes: Buffer, ms = 1): this {
    this.t += ms;
    this.events.push({ k: 'in', t: this.t, b: bytes });
    return this;
  }
  receive(bytes: Buffer, ms = 1): this {
    this.t += ms;
    this.events.push({ k: 'out', t: this.t, b: bytes });
    return this;
  }
  decide(command: string, action: DecisionEvent['action'] = 'allow', more: Partial<DecisionEvent> = {}): this {
    this.events.push({ k: 'decision', t: this.t, command, via: 'simple', kinds: ['select'], action, rule: 'policy#1', ...more });
    return this;
  }
  note(event: RecordedEvent): this {
    this.events.push({ ...event, t: this.t } as RecordedEvent);
    return this;
  }
  end(): this {
    this.t += 1;
    this.events.push({ k: 'end', t: this.t, reason: 'client terminated', bytesIn: 120, bytesOut: 3456, commands: 9, rows: 7 });
    return this;
  }
  recording(more: Partial<Recording> = {}): Recording {
    const end = this.events.find((e) => e.k === 'end');
    return {
      id: 'sess-1',
      file: '/recordings/sess-1.ilrec',
      start: START,
      ...(end?.k === 'end' ? { end } : {}),
      events: this.events,
      sealed: true,
      truncated: false,
      problems: [],
      ...more,
    };
  }
}

// ---- a psql session, as recorded from the wire

/**
 * `psql -X -c <each sql>` against PostgreSQL 15: `answer` is what the server sent for each
 * statement (ReadyForQuery aside) and `stdout` what psql printed for it; `PSQL_STDOUT` is
 * psql's whole stdout for the run, captured as it was (the duplicate-key error went to stderr).
 */
const PSQL_STATEMENTS: { sql: string; answer: Buffer[]; stdout: string }[] = [
  {
    sql: 'CREATE TABLE items(id int PRIMARY KEY, name text, price numeric)',
    answer: [commandComplete('CREATE TABLE')],
    stdout: 'CREATE TABLE\n',
  },
  {
    sql: "INSERT INTO items VALUES (1, 'äpfel', 1.25), (2, '梨', NULL), (3, E'multi\\nline', -0.5)",
    answer: [commandComplete('INSERT 0 3')],
    stdout: 'INSERT 0 3\n',
  },
  {
    sql: 'SELECT * FROM items ORDER BY id',
    answer: [
      rowDescription([['id', 23], ['name', 25], ['price', 1700]]),
      dataRow(['1', 'äpfel', '1.25']),
      dataRow(['2', '梨', null]),
      dataRow(['3', 'multi\nline', '-0.5']),
      commandComplete('SELECT 3'),
    ],
    stdout: [' id | name  | price ', '----+-------+-------', '  1 | äpfel |  1.25', '  2 | 梨    |      ', '  3 | multi+|  -0.5', '    | line  | ', '(3 rows)', '', ''].join('\n'),
  },
  {
    sql: "INSERT INTO items VALUES (1, 'dup', 0)",
    answer: [errorResponse({ S: 'ERROR', V: 'ERROR', C: '23505', M: 'duplicate key value violates unique constraint "items_pkey"', D: 'Key (id)=(1) already exists.' })],
    stdout: '',
  },
  {
    sql: 'UPDATE items SET price = 0 WHERE id = 3 RETURNING id, price',
    answer: [rowDescription([['id', 23], ['price', 1700]]), dataRow(['3', '0']), commandComplete('UPDATE 1')],
    stdout: [' id | price ', '----+-------', '  3 |     0', '(1 row)', '', 'UPDATE 1', ''].join('\n'),
  },
  {
    sql: 'COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT',
    answer: [copyOutResponse(2), copyData('1\täpfel\n'), copyData('2\t梨\n'), copyData('3\tmulti\\nline\n'), copyDone(), commandComplete('COPY 3')],
    stdout: '1\täpfel\n2\t梨\n3\tmulti\\nline\n',
  },
  {
    sql: "SELECT count(*) AS n FROM items; SELECT 'two' AS second",
    answer: [
      rowDescription([['n', 20]]),
      dataRow(['3']),
      commandComplete('SELECT 1'),
      rowDescription([['second', 25]]),
      dataRow(['two']),
      commandComplete('SELECT 1'),
    ],
    stdout: [' n ', '---', ' 3', '(1 row)', '', ' second ', '--------', ' two', '(1 row)', '', ''].join('\n'),
  },
  { sql: 'DELETE FROM items WHERE id > 1', answer: [commandComplete('DELETE 2')], stdout: 'DELETE 2\n' },
  {
    sql: 'SELECT name FROM items WHERE false',
    answer: [rowDescription([['name', 25]]), commandComplete('SELECT 0')],
    stdout: [' name ', '------', '(0 rows)', '', ''].join('\n'),
  },
  { sql: 'DROP TABLE items', answer: [commandComplete('DROP TABLE')], stdout: 'DROP TABLE\n' },
];

const PSQL_STDOUT = [
  'CREATE TABLE',
  'INSERT 0 3',
  ' id | name  | price ',
  '----+-------+-------',
  '  1 | äpfel |  1.25',
  '  2 | 梨    |      ',
  '  3 | multi+|  -0.5',
  '    | line  | ',
  '(3 rows)',
  '',
  ' id | price ',
  '----+-------',
  '  3 |     0',
  '(1 row)',
  '',
  'UPDATE 1',
  '1\täpfel',
  '2\t梨',
  '3\tmulti\\nline',
  ' n ',
  '---',
  ' 3',
  '(1 row)',
  '',
  ' second ',
  '--------',
  ' two',
  '(1 row)',
  '',
  'DELETE 2',
  ' name ',
  '------',
  '(0 rows)',
  '',
  'DROP TABLE',
  '',
].join('\n');

function psqlSession(): Session {
  const s = new Session();
  for (const { sql, answer } of PSQL_STATEMENTS) {
    s.send(serialize.query(sql)).decide(sql).receive(Buffer.concat([...answer, readyForQuery()]), 3);
  }
  return s.send(serialize.end()).end();
}

/** The same events with every data event cut into pieces of 1 to 7 bytes. */
function fragmented(events: RecordedEvent[]): RecordedEvent[] {
  let n = 0;
  return events.flatMap((e) => {
    if (e.k !== 'in' && e.k !== 'out') return [e];
    const pieces: RecordedEvent[] = [];
    for (let at = 0; at < e.b.length; ) {
      const len = 1 + (n++ % 7);
      pieces.push({ ...e, b: e.b.subarray(at, at + len) });
      at += len;
    }
    return pieces;
  });
}

describe('renderPostgresReplay of a psql session', () => {
  it('the captured statements add up to psql stdout', () => {
    expect(PSQL_STATEMENTS.map((s) => s.stdout).join('')).toBe(PSQL_STDOUT);
  });

  it('resultsOnly prints exactly what psql printed to stdout', () => {
    expect(renderPostgresReplay(psqlSession().recording(), { resultsOnly: true })).toBe(PSQL_STDOUT);
  });

  it('shows each statement with its decision, its SQL and then psql output verbatim', () => {
    const timeline = renderPostgresReplay(psqlSession().recording());
    for (const { sql, stdout } of PSQL_STATEMENTS) {
      const header = '-- \\+\\d+\\.\\d{3}s allow by policy#1 \\[select\\]\\n';
      const prompt = '=> ' + sql.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '\\n';
      expect(timeline).toMatch(new RegExp(header + prompt));
      expect(timeline).toContain(`=> ${sql}\n${stdout}`);
    }
  });

  it('prints an error where it happened, as psql prints it', () => {
    const timeline = renderPostgresReplay(psqlSession().recording());
    expect(timeline).toContain(
      "=> INSERT INTO items VALUES (1, 'dup', 0)\n" +
        'ERROR:  duplicate key value violates unique constraint "items_pkey"\n' +
        'DETAIL:  Key (id)=(1) already exists.\n',
    );
  });

  it('gives times as offsets from the start', () => {
    const timeline = renderPostgresReplay(psqlSession().recording());
    expect(timeline).toContain("-- +0.001s allow by policy#1 [select]\n=> CREATE TABLE items");
    expect(timeline).toContain("-- +0.005s allow by policy#1 [select]\n=> INSERT INTO items VALUES (1, 'äpfel'");
  });

  it('decodes the same whatever way the bytes were split into events', () => {
    const whole = psqlSession().recording();
    const pieces = { ...whole, events: fragmented(whole.events) };
    expect(pieces.events.length).toBeGreaterThan(whole.events.length * 5);
    expect(renderPostgresReplay(pieces, { resultsOnly: true })).toBe(PSQL_STDOUT);
    expect(renderPostgresReplay(pieces)).toBe(renderPostgresReplay(whole));
  });

  it('pairs decisions with pipelined queries in order', () => {
    const s = new Session()
      .send(Buffer.concat([serialize.query('SELECT 1 AS a'), serialize.query('DELETE FROM t')]))
      .decide('SELECT 1 AS a', 'allow', { rule: 'policy#1', kinds: ['select'] })
      .decide('DELETE FROM t', 'deny', { rule: 'policy#2', kinds: ['delete'], message: 'interlock: no deletes' })
      .receive(
        Buffer.concat([
          rowDescription([['a', 23]]),
          dataRow(['1']),
          commandComplete('SELECT 1'),
          readyForQuery(),
          errorResponse({ S: 'ERROR', C: '42501', M: 'interlock: no deletes', D: 'rule policy#2' }),
          readyForQuery(),
        ]),
      );
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain('-- +0.001s allow by policy#1 [select]\n=> SELECT 1 AS a\n a \n---\n 1\n(1 row)\n\n');
    expect(timeline).toContain(
      '-- +0.001s deny by policy#2 [delete]: interlock: no deletes\n=> DELETE FROM t\nERROR:  interlock: no deletes\nDETAIL:  rule policy#2\n',
    );
  });
});

describe('renderPostgresReplay: the frame around the commands', () => {
  it('starts with who, what and when', () => {
    const timeline = renderPostgresReplay(psqlSession().recording());
    const head = timeline.split('\n\n')[0];
    expect(head).toBe(
      [
        '-- session sess-1',
        '-- protocol postgres, recorded on node-a',
        '-- workload default/agent (groups: agents)',
        '-- target orders-db (dialled 10.0.0.5:5432)',
        "-- agent pid 4242, uid 1000, comm psql: psql -X -c 'SELECT 1'",
        '-- login clientUser=agent database=orders upstreamUser=reader',
        '-- started 2024-01-02T03:04:05.678Z',
      ].join('\n'),
    );
  });

  it('ends with the end event', () => {
    const timeline = renderPostgresReplay(psqlSession().recording());
    expect(timeline.endsWith('-- +0.042s end: client terminated; 120 bytes in, 3456 bytes out, 9 commands, 7 rows\n')).toBe(true);
    expect(timeline).not.toContain('recording incomplete');
  });

  it('says so when the recording was never sealed', () => {
    const s = new Session().send(serialize.query('SELECT 1')).decide('SELECT 1');
    const timeline = renderPostgresReplay(s.recording({ sealed: false }));
    expect(timeline.endsWith('-- recording incomplete: the session did not end cleanly (no seal)\n')).toBe(true);
  });

  it('puts integrity problems first', () => {
    const timeline = renderPostgresReplay(psqlSession().recording({ problems: ['chunk 2 (at byte 4096): HMAC mismatch'] }));
    expect(timeline.startsWith('-- !! INTEGRITY PROBLEMS')).toBe(true);
    expect(timeline.split('\n')[1]).toBe('-- !! chunk 2 (at byte 4096): HMAC mismatch');
  });

  it('notes masking after the statement it applied to', () => {
    const s = new Session()
      .send(serialize.query('SELECT email FROM users'))
      .decide('SELECT email FROM users')
      .receive(Buffer.concat([rowDescription([['email', 25]]), dataRow(['****@example.com']), dataRow(['****@example.org'])]))
      .note({ k: 'masked', t: 0, tag: 'SELECT 2', counts: { email: 2, 'detector:ssn': 1 } })
      .receive(Buffer.concat([commandComplete('SELECT 2'), readyForQuery()]));
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain('(2 rows)\n\n-- masked 3 values in SELECT 2: email 2, detector:ssn 1\n');
    expect(renderPostgresReplay(s.recording(), { resultsOnly: true })).not.toContain('masked');
  });

  it('marks where the recording was truncated', () => {
    const s = new Session()
      .send(serialize.query('SELECT 1 AS one'))
      .decide('SELECT 1 AS one')
      .receive(Buffer.concat([rowDescription([['one', 23]]), dataRow(['1'])]))
      .note({ k: 'truncated', t: 0, bytes: 1048576 })
      .end();
    const timeline = renderPostgresReplay(s.recording({ truncated: true }));
    expect(timeline).toMatch(/-- \+0\.002s truncated: the recording reached its size cap at 1048576 bytes/);
    expect(timeline).toContain('-- 1 row arrived before the recording ended:\n one \n-----\n   1\n(1 row)\n');
    expect(timeline.indexOf('truncated')).toBeLessThan(timeline.indexOf('-- +0.003s end'));
  });

  it('shows a held command with its approval', () => {
    const s = new Session()
      .send(serialize.query('UPDATE orders SET state = 1'))
      .decide('UPDATE orders SET state = 1', 'approve', { rule: 'policy#4', kinds: ['update'], message: 'needs a human' })
      .note({ k: 'approval', t: 0, command: 'UPDATE orders SET state = 1', outcome: 'approved', by: 'alice', reason: 'ticket 12' })
      .receive(Buffer.concat([commandComplete('UPDATE 5'), readyForQuery()]));
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain(
      '-- +0.001s approve by policy#4 [update]: needs a human\n=> UPDATE orders SET state = 1\n-- +0.001s approved by alice (ticket 12)\nUPDATE 5\n',
    );
  });

  it('prints notices inline but not in resultsOnly', () => {
    const s = new Session()
      .send(serialize.query('DROP TABLE IF EXISTS gone'))
      .decide('DROP TABLE IF EXISTS gone')
      .receive(
        Buffer.concat([noticeResponse({ S: 'NOTICE', C: '00000', M: 'table "gone" does not exist, skipping' }), commandComplete('DROP TABLE'), readyForQuery()]),
      );
    expect(renderPostgresReplay(s.recording())).toContain('NOTICE:  table "gone" does not exist, skipping\nDROP TABLE\n');
    expect(renderPostgresReplay(s.recording(), { resultsOnly: true })).toBe('DROP TABLE\n');
  });

  it('survives bytes that are not PostgreSQL messages', () => {
    const s = new Session().send(serialize.query('SELECT 1')).decide('SELECT 1').receive(Buffer.from('Tgarbage that is not a message'));
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain('=> SELECT 1\n');
    expect(timeline).toMatch(/-- \+0\.002s server bytes: not PostgreSQL protocol from here on/);
  });

  it('keeps a decision whose command bytes were not recorded', () => {
    const s = new Session().decide('SELECT secret FROM vault', 'deny', { message: 'no' });
    expect(renderPostgresReplay(s.recording())).toContain(
      '-- +0.000s deny by policy#1 [select]: no (the command itself was not recorded)\n=> SELECT secret FROM vault\n',
    );
  });
});

describe('renderPostgresReplay: extended protocol', () => {
  const extendedQuery = (opts: { name?: string; sql?: string; values: unknown[]; binary?: boolean }) =>
    Buffer.concat([
      ...(opts.sql !== undefined ? [serialize.parse({ name: opts.name ?? '', text: opts.sql, types: [] })] : []),
      serialize.bind({ statement: opts.name ?? '', values: opts.values, binary: opts.binary }),
      serialize.describe({ type: 'P' }),
      serialize.execute(),
      serialize.sync(),
    ]);

  it('pairs Parse with Bind and Execute and shows the parameters', () => {
    const sql = 'SELECT $1::int AS n, $2::text AS t, $3::bytea AS b, $4::text AS nothing';
    const s = new Session()
      .send(extendedQuery({ sql, values: ['42', "it's", Buffer.from([1, 2, 0xff]), null] }))
      .decide(sql, 'allow', { via: 'extended', statement: '' })
      .receive(
        Buffer.concat([
          parseComplete(),
          bindComplete(),
          rowDescription([['n', 23], ['t', 25], ['b', 17], ['nothing', 25]]),
          dataRow(['42', "it's", '\\x0102ff', null]),
          commandComplete('SELECT 1'),
          readyForQuery(),
        ]),
      );
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain(
      [
        '-- +0.001s allow by policy#1 [select] (extended protocol, statement (unnamed))',
        `=> ${sql}`,
        "-- parameters: $1 = '42', $2 = 'it''s', $3 = \\x0102ff (binary), $4 = NULL",
        ' n  |  t   |    b     | nothing ',
        '----+------+----------+---------',
        " 42 | it's | \\x0102ff | ",
        '(1 row)',
        '',
      ].join('\n'),
    );
  });

  it('shows each execution of a named statement at its own time', () => {
    const sql = 'SELECT relname FROM pg_class WHERE oid = $1';
    const answer = (name: string) =>
      Buffer.concat([bindComplete(), rowDescription([['relname', 19]]), dataRow([name]), commandComplete('SELECT 1'), readyForQuery()]);
    const s = new Session()
      .send(extendedQuery({ name: 'by-id', sql, values: ['1259'] }))
      .decide(sql, 'allow', { via: 'extended', statement: 'by-id', rule: 'policy#2' })
      .receive(Buffer.concat([parseComplete(), answer('pg_class')]))
      .send(extendedQuery({ name: 'by-id', values: ['1247'] }), 10)
      .receive(answer('pg_type'));
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain(
      "-- +0.001s allow by policy#2 [select] (extended protocol, statement \"by-id\")\n=> SELECT relname FROM pg_class WHERE oid = $1\n-- parameters: $1 = '1259'\n relname  \n----------\n pg_class\n(1 row)\n",
    );
    expect(timeline).toContain(
      "-- +0.012s execute statement \"by-id\" (parsed at +0.001s, allow by policy#2 [select])\n=> SELECT relname FROM pg_class WHERE oid = $1\n-- parameters: $1 = '1247'\n relname \n---------\n pg_type\n(1 row)\n",
    );
  });

  it('after an error skips to Sync, and the next command gets its own results', () => {
    const s = new Session()
      .send(extendedQuery({ sql: 'SELECT 1/$1::int AS boom', values: ['0'] }))
      .decide('SELECT 1/$1::int AS boom', 'allow', { via: 'extended' })
      .send(extendedQuery({ sql: 'SELECT $1::int AS ok', values: ['7'] }))
      .decide('SELECT $1::int AS ok', 'allow', { via: 'extended' })
      .receive(
        Buffer.concat([
          parseComplete(),
          bindComplete(),
          rowDescription([['boom', 23]]),
          errorResponse({ S: 'ERROR', C: '22012', M: 'division by zero' }),
          readyForQuery(),
          parseComplete(),
          bindComplete(),
          rowDescription([['ok', 23]]),
          dataRow(['7']),
          commandComplete('SELECT 1'),
          readyForQuery(),
        ]),
      );
    const timeline = renderPostgresReplay(s.recording());
    expect(timeline).toContain("=> SELECT 1/$1::int AS boom\n-- parameters: $1 = '0'\nERROR:  division by zero\n\n");
    expect(timeline).toContain("=> SELECT $1::int AS ok\n-- parameters: $1 = '7'\n ok \n----\n  7\n(1 row)\n");
    expect(renderPostgresReplay(s.recording(), { resultsOnly: true })).toBe(' ok \n----\n  7\n(1 row)\n\n');
  });

  it('shows binary-format result values as hex', () => {
    const s = new Session()
      .send(extendedQuery({ sql: 'SELECT 42 AS n', values: [], binary: true }))
      .receive(
        Buffer.concat([parseComplete(), bindComplete(), rowDescription([['n', 23]], 1), dataRow([int32(42)]), commandComplete('SELECT 1'), readyForQuery()]),
      );
    expect(renderPostgresReplay(s.recording(), { resultsOnly: true })).toBe('     n      \n------------\n \\x0000002a\n(1 row)\n\n');
  });
});

describe('decodePostgresSession', () => {
  it('ties every backend message to the request it answers', () => {
    const s = new Session()
      .send(Buffer.concat([serialize.parse({ text: 'SELECT 1', types: [] }), serialize.bind({}), serialize.execute(), serialize.sync(), serialize.query('BEGIN')]))
      .receive(Buffer.concat([parseComplete(), bindComplete(), dataRow(['1']), commandComplete('SELECT 1'), readyForQuery(), commandComplete('BEGIN'), readyForQuery('T')]));
    const items = decodePostgresSession(s.events);
    const name = (i: number | undefined) => {
      const item = i === undefined ? undefined : items[i];
      return item?.kind === 'in' ? item.message.name : undefined;
    };
    const answered = items.flatMap((item) => (item.kind === 'out' ? [`${item.message.name}->${name(item.answers)}`] : []));
    expect(answered).toEqual([
      'ParseComplete->Parse',
      'BindComplete->Bind',
      'DataRow->Execute',
      'CommandComplete->Execute',
      'ReadyForQuery->Sync',
      'CommandComplete->Query',
      'ReadyForQuery->Query',
    ]);
    const row = items.find((i) => i.kind === 'out' && i.message.name === 'DataRow');
    expect(row?.kind === 'out' && row.cells).toEqual(['1']);
    expect(items[0]).toEqual({ kind: 'event', event: START });
  });
});
