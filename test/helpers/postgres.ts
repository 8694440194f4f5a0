/** A real PostgreSQL 15 for the tests: SCRAM auth, user app, database orders, statement log. */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PGBIN = ['/usr/lib/postgresql/15/bin', '/usr/local/bin'].find((d) => existsSync(join(d, 'initdb')))!;

export interface TestPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** everything the server logged (connections, statements) */
  log(): string;
  /** run SQL as the superuser over the unix socket, bypassing everything */
  superSql(sql: string): string;
  /** pg_ctl restart -m fast: every backend is ended, the server comes back on the same address */
  restart(): void;
  stop(): void;
}

function asPostgres(cmd: string, input?: string): string {
  return execFileSync('su', ['postgres', '-s', '/bin/sh', '-c', cmd], { input, encoding: 'utf8' });
}

/** Is some socket listening on this IPv4 address and port? (from /proc/net/tcp: no tool needed) */
function listening(host: string, port: number): boolean {
  const hexIp = host.split('.').map((o) => Number(o).toString(16).padStart(2, '0').toUpperCase()).reverse().join('');
  const local = `${hexIp}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === local && f[3] === '0A'; // 0A: LISTEN
  });
}

export interface PostgresOptions {
  host?: string;
  port?: number;
  /** pg_hba.conf lines placed before the default (scram-sha-256 for everyone) */
  hba?: string[];
  /** the server's max_connections (load tests need more than the default 60) */
  maxConnections?: number;
}

export function startPostgres(dir: string, { host = '127.0.0.3', port = 5432, hba = [], maxConnections = 60 }: PostgresOptions = {}): TestPostgres {
  if (listening(host, port)) throw new Error(`${host}:${port} is already in use (a leftover server from a demo or an earlier run?)`);
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  mkdirSync(dir, { recursive: true });
  chownSync(dir, uid, uid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  writeFileSync(join(dir, 'pw'), 'superpw\n');
  chownSync(join(dir, 'pw'), uid, uid);
  asPostgres(`${PGBIN}/initdb -D ${data} -A scram-sha-256 --pwfile=${dir}/pw >/dev/null`);
  writeFileSync(
    join(data, 'postgresql.conf'),
    [
      `listen_addresses = '${host}'`,
      `port = ${port}`,
      `unix_socket_directories = '${dir}'`,
      `password_encryption = 'scram-sha-256'`,
      `log_connections = on`,
      `log_disconnections = on`,
      `log_statement = 'all'`,
      `log_line_prefix = '%m [%p] %u@%d '`,
      `max_connections = ${maxConnections}`,
      `fsync = off`,
    ].join('\n') + '\n',
    { flag: 'a' },
  );
  if (hba.length) {
    const conf = join(data, 'pg_hba.conf');
    writeFileSync(conf, `${hba.join('\n')}\n${readFileSync(conf, 'utf8')}`);
  }
  asPostgres(`${PGBIN}/pg_ctl -D ${data} -l ${logFile} -w start >/dev/null`);
  const password = 's3cret-upstream-pw';
  const superSql = (sql: string) =>
    asPostgres(`PGPASSWORD=superpw psql -h ${dir} -p ${port} -d orders -qAtX -v ON_ERROR_STOP=1`, sql);
  asPostgres(`PGPASSWORD=superpw psql -h ${dir} -p ${port} -d postgres -qAtX -v ON_ERROR_STOP=1`,
    `CREATE ROLE app LOGIN PASSWORD '${password}'; CREATE DATABASE orders OWNER app;`);
  superSql(`SET ROLE app;
    CREATE TABLE customers (id int primary key, name text, email text);
    INSERT INTO customers VALUES (1,'Ada Lovelace','ada@example.com'),(2,'Alan Turing','alan@example.org');`);
  return {
    host, port, user: 'app', password, database: 'orders',
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    superSql,
    restart: () => {
      asPostgres(`${PGBIN}/pg_ctl -D ${data} -l ${logFile} -m fast -w restart >/dev/null`);
    },
    stop: () => {
      spawnSync('su', ['postgres', '-s', '/bin/sh', '-c', `${PGBIN}/pg_ctl -D ${data} -m immediate -w stop`], { stdio: 'ignore' });
    },
  };
}
