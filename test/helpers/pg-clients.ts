/**
 * Real PostgreSQL client libraries, run as an agent: node-postgres (named statements),
 * postgres.js (prepared, describe skipped once known), asyncpg (statement cache) and
 * psycopg 3 (prepare=True). Each runs a list of statements in one connection through
 * the extended protocol and prints one JSON line per statement: its rows (every value as
 * text) or its error. Placeholders are written $1, $2 … for every library.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runAgent, type AgentResult } from './agent.js';

export type ClientLib = 'node-postgres' | 'postgres.js' | 'asyncpg' | 'psycopg';
export const CLIENT_LIBS: readonly ClientLib[] = ['node-postgres', 'postgres.js', 'asyncpg', 'psycopg'];

export interface ClientStatement {
  sql: string;
  params?: (string | number)[];
}

export interface ClientAnswer {
  rows?: (string | null)[][];
  error?: { code?: string; message: string };
}

export interface ClientRun extends AgentResult {
  /** one per statement, in order (fewer when the script died) */
  answers: ClientAnswer[];
  /** stdout and stderr together: what the agent could see */
  seen: string;
}

const MODULES = join(import.meta.dirname, '../../node_modules');

const NODE_PG = `
const { Client } = require(${JSON.stringify(join(MODULES, 'pg'))});
const [host, port, spec] = [process.argv[2], Number(process.argv[3]), JSON.parse(process.argv[4])];
const text = (v) => (v === null ? null : typeof v === 'object' && !Buffer.isBuffer(v) ? JSON.stringify(v) : String(v));
(async () => {
  const c = new Client({ host, port, user: 'agent', database: 'orders' });
  await c.connect();
  const names = new Map();
  for (const s of spec) {
    if (!names.has(s.sql)) names.set(s.sql, 'interlock_test_' + names.size);
    try {
      const r = await c.query({ name: names.get(s.sql), text: s.sql, values: s.params ?? [], rowMode: 'array' });
      console.log(JSON.stringify({ rows: r.rows.map((row) => row.map(text)) }));
    } catch (e) {
      console.log(JSON.stringify({ error: { code: e.code, message: e.message } }));
    }
  }
  await c.end();
})().catch((e) => { console.error(e.stack ?? String(e)); process.exit(1); });
`;

const POSTGRES_JS = `
import postgres from ${JSON.stringify(`file://${join(MODULES, 'postgres/src/index.js')}`)};
const [host, port, spec] = [process.argv[2], Number(process.argv[3]), JSON.parse(process.argv[4])];
const text = (v) => (v === null ? null : typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Date) ? JSON.stringify(v) : String(v));
const sql = postgres({ host, port, username: 'agent', database: 'orders', max: 1, onnotice: () => {} });
for (const s of spec) {
  try {
    const rows = await sql.unsafe(s.sql, s.params ?? [], { prepare: true }).values();
    console.log(JSON.stringify({ rows: rows.map((row) => row.map(text)) }));
  } catch (e) {
    console.log(JSON.stringify({ error: { code: e.code, message: e.message } }));
  }
}
await sql.end();
`;

const ASYNCPG = `
import asyncio, json, sys, asyncpg
host, port, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
def text(v):
    return None if v is None else str(v)
async def main():
    c = await asyncpg.connect(host=host, port=port, user='agent', database='orders', password='unused')
    for s in spec:
        try:
            rows = await c.fetch(s['sql'], *s.get('params', []))
            print(json.dumps({'rows': [[text(v) for v in r.values()] for r in rows]}), flush=True)
        except Exception as e:
            print(json.dumps({'error': {'code': getattr(e, 'sqlstate', type(e).__name__), 'message': str(e)}}), flush=True)
    await c.close()
asyncio.run(main())
`;

const PSYCOPG = `
import json, re, sys, psycopg
host, port, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
def text(v):
    return None if v is None else str(v)
with psycopg.connect(host=host, port=port, user='agent', dbname='orders', autocommit=True) as c:
    for s in spec:
        params = s.get('params') or None
        q = re.sub(r'\\$\\d+', '%s', s['sql'].replace('%', '%%')) if params else s['sql']
        try:
            cur = c.execute(q, params, prepare=True)
            rows = cur.fetchall() if cur.description else []
            print(json.dumps({'rows': [[text(v) for v in r] for r in rows]}), flush=True)
        except psycopg.Error as e:
            print(json.dumps({'error': {'code': e.sqlstate, 'message': str(e)}}), flush=True)
`;

const SCRIPTS: Record<ClientLib, { file: string; body: string; cmd: () => string }> = {
  'node-postgres': { file: 'node-pg.cjs', body: NODE_PG, cmd: () => process.execPath },
  'postgres.js': { file: 'postgres-js.mjs', body: POSTGRES_JS, cmd: () => process.execPath },
  asyncpg: { file: 'asyncpg-client.py', body: ASYNCPG, cmd: () => '/usr/bin/python3' },
  psycopg: { file: 'psycopg-client.py', body: PSYCOPG, cmd: () => '/usr/bin/python3' },
};

/** Writes the four client scripts into dir (readable by the agent user); returns a runner. */
export function clientScripts(dir: string) {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  for (const s of Object.values(SCRIPTS)) {
    writeFileSync(join(dir, s.file), s.body);
    chmodSync(join(dir, s.file), 0o644);
  }
  /** runs `statements` with one library as an agent in cgroupDir, connecting to host:port */
  return async (lib: ClientLib, cgroupDir: string, host: string, statements: ClientStatement[], port = 5432): Promise<ClientRun> => {
    const s = SCRIPTS[lib];
    const r = await runAgent(cgroupDir, s.cmd(), [join(dir, s.file), host, String(port), JSON.stringify(statements)], { timeoutMs: 30_000 });
    const answers = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ClientAnswer);
    return { ...r, answers, seen: `${r.stdout}\n${r.stderr}` };
  };
}
