/**
 * The Ansible role and playbook: syntax check, ansible-lint, and a real run against
 * localhost (-c local) into a scratch root. Every destination is a variable, so the run
 * places files under the scratch root only; the service is neither enabled nor started
 * (PID 1 need not be systemd) and no package is installed (tests stay off the network).
 * Secrets come from an Ansible Vault file with a known password file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO, REQUIRED, asRoot, run, tool, verifyUnits, type Run } from './tools.js';

const playbookTool = tool('ansible-playbook', 'ansible-core');
const vaultTool = playbookTool && tool('ansible-vault', 'ansible-core');
const lintTool = tool('ansible-lint', 'ansible-lint');
const analyze = tool('systemd-analyze', 'systemd');
const PLAYBOOK_DIR = join(REPO, 'deploy/ansible');
const SITE = join(PLAYBOOK_DIR, 'site.yml');

const SECRETS = {
  vault_orders_db_password: 'orders-pw-from-the-vault',
  vault_build_host_key: '-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n',
  vault_cluster_token: 'cluster-token-from-the-vault',
};
const UPSTREAM_PIN = '127.0.0.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBpbiBvZiB0aGUgdXBzdHJlYW0gaG9zdCBrZXkgISE=';
const UNRELATED_KNOWN_HOST = 'git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFuIHVucmVsYXRlZCBrbm93biBob3N0IGxpbmUgISEh';

const env = (scratch: string) => ({
  ...process.env,
  ANSIBLE_NOCOLOR: '1',
  ANSIBLE_FORCE_COLOR: '0',
  ANSIBLE_HOME: join(scratch, 'ansible-home'),
  ANSIBLE_LOCAL_TEMP: join(scratch, 'ansible-home/tmp'),
  ANSIBLE_REMOTE_TEMP: join(scratch, 'ansible-home/tmp'),
  ANSIBLE_DEPRECATION_WARNINGS: '0',
});

/** changed= and failed= of the play recap */
function recap(r: Run): { changed: number; failed: number } {
  const m = /localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no play recap:\n${r.stdout}\n${r.stderr}`);
  return { changed: Number(m[1]), failed: Number(m[3]) + Number(m[2]) };
}

/** What a task of this name reported ("ok", "changed", "skipping" …) */
function taskResult(r: Run, name: string): string | undefined {
  const at = r.stdout.indexOf(`: ${name}]`);
  if (at < 0) return undefined;
  return /\n(ok|changed|skipping|failed|fatal)[:!]/.exec(r.stdout.slice(at))?.[1];
}

function mode(path: string): string {
  return (statSync(path).mode & 0o7777).toString(8).padStart(4, '0');
}

function owner(path: string): string {
  const s = statSync(path);
  return `${s.uid}:${s.gid}`;
}

describe.skipIf(!playbookTool)('Ansible playbook: static checks', () => {
  it('passes ansible-playbook --syntax-check', () => {
    for (const playbook of ['site.yml', 'vagrant.yml']) {
      const r = run(playbookTool!, ['--syntax-check', '-i', 'localhost,', playbook], { cwd: PLAYBOOK_DIR, env: env('/tmp') });
      expect(r.status, `${playbook}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  it.skipIf(!lintTool)('passes ansible-lint (production profile, offline)', () => {
    const r = run(lintTool!, ['--offline', '--nocolor', '--profile', 'production', 'site.yml', 'vagrant.yml', 'roles/interlock'], { cwd: PLAYBOOK_DIR, env: env('/tmp') });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stderr).toMatch(/Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
  }, 180_000);
});

const canRun = !!playbookTool && !!vaultTool && asRoot('the playbook run into a scratch root (files owned by root)');

describe.skipIf(!canRun)('Ansible role: a real run into a scratch root', () => {
  let scratch: string;
  let root: string;
  let doctorWorks = false;
  const d = (p: string) => join(root, p);
  let playbook: (...extra: string[]) => Run;
  let caPem = '';

  beforeAll(() => {
    scratch = mkdtempSync('/tmp/interlock-ansible-');
    root = join(scratch, 'root');
    // what a Debian host has before the role runs
    for (const p of ['usr/local/bin', 'etc/systemd/system', 'etc/ssl/certs', 'etc/ca-certificates/update.d', 'etc/ssh']) mkdirSync(d(p), { recursive: true });
    writeFileSync(d('etc/ssh/ssh_known_hosts'), `${UNRELATED_KNOWN_HOST}\n`);

    // a built checkout: the role only places it (interlock_build: false)
    const src = join(scratch, 'src');
    for (const item of ['package.json', 'package-lock.json', 'dist', 'build/Release/interlock.node', 'node_modules']) {
      cpSync(join(REPO, item), join(src, item), { recursive: true, verbatimSymlinks: true });
    }

    // the doctor step needs cgroup BPF; where there is none it is switched off (and said so)
    doctorWorks = run(process.execPath, [join(REPO, 'dist/cli/main.js'), 'doctor']).status === 0;
    if (!doctorWorks) {
      if (REQUIRED) throw new Error('INTERLOCK_REQUIRE_BPF=1 but `interlock doctor` fails on this host');
      console.warn('the role\'s `interlock doctor` step is skipped: this host cannot run interlock (see `interlock doctor`)');
    }

    writeFileSync(join(scratch, 'vault-password'), 'a-known-test-vault-password\n', { mode: 0o600 });
    writeFileSync(join(scratch, 'vault.yml'), Object.entries(SECRETS).map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`).join(''));
    execFileSync(vaultTool!, ['encrypt', '--vault-password-file', join(scratch, 'vault-password'), join(scratch, 'vault.yml')], { env: env(scratch), stdio: 'pipe' });

    writeFileSync(join(scratch, 'inventory.ini'), '[interlock]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n');
    const vars = {
      interlock_config_dir: d('etc/interlock'),
      interlock_state_dir: d('var/lib/interlock'),
      interlock_log_dir: d('var/log/interlock'),
      interlock_runtime_dir: d('run/interlock'),
      interlock_bpf_pin_dir: d('sys/fs/bpf/interlock'), // never created: detach finds nothing there
      interlock_install_dir: d('opt/interlock'),
      interlock_bin_dir: d('usr/local/bin'),
      interlock_unit_dir: d('etc/systemd/system'),
      interlock_agents_dir: d('etc/interlock-agents'),
      interlock_ca_store_dir: d('usr/local/share/ca-certificates'),
      interlock_ca_bundle_dir: d('etc/ssl/certs'),
      interlock_ca_hooks_dir: d('etc/ca-certificates/update.d'),
      interlock_ssh_known_hosts_file: d('etc/ssh/ssh_known_hosts'),
      interlock_install_packages: false,
      interlock_node_install: 'auto', // finds the Node.js running this test and keeps it
      interlock_node_bin: process.execPath,
      interlock_source: 'path',
      interlock_source_path: src,
      interlock_build: false,
      interlock_manage_service: false,
      interlock_verify: doctorWorks,
      interlock_secrets: {
        'orders-db': '{{ vault_orders_db_password }}',
        'build-host.key': '{{ vault_build_host_key }}',
        'cluster-token': '{{ vault_cluster_token }}',
      },
      interlock_files: { 'build-host.known_hosts': `${UPSTREAM_PIN}\n`, 'cluster-ca.crt': 'the cluster CA (not read by the role)\n' },
      interlock_config: {
        agents: { cgroup: '/agents.slice' },
        workloads: [{ name: 'report-bot', match: { cgroup: '/agents.slice/report-bot.service' }, groups: ['analysts'] }],
        targets: [
          { name: 'orders-db', protocol: 'postgres', address: '127.0.0.3:5432',
            upstream: { user: 'app', password: { file: '{{ interlock_secrets_dir }}/orders-db' }, database: 'orders' } },
          { name: 'build-host', protocol: 'ssh', address: '127.0.0.7:22',
            upstream: { user: 'deploy', privateKey: { file: '{{ interlock_secrets_dir }}/build-host.key' }, knownHosts: { file: '{{ interlock_files_dir }}/build-host.known_hosts' } } },
          { name: 'cluster', protocol: 'kubernetes', address: '127.0.0.8:6443',
            upstream: { token: { file: '{{ interlock_secrets_dir }}/cluster-token' }, ca: { file: '{{ interlock_files_dir }}/cluster-ca.crt' } } },
        ],
        policies: [{ name: 'analysts-read', subjects: { groups: ['analysts'] }, targets: ['orders-db'], rules: [{ action: 'allow', match: { statements: ['select'] } }] }],
      },
    };
    writeFileSync(join(scratch, 'vars.json'), JSON.stringify(vars, null, 2));
    playbook = (...extra: string[]) => run(playbookTool!, [
      '-i', join(scratch, 'inventory.ini'), SITE, '-e', `@${join(scratch, 'vars.json')}`, '-e', `@${join(scratch, 'vault.yml')}`,
      '--vault-password-file', join(scratch, 'vault-password'), ...extra,
    ], { cwd: scratch, env: env(scratch) });
  }, 120_000);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  let first: Run;

  it('installs: a first run changes things and fails nothing', () => {
    first = playbook();
    expect(recap(first), first.stdout).toMatchObject({ failed: 0 });
    expect(recap(first).changed).toBeGreaterThan(0);
    expect(taskResult(first, "Add NodeSource's repository")).toBe('skipping');
    expect(taskResult(first, "Download the Node.js tarball (checked against the release's SHASUMS256.txt)")).toBe('skipping');
    expect(taskResult(first, 'Check the host and the config with interlock doctor')).toBe(doctorWorks ? 'ok' : 'skipping');
    // the vault is encrypted at rest, and no secret shows in the run's output
    expect(readFileSync(join(scratch, 'vault.yml'), 'utf8')).toMatch(/^\$ANSIBLE_VAULT;1\.1;AES256\n/);
    for (const v of Object.values(SECRETS)) {
      expect(readFileSync(join(scratch, 'vault.yml'), 'utf8')).not.toContain(v);
      expect(`${first.stdout}${first.stderr}`).not.toContain(v.trim());
    }
  }, 300_000);

  it('places the program and a command that runs it', () => {
    expect(existsSync(d('opt/interlock/dist/cli/main.js'))).toBe(true);
    expect(existsSync(d('opt/interlock/build/Release/interlock.node'))).toBe(true);
    expect(mode(d('usr/local/bin/interlock'))).toBe('0755');
    expect(readFileSync(d('usr/local/bin/interlock'), 'utf8')).toContain(`exec ${process.execPath} ${d('opt/interlock')}/dist/cli/main.js "$@"`);
    expect(run(d('usr/local/bin/interlock'), ['--help']).stdout).toMatch(/^usage: interlock/);
  });

  it('writes the config 0640 and the vaulted secrets 0600, root\'s alone', () => {
    for (const dir of ['etc/interlock', 'etc/interlock/secrets', 'etc/interlock/files', 'var/lib/interlock']) {
      expect([dir, mode(d(dir)), owner(d(dir))]).toEqual([dir, '0700', '0:0']);
    }
    expect(mode(d('var/log/interlock'))).toBe('0750');
    expect([mode(d('etc/interlock/interlock.yaml')), owner(d('etc/interlock/interlock.yaml'))]).toEqual(['0640', '0:0']);
    const secrets: Record<string, string> = { 'orders-db': SECRETS.vault_orders_db_password, 'build-host.key': SECRETS.vault_build_host_key, 'cluster-token': SECRETS.vault_cluster_token };
    for (const [name, value] of Object.entries(secrets)) {
      const f = d(`etc/interlock/secrets/${name}`);
      expect([name, mode(f), owner(f), readFileSync(f, 'utf8')]).toEqual([name, '0600', '0:0', value]);
    }
    expect(mode(d('etc/interlock/files/build-host.known_hosts'))).toBe('0640');
    expect(readFileSync(d('etc/interlock/files/build-host.known_hosts'), 'utf8')).toBe(`${UPSTREAM_PIN}\n`);

    const config = parse(readFileSync(d('etc/interlock/interlock.yaml'), 'utf8'));
    expect(config.audit.file).toBe(d('var/log/interlock/audit.jsonl'));
    expect(config.recording).toEqual({ dir: d('var/lib/interlock/recordings'), key: { file: d('etc/interlock/recording.key') } });
    expect(config.ssh.hostKey).toBe(d('etc/interlock/ssh_host_ed25519_key'));
    expect(config.tls).toEqual({ caCert: d('etc/interlock/node-ca.crt'), caKey: d('etc/interlock/node-ca.key') });
    expect(config.control.socket).toBe(d('run/interlock/control.sock'));
    expect(config.targets[0].upstream.password.file).toBe(d('etc/interlock/secrets/orders-db'));
    // the secret values are in their files, never in the config
    expect(readFileSync(d('etc/interlock/interlock.yaml'), 'utf8')).not.toContain(SECRETS.vault_orders_db_password);
    // and the config is one interlock accepts
    const status = run(d('usr/local/bin/interlock'), ['status', '--config', d('etc/interlock/interlock.yaml')]);
    expect(`${status.stdout}${status.stderr}`).not.toMatch(/bad config/);
  });

  it('creates the node keys root-only and publishes the CA, the known_hosts lines and a kubeconfig for agents', () => {
    const caCert = d('etc/interlock/node-ca.crt');
    expect([mode(d('etc/interlock/node-ca.key')), mode(caCert), mode(d('etc/interlock/ssh_host_ed25519_key'))]).toEqual(['0600', '0644', '0600']);
    const ca = readFileSync(caCert, 'utf8');
    caPem = ca.trim();
    expect(run('openssl', ['x509', '-noout', '-text', '-in', caCert]).stdout).toMatch(/CA:TRUE, pathlen:0/);
    for (const f of ['etc/interlock-agents/node-ca.crt', 'usr/local/share/ca-certificates/interlock-node-ca.crt']) {
      expect([f, mode(d(f)), readFileSync(d(f), 'utf8')]).toEqual([f, '0644', ca]);
    }
    // the system bundle agents' TLS clients read now holds the node CA
    expect(readFileSync(d('etc/ssl/certs/ca-certificates.crt'), 'utf8')).toContain(ca.trim());

    const hostPub = run('ssh-keygen', ['-y', '-f', d('etc/interlock/ssh_host_ed25519_key')]).stdout.trim();
    expect(hostPub).toMatch(/^ssh-ed25519 /);
    const line = `build-host,127.0.0.7 ${hostPub.split(' ').slice(0, 2).join(' ')} interlock:build-host`;
    expect(readFileSync(d('etc/interlock-agents/ssh_known_hosts'), 'utf8')).toBe(`${line}\n`);
    expect(readFileSync(d('etc/ssh/ssh_known_hosts'), 'utf8')).toBe(
      `${UNRELATED_KNOWN_HOST}\n# BEGIN interlock node host key (managed by Ansible)\n${line}\n# END interlock node host key (managed by Ansible)\n`);
    // OpenSSH itself finds the node key for the target's address
    expect(run('ssh-keygen', ['-F', '127.0.0.7', '-f', d('etc/ssh/ssh_known_hosts')]).stdout).toContain(hostPub.split(' ')[1]);

    const kubeconfigFile = d('etc/interlock-agents/kube/cluster.yaml');
    expect(mode(kubeconfigFile)).toBe('0644');
    const kubeconfig = parse(readFileSync(kubeconfigFile, 'utf8'));
    expect(kubeconfig.clusters[0].cluster.server).toBe('https://127.0.0.8:6443');
    expect(Buffer.from(kubeconfig.clusters[0].cluster['certificate-authority-data'], 'base64').toString()).toBe(ca);
    expect(readFileSync(kubeconfigFile, 'utf8')).not.toContain(SECRETS.vault_cluster_token);
  });

  it('installs the units with this install\'s paths, and they pass systemd-analyze verify', () => {
    const units = d('etc/systemd/system');
    const svc = readFileSync(join(units, 'interlock.service'), 'utf8');
    expect(svc).toContain(`ExecStart=${d('usr/local/bin/interlock')} run --config ${d('etc/interlock/interlock.yaml')}`);
    expect(svc).not.toMatch(/[= ]\/usr\/local\/bin\/interlock /); // every default command path was rewritten
    expect(readFileSync(join(units, 'agents.slice'), 'utf8')).toBe(readFileSync(join(REPO, 'deploy/systemd/agents.slice'), 'utf8'));
    expect(readFileSync(join(units, 'interlock.service.d/paths.conf'), 'utf8')).toContain(
      `ReadWritePaths=${d('etc/interlock')} ${d('var/lib/interlock')} ${d('var/log/interlock')} ${d('run/interlock')}`);
    for (const f of ['interlock.service', 'agents.slice', 'interlock.service.d/paths.conf']) expect(mode(join(units, f))).toBe('0644');
    if (analyze) expect(verifyUnits(analyze, units)).toEqual([]);
  });

  it('is idempotent: a second run changes nothing', () => {
    const again = playbook();
    expect(recap(again), again.stdout).toEqual({ changed: 0, failed: 0 });
  }, 300_000);

  it('uninstalls: detaches, removes what it placed, keeps the evidence, and a second uninstall changes nothing', () => {
    const gone = playbook('-e', 'interlock_state=absent');
    expect(recap(gone), gone.stdout).toMatchObject({ failed: 0 });
    expect(taskResult(gone, 'Remove the redirect (interlock detach)')).toBe('ok'); // nothing was pinned in the scratch pin dir
    for (const p of ['usr/local/bin/interlock', 'opt/interlock', 'etc/interlock/interlock.yaml', 'etc/interlock/secrets', 'etc/interlock/files',
      'etc/interlock/node-ca.key', 'etc/interlock/node-ca.crt', 'etc/interlock/ssh_host_ed25519_key', 'etc/interlock-agents',
      'usr/local/share/ca-certificates/interlock-node-ca.crt', 'etc/systemd/system/interlock.service', 'etc/systemd/system/interlock.service.d',
      'etc/systemd/system/agents.slice']) {
      expect([p, existsSync(d(p))]).toEqual([p, false]);
    }
    expect(readFileSync(d('etc/ssh/ssh_known_hosts'), 'utf8')).toBe(`${UNRELATED_KNOWN_HOST}\n`);
    expect(caPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(readFileSync(d('etc/ssl/certs/ca-certificates.crt'), 'utf8')).not.toContain(caPem);
    expect(existsSync(d('etc/ssl/certs/interlock-node-ca.pem'))).toBe(false);
    // recordings and the audit trail stay unless purged
    expect([existsSync(d('var/lib/interlock')), existsSync(d('var/log/interlock'))]).toEqual([true, true]);

    const again = playbook('-e', 'interlock_state=absent');
    expect(recap(again), again.stdout).toEqual({ changed: 0, failed: 0 });

    const purge = playbook('-e', 'interlock_state=absent', '-e', 'interlock_uninstall_purge=true');
    expect(recap(purge), purge.stdout).toMatchObject({ failed: 0 });
    for (const p of ['etc/interlock', 'var/lib/interlock', 'var/log/interlock']) expect([p, existsSync(d(p))]).toEqual([p, false]);
  }, 300_000);
});
