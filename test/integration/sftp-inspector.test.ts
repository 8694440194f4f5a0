/**
 * SftpInspector between OpenSSH's own sftp/scp clients and OpenSSH's sftp-server, no sshd:
 * `sftp -D` / `scp -D` start a small relay script as "the server", the relay passes the bytes
 * over a Unix socket to this process, which runs the inspector and a real sftp-server child.
 * Allowed operations must work as without the inspector; denied ones must fail with
 * "Permission denied" and leave the disk untouched.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join, posix } from 'node:path';
import { SftpInspector, type PathAccess, type SftpFileEvent } from '../../src/protocols/ssh/sftp.js';

const SFTP_SERVER = process.env.INTERLOCK_SFTP_SERVER ?? '/usr/lib/openssh/sftp-server';
const missing = [SFTP_SERVER, '/usr/bin/sftp', '/usr/bin/scp'].filter((p) => !existsSync(p));
if (missing.length) console.warn(`sftp-inspector integration test skipped: ${missing.join(', ')} not found (Debian package openssh-sftp-server / openssh-client)`);

describe.skipIf(missing.length > 0)('SftpInspector between OpenSSH sftp/scp and sftp-server', () => {
  let root: string;
  /** the server's login directory; ro/ may be read, secret/ not at all */
  let home: string;
  let local: string;
  let relay: string;
  let server: Server;
  const children = new Set<ChildProcess>();
  let events: SftpFileEvent[] = [];
  let decisions: { access: PathAccess; path: string; op: string; allowed: boolean }[] = [];
  let protocolErrors: Error[] = [];

  /** The test's policy; it normalises paths against the login directory, as the proxy's decider does. */
  function decide(access: PathAccess, path: string, op: string) {
    const abs = posix.resolve(home, path);
    const under = (dir: string) => abs === join(home, dir) || abs.startsWith(join(home, dir) + '/');
    let message: string | undefined;
    if (!abs.startsWith(root)) message = `interlock: ${abs} is outside the sandbox`;
    else if (under('secret')) message = `interlock: ${path} is secret`;
    else if (access === 'write' && under('ro')) message = `interlock: ${path} is read-only`;
    decisions.push({ access, path, op, allowed: !message });
    return message ? { allowed: false as const, message } : { allowed: true as const };
  }

  /** One relayed session: the inspector between the relay's socket and a fresh sftp-server. */
  function serve(sock: Socket): void {
    const child = spawn(SFTP_SERVER, ['-d', home], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.add(child);
    const inspector = new SftpInspector(decide, (e) => events.push(e));
    const fail = (e: Error) => {
      protocolErrors.push(e);
      sock.destroy();
      child.kill();
    };
    sock.on('data', (d: Buffer) => {
      try {
        const { toServer, toClient } = inspector.fromClient(d);
        for (const b of toServer) child.stdin!.write(b);
        for (const b of toClient) sock.write(b);
      } catch (e) {
        fail(e as Error);
      }
    });
    child.stdout!.on('data', (d: Buffer) => {
      try {
        for (const b of inspector.fromServer(d)) sock.write(b);
      } catch (e) {
        fail(e as Error);
      }
    });
    sock.on('end', () => child.stdin!.end());
    sock.on('error', () => child.kill());
    child.stdin!.on('error', () => {});
    child.on('close', () => {
      children.delete(child);
      inspector.close();
      sock.end();
    });
  }

  beforeAll(async () => {
    root = mkdtempSync('/tmp/interlock-sftp-');
    home = join(root, 'home');
    local = join(root, 'local');
    mkdirSync(home);
    mkdirSync(local);
    const socket = join(root, 'inspector.sock');
    server = createServer(serve);
    await new Promise<void>((ok) => server.listen(socket, ok));
    // `sftp -D` takes a command line, `scp -D` only a program path: a script that knows the socket
    relay = join(root, 'relay.mjs');
    writeFileSync(relay, [
      `#!${process.execPath}`,
      `import { connect } from 'node:net';`,
      `const s = connect(${JSON.stringify(socket)});`,
      `process.stdin.pipe(s);`,
      `s.pipe(process.stdout);`,
      `s.on('error', (e) => { console.error('relay: ' + e.message); process.exit(1); });`,
      '',
    ].join('\n'));
    chmodSync(relay, 0o755);
  });

  afterAll(() => {
    for (const c of children) c.kill();
    server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  beforeEach(() => {
    rmSync(home, { recursive: true, force: true });
    mkdirSync(join(home, 'ro'), { recursive: true });
    mkdirSync(join(home, 'secret'));
    writeFileSync(join(home, 'ro', 'report.txt'), 'quarterly numbers\n');
    writeFileSync(join(home, 'secret', 'key'), 'hunter2\n');
    writeFileSync(join(local, 'upload.bin'), Buffer.alloc(300_000, 'u')); // more than one WRITE
    events = [];
    decisions = [];
    protocolErrors = [];
  });

  /** Runs a client to completion (asynchronously: this process serves its session). */
  function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve, reject) => {
      const c = spawn(cmd, args, { cwd: local, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (out += d));
      c.on('error', reject);
      c.on('close', (code) => resolve({ code, out }));
    });
  }

  /** sftp in batch mode; a leading '-' on a command lets the batch go on past its failure */
  function sftp(...commands: string[]) {
    const batch = join(root, 'batch');
    writeFileSync(batch, commands.join('\n') + '\n');
    return run('/usr/bin/sftp', ['-b', batch, '-D', relay]);
  }

  it('put, get, ls, mkdir, rename, ln -s, rm, rmdir work when allowed, with transfers recorded', async () => {
    const r = await sftp(
      'put upload.bin up.bin',
      'get up.bin down.bin',
      'get ro/report.txt',
      'ls -l',
      'mkdir dir',
      'rename up.bin dir/moved.bin',
      'ln -s moved.bin dir/link',
      'ls dir',
      'rm dir/link',
      'rm dir/moved.bin',
      'rmdir dir',
      'df',
    );
    expect(r.code, r.out).toBe(0);
    expect(protocolErrors).toEqual([]);
    expect(readFileSync(join(local, 'down.bin')).equals(readFileSync(join(local, 'upload.bin')))).toBe(true);
    expect(readFileSync(join(local, 'report.txt'), 'utf8')).toBe('quarterly numbers\n');
    expect(r.out).toMatch(/up\.bin/);
    expect(r.out).toMatch(/dir\/link/);
    expect(existsSync(join(home, 'dir'))).toBe(false);

    const transfers = events.filter((e) => e.op === 'close').map((e) => [e.path, e.direction, e.bytes]);
    expect(transfers).toEqual([
      [join(home, 'up.bin'), 'upload', 300_000],
      [join(home, 'up.bin'), 'download', 300_000],
      [join(home, 'ro/report.txt'), 'download', 18],
    ]);
    expect(decisions.every((d) => d.allowed)).toBe(true);
    // OpenSSH sends the symlink's target first: the link's location is what was decided for write
    expect(decisions).toContainEqual({ access: 'write', path: join(home, 'dir/link'), op: 'symlink', allowed: true });
    expect(decisions).toContainEqual({ access: 'read', path: join(home, 'dir/moved.bin'), op: 'symlink', allowed: true });
    expect(events.map((e) => e.op)).toEqual(expect.arrayContaining(['realpath', 'open', 'opendir', 'mkdir', 'posix-rename@openssh.com', 'remove', 'rmdir', 'statvfs@openssh.com']));
  });

  it('the symlink made through the inspector points where the client asked', async () => {
    const r = await sftp('ln -s ro/report.txt alias');
    expect(r.code, r.out).toBe(0);
    expect(lstatSync(join(home, 'alias')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(home, 'alias'))).toBe('ro/report.txt');
  });

  it('denied operations fail with "Permission denied" and change nothing; the session goes on', async () => {
    const r = await sftp(
      '-put upload.bin ro/new.bin',
      '-get secret/key stolen',
      '-ls secret',
      '-rm ro/report.txt',
      '-mkdir ro/sub',
      '-rename ro/report.txt moved.txt',
      '-rename upload.bin ro/report.txt',
      '-ln -s secret/key peek',
      '-chmod 777 ro/report.txt',
      'put upload.bin ok.bin',
    );
    expect(r.code, r.out).toBe(0);
    expect(protocolErrors).toEqual([]);
    // the writes say so; get and ls start with a denied STAT, which OpenSSH's client shows as "not found"
    expect(r.out.match(/: Permission denied/g), r.out).toHaveLength(7);
    expect(r.out).toMatch(/File ".*\/secret\/key" not found/);
    expect(r.out).toMatch(/Can't ls: ".*\/secret" not found/);
    expect(existsSync(join(home, 'ro', 'new.bin'))).toBe(false);
    expect(existsSync(join(local, 'stolen'))).toBe(false);
    expect(readFileSync(join(home, 'ro', 'report.txt'), 'utf8')).toBe('quarterly numbers\n');
    expect(lstatSync(join(home, 'ro', 'report.txt')).mode & 0o777).toBe(0o644);
    expect(existsSync(join(home, 'ro', 'sub'))).toBe(false);
    expect(existsSync(join(home, 'moved.txt'))).toBe(false);
    expect(existsSync(join(home, 'peek'))).toBe(false);
    expect(readFileSync(join(home, 'ok.bin')).length).toBe(300_000); // the last command still went through
    expect(events.filter((e) => !e.allowed).map((e) => e.op)).toEqual(
      expect.arrayContaining(['open', 'stat', 'remove', 'mkdir', 'posix-rename@openssh.com', 'symlink', 'setstat']),
    );
  });

  it('scp (over SFTP) uploads and downloads when allowed and is refused when not', async () => {
    const up = await run('/usr/bin/scp', ['-D', relay, 'upload.bin', `x:${home}/scp.bin`]);
    expect(up.code, up.out).toBe(0);
    expect(readFileSync(join(home, 'scp.bin')).length).toBe(300_000);
    const down = await run('/usr/bin/scp', ['-D', relay, `x:${home}/ro/report.txt`, 'scp-report.txt']);
    expect(down.code, down.out).toBe(0);
    expect(readFileSync(join(local, 'scp-report.txt'), 'utf8')).toBe('quarterly numbers\n');

    const refused = await run('/usr/bin/scp', ['-D', relay, 'upload.bin', `x:${home}/ro/scp.bin`]);
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/Permission denied/);
    expect(existsSync(join(home, 'ro', 'scp.bin'))).toBe(false);
    const secret = await run('/usr/bin/scp', ['-D', relay, `x:${home}/secret/key`, 'key']);
    expect(secret.code).not.toBe(0);
    expect(existsSync(join(local, 'key'))).toBe(false); // a denied STAT comes first; scp calls that "No such file"
    expect(events).toContainEqual(expect.objectContaining({ path: `${home}/secret/key`, access: 'read', allowed: false }));
    expect(protocolErrors).toEqual([]);
    expect(events.filter((e) => e.op === 'close').map((e) => [e.path, e.direction, e.bytes])).toEqual([
      [`${home}/scp.bin`, 'upload', 300_000],
      [`${home}/ro/report.txt`, 'download', 18],
    ]);
  });
});
