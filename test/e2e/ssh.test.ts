/**
 * SSH end to end: the unmodified OpenSSH client (ssh, sftp) runs as `nobody` inside the
 * agents' cgroup with no key at all, dials a real sshd on 127.0.0.4:22, and the eBPF
 * redirect hands it to interlock, which logs in upstream with the vaulted key. What
 * ran is checked on the server side (files it would have created or removed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chownSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { runAgent, type AgentResult } from '../helpers/agent.js';
import { cli, readAudit, waitForAudit } from '../helpers/daemon.js';
import { ALLOW_ORDINARY, E2EEnv } from '../helpers/e2e-env.js';
import { SSH_USER, startSshd, type TestSshd } from '../helpers/sshd.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { readRecording } from '../../src/recording/store.js';

const enabled = bpfGate();
const HOST = '127.0.0.4';

describe.skipIf(!enabled)('SSH through the redirect', () => {
  let sshd: TestSshd;
  let env: E2EEnv;
  let agentKnownHosts = '';
  let work = '';

  /** unmodified ssh as the ci-bot agent: no key, no password, the node trusted through known_hosts */
  const ssh = (args: string[], opts: { unit?: string; timeoutMs?: number; input?: string } = {}): Promise<AgentResult> =>
    runAgent(env.cg(opts.unit ?? 'ci-bot.service'), 'ssh', [
      '-F', '/dev/null', '-o', `UserKnownHostsFile=${agentKnownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', ...args,
    ], { timeoutMs: opts.timeoutMs ?? 20_000 });

  beforeAll(async () => {
    work = mkdtempSync('/tmp/interlock-ssh-work-');
    chmodSync(work, 0o755);
    sshd = await startSshd(join(work, 'sshd'), { host: HOST });
    // a pin that does not match: for the host-key mismatch test (a second target on another address)
    const wrongPin = join(work, 'sshd', 'wrong_known_hosts');
    writeFileSync(wrongPin, `127.0.0.4 ${sshd.hostPublicKey.split(' ')[0]} AAAAC3NzaC1lZDI1NTE5AAAAIKMXq9fsWnCg4faieTnbOkYsnjrgKCfvotOrEBud3USS\n`);
    env = new E2EEnv({
      name: 'ssh',
      proxyPort: 15439,
      rules: ALLOW_ORDINARY,
      targets: [
        '  - name: build-host',
        '    protocol: ssh',
        `    address: ${HOST}:22`,
        '    upstream:',
        `      user: ${SSH_USER}`,
        `      privateKey: { file: ${sshd.vaultedKeyFile} }`,
        `      knownHosts: { file: ${sshd.knownHostsFile} }`,
        `      agentUsers: [${SSH_USER}, deploy]`,
        '      env: [LANG, "IL_*"]',
        '  - name: impostor-host',
        '    protocol: ssh',
        '    address: 127.0.0.7:22',
        '    upstream:',
        `      address: ${HOST}:22`,
        `      user: ${SSH_USER}`,
        `      privateKey: { file: ${sshd.vaultedKeyFile} }`,
        `      knownHosts: { file: ${wrongPin} }`,
      ].join('\n'),
      workloads: `  - name: ci-bot\n    match: { cgroup: /interlock-ssh.slice/ci-bot.service }\n    groups: [ci]`,
      policies: [
        '  - name: ci-ssh',
        '    subjects: { groups: [ci] }',
        '    targets: [build-host, impostor-host]',
        '    rules:',
        '      - { action: deny, match: { commands: ["rm *"] }, message: "no deletes" }',
        '      - { action: allow, match: { commands: ["echo *", "uname *", "ls *", "cat *", "touch /tmp/il-ssh-*", "printenv *", "sleep *", "sh -c *"] } }',
        '      - { action: allow, match: { channels: [sftp], paths: ["/tmp/il-sftp/pub/**"], access: read } }',
        '      - { action: allow, match: { channels: [sftp], paths: ["/tmp/il-sftp/in/**"], access: write } }',
        '      - { action: allow, match: { channels: [shell] } }',
      ].join('\n'),
    });
    await env.start();
    const lines = cli(['ssh-known-hosts', '--config', env.configFile]);
    expect(lines.code, lines.stderr).toBe(0);
    agentKnownHosts = join(work, 'agent_known_hosts');
    writeFileSync(agentKnownHosts, lines.stdout);
    chmodSync(agentKnownHosts, 0o644);
  });
  afterAll(async () => {
    await env?.stop();
    sshd?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('prints known_hosts lines for every SSH target with the node key', () => {
    const text = readFileSync(agentKnownHosts, 'utf8');
    expect(text).toMatch(/^build-host,127\.0\.0\.4 ssh-ed25519 AAAA\S+ interlock:build-host$/m);
    expect(text).toMatch(/^impostor-host,127\.0\.0\.7 ssh-ed25519 /m);
    expect(text).not.toContain(sshd.hostPublicKey.split(' ')[1]); // the node's key, never the target's
  });

  it('runs an allowed exec upstream with the vaulted key: output and exit code come back', async () => {
    const r = await ssh([`${SSH_USER}@${HOST}`, 'echo hello-from-$(uname -s)']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello-from-Linux\n');
    expect(r.code).toBe(0);
    const failing = await ssh([`${SSH_USER}@${HOST}`, 'ls /nonexistent-dir']);
    expect(failing.code).toBe(2);
    expect(failing.stderr).toMatch(/No such file or directory/);
    const q = await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.command === 'ls /nonexistent-dir');
    expect(q).toMatchObject({ workload: 'ci-bot', target: 'build-host', decision: 'allow', via: 'exec', comm: 'ssh' });
    // upstream saw interlock's login with the vaulted key, as the configured user
    expect(sshd.log()).toMatch(new RegExp(`Accepted publickey for ${SSH_USER} from 127\\.0\\.0\\.1`));
  });

  it('refuses a denied exec with a clear message and status 126, and nothing runs (compound commands judged part by part)', async () => {
    const victim = `/tmp/il-ssh-victim-${Date.now()}`;
    execFileSync('install', ['-d', '-o', SSH_USER, victim]);
    const r = await ssh([`${SSH_USER}@${HOST}`, `true; rm -rf ${victim}`]);
    expect(r.code).toBe(126);
    expect(r.stderr).toContain(`interlock: "rm -rf ${victim}" is denied by rule ci-ssh#1: no deletes`);
    expect(existsSync(victim)).toBe(true);
    const hidden = await ssh([`${SSH_USER}@${HOST}`, `echo $(rm -rf ${victim})`]);
    expect(hidden.code).toBe(126);
    expect(existsSync(victim)).toBe(true);
    const unknown = await ssh([`${SSH_USER}@${HOST}`, `touch /tmp/il-ssh-ok-${process.pid} && chmod 777 ${victim}`]);
    expect(unknown.code).toBe(126);
    expect(unknown.stderr).toMatch(/chmod 777/);
    expect(existsSync(`/tmp/il-ssh-ok-${process.pid}`)).toBe(false); // the whole command is refused, not its allowed part
    rmSync(victim, { recursive: true, force: true });
  });

  it('keeps a multiplexed connection usable after a refusal, and passes EOF', async () => {
    // one OpenSSH master connection, several sessions over it: a refusal ends only its channel
    const control = join(work, `cm-${Date.now()}`);
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${control}`, '-o', 'ControlPersist=10'];
    mkdirSync(work, { recursive: true });
    chmodSync(work, 0o777);
    const first = await ssh([...mux, `${SSH_USER}@${HOST}`, 'rm -rf /tmp/anything']);
    expect(first.code).toBe(126);
    const second = await ssh([...mux, `${SSH_USER}@${HOST}`, 'echo still-usable']);
    expect(second.stdout).toBe('still-usable\n');
    await ssh([...mux, '-O', 'exit', `${SSH_USER}@${HOST}`]);
    const starts = readAudit(env.auditFile).filter((l) => l.event === 'command' && (l.command === 'rm -rf /tmp/anything' || l.command === 'echo still-usable'));
    expect(new Set(starts.map((l) => l.session)).size).toBe(1); // both on one SSH connection

    const eof = await runAgent(env.cg('ci-bot.service'), 'sh', ['-c',
      `printf 'line one\\nline two\\n' | ssh -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${SSH_USER}@${HOST} cat`]);
    expect(eof.stdout).toBe('line one\nline two\n'); // cat ends only when EOF reaches it
    expect(eof.code).toBe(0);
  });

  it('refuses a user name the target does not offer, and an unintercepted port is not a way around', async () => {
    const r = await ssh([`root@${HOST}`, 'echo hi']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    await waitForAudit(env.auditFile, (l) => l.event === 'connect.refused' && String(l.reason).includes('user "root"'));
  });

  it('fails closed on an upstream host key that does not match the pin', async () => {
    const r = await ssh([`${SSH_USER}@127.0.0.7`, 'echo should-not-run']);
    expect(r.code).toBe(255);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/does not match the pinned key/);
    await waitForAudit(env.auditFile, (l) => l.event === 'connect.refused' && l.hostKey === true && l.target === 'impostor-host');
  });

  it('refuses port and agent forwarding (the server itself allows them)', async () => {
    const w = await ssh(['-W', '127.0.0.3:5432', `${SSH_USER}@${HOST}`]);
    expect(w.code).toBe(255);
    expect(w.stderr).toMatch(/stdio forwarding failed|administratively prohibited|open failed/);
    const rfwd = await ssh(['-o', 'ExitOnForwardFailure=yes', '-R', '127.0.0.1:18022:127.0.0.1:22', `${SSH_USER}@${HOST}`, 'echo remote']);
    expect(rfwd.code).toBe(255);
    expect(rfwd.stderr).toMatch(/remote port forwarding failed/);
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'port-forward' && l.decision === 'deny');
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'remote-forward' && l.decision === 'deny');
    // the client asks for agent forwarding only when it has an agent to forward
    const agentFwd = await runAgent(env.cg('ci-bot.service'), 'sh', ['-c',
      `eval "$(ssh-agent -s)" >/dev/null; ssh -A -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${SSH_USER}@${HOST} echo agent-forward-asked; ssh-agent -k >/dev/null`]);
    expect(agentFwd.stdout).toBe('agent-forward-asked\n'); // the command runs, without the forwarding
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'agent-forward' && l.decision === 'deny');
  });

  it('passes only allowed environment variables', async () => {
    const r = await runAgent(env.cg('ci-bot.service'), 'ssh', [
      '-F', '/dev/null', '-o', `UserKnownHostsFile=${agentKnownHosts}`, '-o', 'BatchMode=yes', '-o', 'SendEnv=IL_OK IL_ALSO SECRET_TOKEN',
      `${SSH_USER}@${HOST}`, 'printenv IL_OK SECRET_TOKEN',
    ], { env: { IL_OK: 'yes-passed', SECRET_TOKEN: 'must-not-pass' } });
    expect(r.stdout).toBe('yes-passed\n');
    expect(r.stdout).not.toContain('must-not-pass');
  });

  it('values from the agent are data: a terminal type or an env value that bash would evaluate never reaches the server', async () => {
    const termMarker = `/tmp/il-ssh-term-${process.pid}`;
    const envMarker = `/tmp/il-ssh-env-${process.pid}`;
    const base = ['-F', '/dev/null', '-o', `UserKnownHostsFile=${agentKnownHosts}`, '-o', 'BatchMode=yes'];
    // arithmetic evaluates a subscript's $(…): the payload would run touch on the server
    const term = await runAgent(env.cg('ci-bot.service'), 'ssh', [...base, '-tt', `${SSH_USER}@${HOST}`, 'echo $((TERM))'],
      { env: { TERM: `a[$(touch ${termMarker})]` } });
    const lc = await runAgent(env.cg('ci-bot.service'), 'ssh', [...base, '-o', 'SendEnv=IL_X', `${SSH_USER}@${HOST}`, 'echo $((IL_X))'],
      { env: { IL_X: `a[$(touch ${envMarker})]` } });
    expect(existsSync(termMarker), `the server ran the TERM payload (${term.stdout}${term.stderr})`).toBe(false);
    expect(existsSync(envMarker), `the server ran the env payload (${lc.stdout}${lc.stderr})`).toBe(false);
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'pty' && l.decision === 'deny' && String(l.command).startsWith('TERM='));
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'env' && l.decision === 'deny' && l.command === 'IL_X=…');
    // a plain terminal name and a plain value still pass
    const plain = await runAgent(env.cg('ci-bot.service'), 'ssh', [...base, '-tt', '-o', 'SendEnv=IL_OK', `${SSH_USER}@${HOST}`, 'printenv TERM IL_OK'],
      { env: { TERM: 'xterm-256color', IL_OK: 'plain-value' } });
    expect(plain.stdout.replace(/\r/g, '')).toBe('xterm-256color\nplain-value\n');
  });

  it('records the session: decisions, output and the exit, and the agent never holds the upstream key', async () => {
    const r = await ssh([`${SSH_USER}@${HOST}`, 'echo recorded-output-marker']);
    expect(r.stdout).toBe('recorded-output-marker\n');
    const start = await waitForAudit(env.auditFile, (l) => l.event === 'session.start' && l.pid === r.pid);
    await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === start.session);
    await new Promise((res) => setTimeout(res, 300));
    const rec = readRecording(env.recordingsDir, String(start.session), loadRecordingKey(env.recordingKey, { create: false }));
    expect(rec.problems).toEqual([]);
    expect(rec.start).toMatchObject({ protocol: 'ssh', workload: 'ci-bot', target: 'build-host', comm: 'ssh' });
    expect(rec.events.some((e) => e.k === 'decision' && e.command === 'echo recorded-output-marker' && e.action === 'allow')).toBe(true);
    const out = Buffer.concat(rec.events.flatMap((e) => (e.k === 'out' ? [Buffer.from(e.b)] : []))).toString();
    expect(out).toContain('recorded-output-marker');
    expect(rec.events.some((e) => e.k === 'channel' && e.state === 'close' && e.exitCode === 0)).toBe(true);
    // the vaulted key: root-only, and never in anything the agent received
    const key = readFileSync(sshd.vaultedKeyFile, 'utf8');
    expect(out).not.toContain(key.split('\n')[1]);
    const peek = await runAgent(env.cg('ci-bot.service'), 'cat', [sshd.vaultedKeyFile]);
    expect(peek.code).not.toBe(0);
  });

  it('holds 20 concurrent sessions, each getting its own output', async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => ssh([`${SSH_USER}@${HOST}`, `echo concurrent-${i}`], { timeoutMs: 40_000 })));
    runs.forEach((r, i) => {
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`concurrent-${i}\n`);
    });
  });

  it('sftp: path rules decide each operation; file names, sizes and direction are recorded', async () => {
    for (const d of ['/tmp/il-sftp/pub', '/tmp/il-sftp/in', '/tmp/il-sftp/secret']) execFileSync('install', ['-d', '-o', SSH_USER, d]);
    writeFileSync('/tmp/il-sftp/pub/report.txt', 'quarterly numbers\n');
    writeFileSync('/tmp/il-sftp/secret/keys.txt', 'do not read\n');
    chownSync('/tmp/il-sftp/pub/report.txt', 0, 0);
    const local = mkdtempSync('/tmp/interlock-sftp-local-');
    chmodSync(local, 0o777);
    writeFileSync(join(local, 'upload.txt'), 'uploaded by the agent\n');
    chmodSync(join(local, 'upload.txt'), 0o644);
    const batch = join(local, 'batch');
    writeFileSync(batch, [
      `get /tmp/il-sftp/pub/report.txt ${local}/report.txt`,
      `put ${local}/upload.txt /tmp/il-sftp/in/upload.txt`,
      `-get /tmp/il-sftp/secret/keys.txt ${local}/keys.txt`,
      `-put ${local}/upload.txt /tmp/il-sftp/pub/overwrite.txt`,
      '',
    ].join('\n'));
    chmodSync(batch, 0o644);
    const r = await runAgent(env.cg('ci-bot.service'), 'sftp', [
      '-F', '/dev/null', '-o', `UserKnownHostsFile=${agentKnownHosts}`, '-o', 'BatchMode=yes', '-b', batch, `${SSH_USER}@${HOST}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(local, 'report.txt'), 'utf8')).toBe('quarterly numbers\n');
    expect(readFileSync('/tmp/il-sftp/in/upload.txt', 'utf8')).toBe('uploaded by the agent\n');
    expect(existsSync(join(local, 'keys.txt'))).toBe(false);
    expect(existsSync('/tmp/il-sftp/pub/overwrite.txt')).toBe(false);
    expect(r.stderr).toMatch(/Permission denied/);
    await waitForAudit(env.auditFile, (l) => l.event === 'file' && l.path === '/tmp/il-sftp/secret/keys.txt' && l.allowed === false);
    const up = await waitForAudit(env.auditFile, (l) => l.event === 'file' && l.direction === 'upload' && l.path === '/tmp/il-sftp/in/upload.txt');
    expect(up.bytes).toBe(22);
    const down = readAudit(env.auditFile).find((l) => l.event === 'file' && l.direction === 'download' && l.path === '/tmp/il-sftp/pub/report.txt');
    expect(down?.bytes).toBe(18);
    // OpenSSH's scp speaks sftp, and the legacy protocol (-O) runs `scp -t` / `scp -f` as an exec: both obey the path rules
    const scp = await runAgent(env.cg('ci-bot.service'), 'sh', ['-c', [
      `scp -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${local}/upload.txt ${SSH_USER}@${HOST}:/tmp/il-sftp/in/via-scp.txt`,
      `scp -O -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${SSH_USER}@${HOST}:/tmp/il-sftp/pub/report.txt ${local}/legacy.txt`,
      `scp -O -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${local}/upload.txt ${SSH_USER}@${HOST}:/tmp/il-sftp/secret/legacy-up.txt; echo "legacy upload exit $?"`,
    ].join(' && ')]);
    expect(readFileSync('/tmp/il-sftp/in/via-scp.txt', 'utf8')).toBe('uploaded by the agent\n');
    expect(readFileSync(join(local, 'legacy.txt'), 'utf8')).toBe('quarterly numbers\n');
    expect(scp.stdout).toMatch(/legacy upload exit [1-9]/);
    expect(existsSync('/tmp/il-sftp/secret/legacy-up.txt')).toBe(false);
    rmSync(local, { recursive: true, force: true });
    rmSync('/tmp/il-sftp', { recursive: true, force: true });
  });

  it('an interactive shell over a pty is relayed and recorded with its terminal stream', async () => {
    // script(1) gives ssh a real terminal; the remote shell reads the commands from it
    const r = await runAgent(env.cg('ci-bot.service'), 'script', ['-qec',
      `printf 'echo shell-$((6*7))\\nexit 5\\n' | ssh -tt -F /dev/null -o UserKnownHostsFile=${agentKnownHosts} -o BatchMode=yes ${SSH_USER}@${HOST}`, '/dev/null']);
    expect(r.stdout).toContain('shell-42');
    expect(r.code).toBe(5);
    const start = await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.via === 'shell' && l.decision === 'allow');
    await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === start.session);
    await new Promise((res) => setTimeout(res, 300));
    const rec = readRecording(env.recordingsDir, String(start.session), loadRecordingKey(env.recordingKey, { create: false }));
    expect(rec.events.some((e) => e.k === 'resize')).toBe(true);
    const out = Buffer.concat(rec.events.flatMap((e) => (e.k === 'out' ? [Buffer.from(e.b)] : []))).toString();
    expect(out).toContain('shell-42');
    const cast = cli(['export', String(start.session), '--format', 'asciicast', '--config', env.configFile]);
    expect(cast.code, cast.stderr).toBe(0);
    const [header, ...events] = cast.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(header.version).toBe(2);
    expect(events.some((e: [number, string, string]) => e[1] === 'o' && e[2].includes('shell-42'))).toBe(true);
    const replay = cli(['replay', String(start.session), '--instant', '--config', env.configFile]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain('shell-42');
  });
});
