/**
 * The PostgreSQL session against a real server, without the redirect: a loopback
 * listener hands each accepted socket to PostgresSession with a fixed target, and
 * unmodified psql talks to it. Covers every upstream login method the proxy speaks
 * (SCRAM-SHA-256, md5, cleartext, trust) and a wrong vaulted password.
 */
import { NOT_RECORDED } from '../../src/recording/recorder.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import type { TargetDef } from '../../src/config/types.js';
import { initAnalysis } from '../../src/policy/analysis.js';
import { RuleSet } from '../../src/policy/rules.js';

const canRun = process.getuid?.() === 0;
if (!canRun && process.env.INTERLOCK_REQUIRE_BPF === '1') throw new Error('integration tests need root (they start PostgreSQL as user postgres)');

describe.skipIf(!canRun)('upstream login methods against a real PostgreSQL', () => {
  let root: string;
  let pg: TestPostgres;
  const servers: Server[] = [];
  const audits: { event: string; fields: Record<string, unknown> }[] = [];

  beforeAll(async () => {
    await initAnalysis();
    root = mkdtempSync('/tmp/interlock-login-');
    chmodSync(root, 0o755);
    pg = startPostgres(join(root, 'pg'), {
      host: '127.0.0.6',
      hba: [
        'host orders md5user 127.0.0.0/8 md5',
        'host orders clearuser 127.0.0.0/8 password',
        'host orders trustuser 127.0.0.0/8 trust',
      ],
    });
    pg.superSql(`SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5-pw';
      SET password_encryption = 'scram-sha-256'; CREATE ROLE clearuser LOGIN PASSWORD 'clear-pw'; CREATE ROLE trustuser LOGIN;`);
    writeFileSync(join(root, 'md5'), 'md5-pw\n');
    writeFileSync(join(root, 'clear'), 'clear-pw');
    writeFileSync(join(root, 'scram'), pg.password);
    writeFileSync(join(root, 'wrong'), 'not-the-password');
  });

  afterAll(() => {
    for (const s of servers) s.close();
    pg?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  const allowAll = new RuleSet([{ name: 'all', subjects: { groups: [], workloads: [] }, targets: [], masking: [],
    rules: [{ action: 'allow', match: { statements: ['select'] } }] }]);

  /** a proxy listener for one target; returns its port */
  async function proxyFor(user: string, secret?: string): Promise<number> {
    const target: TargetDef = {
      name: `${user}-target`, protocol: 'postgres', address: { host: '127.0.0.6', port: 5432 },
      upstream: { host: '127.0.0.6', port: 5432, user, database: 'orders', password: secret ? { file: join(root, secret) } : undefined },
    };
    const server = createServer((client) => {
      let n = 0;
      new PostgresSession({
        client, target, judge: allowAll,
        hooks: {
          audit: (event, fields) => audits.push({ event, fields }),
          auditSerialized: (event, members) => audits.push({ event, fields: JSON.parse(`{${members}}`) }),
          startRecording: () => NOT_RECORDED,
          cancel: () => {},
          registerCancelKey: () => ({ processId: 4242, secretKey: ++n }),
          closed: () => {},
        },
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as AddressInfo).port;
  }

  // asynchronous: the proxy under test runs in this very process
  const psql = (port: number, sql: string) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', sql], {
        env: { PATH: process.env.PATH }, timeout: 15_000,
      });
      let stdout = '', stderr = '';
      c.stdout.on('data', (d) => (stdout += d));
      c.stderr.on('data', (d) => (stderr += d));
      c.on('close', (status) => resolve({ status, stdout, stderr }));
    });

  for (const [method, user, secret] of [
    ['SCRAM-SHA-256', 'app', 'scram'],
    ['md5', 'md5user', 'md5'],
    ['cleartext password', 'clearuser', 'clear'],
    ['trust', 'trustuser', undefined],
  ] as const) {
    it(`logs in upstream with ${method}`, async () => {
      const r = await psql(await proxyFor(user, secret), "select current_user, (select count(*) from pg_stat_activity where usename = current_user)");
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(`${user}|1`);
      expect(pg.log()).toMatch(new RegExp(`connection authorized: user=${user} database=orders`));
    });
  }

  it('hands the client a backend key of its own, never the server\'s', async () => {
    const port = await proxyFor('app', 'scram');
    const sock = connect(port, '127.0.0.1');
    const params = Buffer.from('user\0agent\0database\0orders\0\0');
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + params.length, 0);
    head.writeInt32BE(196608, 4);
    sock.write(Buffer.concat([head, params]));
    let buf = Buffer.alloc(0);
    const types: string[] = [];
    let key: [number, number] | undefined;
    const authCodes: number[] = [];
    await new Promise<void>((resolve, reject) => {
      sock.on('error', reject);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
          const type = String.fromCharCode(buf[0]);
          const body = buf.subarray(5, 1 + buf.readInt32BE(1));
          types.push(type);
          if (type === 'R') authCodes.push(body.readInt32BE(0));
          if (type === 'K') key = [body.readInt32BE(0), body.readInt32BE(4)];
          buf = buf.subarray(1 + buf.readInt32BE(1));
          if (type === 'Z') return resolve();
        }
      });
    });
    sock.destroy();
    // AuthenticationOk without any password request, then the server's parameters, our key, ready
    expect(types[0]).toBe('R');
    expect(authCodes).toEqual([0]);
    expect(types).toContain('S');
    expect(types.at(-1)).toBe('Z');
    expect(key).toEqual([4242, 1]);
  });

  it('answers a client asking for protocol 3.2 and _pq_ options with NegotiateProtocolVersion 3.0, then serves it', async () => {
    const port = await proxyFor('app', 'scram');
    const sock = connect(port, '127.0.0.1');
    const params = Buffer.from('user\0agent\0database\0orders\0_pq_.future\0on\0\0');
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + params.length, 0);
    head.writeInt32BE((3 << 16) | 2, 4);
    sock.write(Buffer.concat([head, params]));
    let buf = Buffer.alloc(0);
    const types: string[] = [];
    let negotiated: { minor: number; options: string } | undefined;
    await new Promise<void>((resolve, reject) => {
      sock.on('error', reject);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
          const type = String.fromCharCode(buf[0]);
          const body = buf.subarray(5, 1 + buf.readInt32BE(1));
          types.push(type);
          if (type === 'v') negotiated = { minor: body.readInt32BE(0), options: body.subarray(8).toString('latin1') };
          buf = buf.subarray(1 + buf.readInt32BE(1));
          if (type === 'Z') return resolve();
        }
      });
    });
    sock.destroy();
    expect(types[0]).toBe('v');
    expect(negotiated).toEqual({ minor: 0, options: '_pq_.future\0' });
    expect(types.at(-1)).toBe('Z');
  });

  it('turns a wrong vaulted password into a clear error for the agent', async () => {
    const r = await psql(await proxyFor('app', 'wrong'), 'select 1');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('target app-target refused interlock\'s login: password authentication failed for user "app"');
  });

  it('says so when the target needs a password and none is configured', async () => {
    const r = await psql(await proxyFor('md5user'), 'select 1');
    expect(r.stderr).toMatch(/interlock could not log in to target md5user-target: .*password/);
  });
});
