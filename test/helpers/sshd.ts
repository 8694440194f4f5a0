/**
 * A real OpenSSH server for tests: its own host key, listening on a loopback address
 * of the test's choosing, one login user whose only authorized key is the "vaulted"
 * key interlock logs in with. Runs in the foreground (-D) and is killed on stop.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SSH_USER = 'ildeploy';

export interface TestSshd {
  host: string;
  port: number;
  dir: string;
  /** the server's host public key line ("ssh-ed25519 AAAA…") */
  hostPublicKey: string;
  /** the private key interlock holds for SSH_USER (0600, root's) */
  vaultedKeyFile: string;
  /** a known_hosts file pinning this server's host key */
  knownHostsFile: string;
  /** the user's home directory on the server */
  home: string;
  log(): string;
  stop(): void;
}

function ensureUser(): string {
  try {
    execFileSync('id', [SSH_USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--create-home', '--shell', '/bin/sh', SSH_USER]);
  }
  // a usable account without a password (sshd refuses locked "!" accounts for key logins under UsePAM no)
  execFileSync('usermod', ['-p', '*', SSH_USER]);
  return execFileSync('getent', ['passwd', SSH_USER], { encoding: 'utf8' }).split(':')[5]!;
}

export async function startSshd(dir: string, opts: { host: string; port?: number }): Promise<TestSshd> {
  const port = opts.port ?? 22;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  mkdirSync('/run/sshd', { recursive: true });
  const home = ensureUser();
  const hostKey = join(dir, 'host_ed25519');
  const userKey = join(dir, 'vaulted_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test sshd host', '-f', hostKey]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vaulted', '-f', userKey]);
  const authorized = join(dir, 'authorized_keys');
  writeFileSync(authorized, readFileSync(`${userKey}.pub`));
  chmodSync(authorized, 0o644);
  const hostPublicKey = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  const knownHostsFile = join(dir, 'upstream_known_hosts');
  writeFileSync(knownHostsFile, `${port === 22 ? opts.host : `[${opts.host}]:${port}`} ${hostPublicKey}\n`);
  const config = join(dir, 'sshd_config');
  writeFileSync(config, [
    `ListenAddress ${opts.host}:${port}`,
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorized}`,
    'StrictModes no',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    `AllowUsers ${SSH_USER}`,
    // forwarding is allowed here, so that a refusal can only come from interlock
    'AllowTcpForwarding yes',
    'AllowAgentForwarding yes',
    'AcceptEnv LANG LC_* IL_*',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    'MaxStartups 100',
    '',
  ].join('\n'));
  const logFile = join(dir, 'sshd.log');
  writeFileSync(logFile, '');
  const proc: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  // ready once it listens
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sshd exited: ${log}`);
    if (/Server listening on/.test(log)) break;
    if (Date.now() > deadline) throw new Error(`sshd did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  chownSync(dir, 0, 0);
  return {
    host: opts.host, port, dir, hostPublicKey, vaultedKeyFile: userKey, knownHostsFile, home,
    log: () => log,
    stop: () => {
      proc.kill('SIGTERM');
    },
  };
}
