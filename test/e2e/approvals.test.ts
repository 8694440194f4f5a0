/**
 * Just-in-time approval end to end: psql in the agents' cgroup sends a statement an
 * `approve` rule holds; a human gets an ID token from a real OIDC provider
 * (oidc-provider on loopback) with the device flow and decides through
 * `interlock approvals`; the agent's session waits, then runs or gets 42501, and goes on.
 * The same holds for an SSH exec (real sshd) and a Kubernetes request (kubectl against
 * the API-server fixture): nothing reaches the server before the approval.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { collect, runAgent, spawnAgent } from '../helpers/agent.js';
import { CLI, readAudit, waitForAudit } from '../helpers/daemon.js';
import { spawn } from 'node:child_process';
import { E2EEnv } from '../helpers/e2e-env.js';
import { startIdp, type TestAccount, type TestIdp } from '../helpers/oidc-idp.js';
import { deviceFlowIdToken } from '../../src/identity/oidc.js';
import { SSH_USER, startSshd, type TestSshd } from '../helpers/sshd.js';
import { existsSync } from 'node:fs';
import { startKubeApiServer, type FakeKubeApiServer } from '../helpers/kube-apiserver.js';
import { cli } from '../helpers/daemon.js';

const enabled = bpfGate();

describe.skipIf(!enabled)('approvals through the redirect', () => {
  let idp: TestIdp;
  let env: E2EEnv;
  let hook: Server;
  let sshd: TestSshd;
  let sshWork = '';
  let api: FakeKubeApiServer;
  let kubeconfig = '';
  let agentKnownHosts = '';
  const notices: Record<string, unknown>[] = [];

  /** the device flow, completed by the test as that person would in a browser */
  const tokenFile = async (who: TestAccount): Promise<string> => {
    const token = await deviceFlowIdToken({
      issuer: idp.issuer, clientId: idp.cliClientId, scope: 'openid profile email groups',
      show: (_uri, code) => void idp.approveDevice(code, who),
    });
    const file = join(env.root, `${who}.token`);
    writeFileSync(file, token, { mode: 0o600 });
    return file;
  };
  /** asynchronous: the IdP answering the daemon's key lookups runs in this very process */
  const approvals = (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, 'approvals', ...args, '--config', env.configFile]);
      let stdout = '', stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  /** the pending request for a statement, once the daemon holds it */
  const pendingFor = async (sql: string) =>
    String((await waitForAudit(env.auditFile, (l) => l.event === 'approval.requested' && l.command === sql, 10_000)).approval);
  const held = (sql: string) =>
    collect(spawnAgent(env.cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', sql, '-c', "SELECT 'session_goes_on'"]), 40_000);

  beforeAll(async () => {
    rmSync('/tmp/interlock-approvals-e2e', { recursive: true, force: true });
    idp = await startIdp({ host: '127.0.0.9', port: 18090, workloadTokenTtlSec: 4 });
    mkdirSync('/tmp/interlock-approvals-e2e', { recursive: true, mode: 0o700 });
    writeFileSync('/tmp/interlock-approvals-e2e/orders-agent.secret', idp.ordersAgent.clientSecret, { mode: 0o600 });
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        notices.push(JSON.parse(body) as Record<string, unknown>);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(18091, '127.0.0.9', r));
    // beside the 0700 directory: sshd reads authorized_keys as the login user
    sshWork = mkdtempSync('/tmp/interlock-approvals-sshd-');
    chmodSync(sshWork, 0o755);
    sshd = await startSshd(join(sshWork, 'sshd'), { host: '127.0.0.4' });
    api = await startKubeApiServer({ host: '127.0.0.6', port: 6443, dir: join(sshWork, 'api'), token: 'vaulted-kube-token' });
    writeFileSync(join(sshWork, 'cluster.token'), 'vaulted-kube-token\n', { mode: 0o600 });
    const withIdp = (text: string) => text.replace('"ISSUER"', `"${idp.issuer}"`).replace('CLIENT', idp.ordersAgent.clientId);
    env = new E2EEnv({
      name: 'approvals',
      proxyPort: 15442,
      rules: [
        '      - { action: allow, match: { statements: [select] } }',
        '      - { action: approve, match: { statements: [insert, update, delete] }, approvers: [dba], timeout: 4s }',
      ].join('\n'),
      // a workload whose groups come only from its IdP client's token
      workloads: withIdp([
        '  - name: idp-bot',
        '    match: { cgroup: /interlock-approvals.slice/idp-bot.service }',
        '    oidc:',
        `      issuer: "ISSUER"`,
        `      clientId: CLIENT`,
        '      clientSecret: { file: /tmp/interlock-approvals-e2e/orders-agent.secret }',
      ].join('\n')),
      targets: [
        '  - name: build-host',
        '    protocol: ssh',
        '    address: 127.0.0.4:22',
        '    upstream:',
        `      user: ${SSH_USER}`,
        `      privateKey: { file: ${sshd.vaultedKeyFile} }`,
        `      knownHosts: { file: ${sshd.knownHostsFile} }`,
        `      agentUsers: [${SSH_USER}]`,
        '  - name: cluster',
        '    protocol: kubernetes',
        '    address: 127.0.0.6:6443',
        '    serverName: kubernetes.default.svc',
        '    upstream:',
        `      token: { file: ${join(sshWork, 'cluster.token')} }`,
        `      ca: { file: ${api.caFile} }`,
      ].join('\n'),
      policies: [
        '  - name: analysts-ssh',
        '    subjects: { groups: [analysts] }',
        '    targets: [build-host]',
        '    rules:',
        '      - { action: approve, match: { commands: ["touch /tmp/il-approve-*"] }, approvers: [dba], timeout: 6s }',
        '      - { action: allow, match: { commands: ["echo *"] } }',
        '  - name: analysts-kube',
        '    subjects: { groups: [analysts] }',
        '    targets: [cluster]',
        '    rules:',
        '      - { action: approve, match: { verbs: [delete], resources: [pods] }, approvers: [dba], timeout: 6s }',
        '      - { action: allow, match: { verbs: [get, list] } }',
        '  - name: reporting',
        '    subjects: { groups: [reporting] }',
        '    targets: [orders-db]',
        '    rules:',
        '      - { action: allow, match: { statements: [select] } }',
      ].join('\n'),
      extra: [
        'approvals:',
        '  store: /tmp/interlock-approvals-e2e/approvals.jsonl',
        `  oidc: { issuer: "${idp.issuer}", clientId: ${idp.cliClientId} }`,
        '  webhooks: [ { url: "http://127.0.0.9:18091/hook" } ]',
      ].join('\n'),
    });
    await env.start();
    agentKnownHosts = join(env.root, 'agent_known_hosts');
    writeFileSync(agentKnownHosts, cli(['ssh-known-hosts', '--config', env.configFile]).stdout, { mode: 0o644 });
    kubeconfig = join(env.root, 'kubeconfig');
    writeFileSync(kubeconfig, cli(['kubeconfig', '--target', 'cluster', '--config', env.configFile]).stdout, { mode: 0o644 });
    env.pg.superSql('SET ROLE app; CREATE TABLE IF NOT EXISTS notes (id int, body text);');
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
    sshd?.stop();
    await api?.stop();
    if (sshWork) rmSync(sshWork, { recursive: true, force: true });
    await idp?.stop();
    hook?.close();
  });

  it('holds a statement until an approver in the group approves it; then it runs and the session goes on', async () => {
    const sql = "INSERT INTO notes VALUES (1, 'approved note') RETURNING body";
    const agent = held(sql);
    const id = await pendingFor(sql);
    const list = await approvals('list', '--token-file', await tokenFile('alice'));
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(id);
    expect(list.stdout).toContain(sql);
    const ok = await approvals('approve', id, '--token-file', await tokenFile('alice'));
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`${id}: approved by alice@example.test`);
    const r = await agent;
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('approved note\nsession_goes_on\n');
    const notice = notices.find((n) => (n.interlock as { id?: string })?.id === id);
    expect(notice?.text).toMatch(/waits for approval/);
  });

  /** unmodified ssh from the report-bot agent, no key: the node trusted through known_hosts */
  const ssh = (command: string) => collect(spawnAgent(env.cg('report-bot.service'), 'ssh', [
    '-F', '/dev/null', '-o', `UserKnownHostsFile=${agentKnownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', `${SSH_USER}@127.0.0.4`, command,
  ]), 40_000);

  it('holds an SSH exec until approved, then runs it upstream; a rejected one never runs', async () => {
    const yes = `/tmp/il-approve-yes-${process.pid}`, no = `/tmp/il-approve-no-${process.pid}`;
    rmSync(yes, { force: true });
    rmSync(no, { force: true });
    const approvedRun = ssh(`touch ${yes}`);
    const id = await pendingFor(`touch ${yes}`);
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(yes)).toBe(false); // held: nothing ran yet
    const ok = await approvals('approve', id, '--token-file', await tokenFile('alice'));
    expect(ok.code, ok.stderr).toBe(0);
    const r = await approvedRun;
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(yes)).toBe(true); // the server ran it, as the vaulted user
    const rejectedRun = ssh(`touch ${no}`);
    const id2 = await pendingFor(`touch ${no}`);
    const rejected = await approvals('reject', id2, '--reason', 'not today', '--token-file', await tokenFile('alice'));
    expect(rejected.code, rejected.stderr).toBe(0);
    const r2 = await rejectedRun;
    expect(r2.code).toBe(126);
    expect(r2.stderr).toContain('rejected by alice@example.test: not today');
    expect(existsSync(no)).toBe(false);
    rmSync(yes, { force: true });
  });

  const kubectl = (args: string[]) => collect(spawnAgent(env.cg('report-bot.service'), 'kubectl',
    ['--kubeconfig', kubeconfig, '--cache-dir', join(env.root, `kube-cache-${Math.random().toString(36).slice(2)}`), '--request-timeout', '20s', ...args]), 40_000);
  const pendingKube = async (name: string) =>
    String((await waitForAudit(env.auditFile, (l) => l.event === 'approval.requested' && String(l.command).startsWith('DELETE ') && String(l.command).includes(`/pods/${name}`), 15_000)).approval);

  it('holds a Kubernetes delete until approved, then the API server gets it; a rejected one never reaches it', async () => {
    const approvedRun = kubectl(['delete', 'pod', 'web-0', '-n', 'shop', '--wait=false']);
    const id = await pendingKube('web-0');
    await new Promise((r) => setTimeout(r, 300));
    expect(api.requests.some((q) => q.method === 'DELETE')).toBe(false); // held: the API server has seen nothing
    expect(api.store.get('pods', 'shop', 'web-0')).toBeTruthy();
    const ok = await approvals('approve', id, '--token-file', await tokenFile('alice'));
    expect(ok.code, ok.stderr).toBe(0);
    const r = await approvedRun;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('pod "web-0" deleted');
    expect(api.store.get('pods', 'shop', 'web-0')).toBeFalsy();

    const rejectedRun = kubectl(['delete', 'pod', 'web-1', '-n', 'shop', '--wait=false']);
    const id2 = await pendingKube('web-1');
    const no = await approvals('reject', id2, '--reason', 'keep it', '--token-file', await tokenFile('alice'));
    expect(no.code, no.stderr).toBe(0);
    const r2 = await rejectedRun;
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/Forbidden.*rejected by alice@example\.test: keep it/);
    expect(api.store.get('pods', 'shop', 'web-1')).toBeTruthy();
    expect(api.requests.filter((q) => q.method === 'DELETE')).toHaveLength(1);
  });

  it('refuses an approver outside the group; a rejection with a reason reaches psql as 42501', async () => {
    const sql = "DELETE FROM notes WHERE body = 'approved note'";
    const agent = held(sql);
    const id = await pendingFor(sql);
    const wrong = await approvals('approve', id, '--token-file', await tokenFile('mallory'));
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/not in an approver group/);
    const no = await approvals('reject', id, '--reason', 'keep the notes', '--token-file', await tokenFile('alice'));
    expect(no.code, no.stderr).toBe(0);
    const r = await agent;
    expect(r.stderr).toMatch(/ERROR:\s+interlock: rejected by alice@example.test: keep the notes/);
    expect(r.stdout).toBe('session_goes_on\n');
    expect(env.pg.superSql("SELECT count(*) FROM notes WHERE body = 'approved note'").trim()).toBe('1');
  });

  it('times out into a denial', async () => {
    const sql = "UPDATE notes SET body = 'never' WHERE id = 1";
    const t0 = Date.now();
    const r = await held(sql);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3500);
    expect(r.stderr).toMatch(/ERROR:\s+interlock: approval timed out/);
    expect(r.stdout).toBe('session_goes_on\n');
  });

  it('an agent cannot approve: no access to the socket, and a workload token is refused', async () => {
    const sql = "INSERT INTO notes VALUES (2, 'self-approved?')";
    const agent = held(sql);
    const id = await pendingFor(sql);
    const fromAgent = await runAgent(env.cg('report-bot.service'), process.execPath, [join(import.meta.dirname, '../../dist/cli/main.js'), 'approvals', 'approve', id, '--config', env.configFile, '--token-file', '/dev/null']);
    expect(fromAgent.code).not.toBe(0);
    expect(fromAgent.stderr).toMatch(/EACCES|permission denied|cannot read/i);
    // a client-credentials token, even presented by root, cannot approve
    const cc = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${idp.ordersAgent.clientId}:${idp.ordersAgent.clientSecret}`).toString('base64')}` },
      body: 'grant_type=client_credentials',
    });
    const workloadToken = ((await cc.json()) as { access_token?: string }).access_token ?? '';
    expect(workloadToken).not.toBe('');
    const file = join(env.root, 'workload.token');
    writeFileSync(file, workloadToken, { mode: 0o600 });
    const refused = await approvals('approve', id, '--token-file', file);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/cannot approve|access tokens cannot approve|wrong audience/);
    await approvals('reject', id, '--reason', 'test over', '--token-file', await tokenFile('alice'));
    await agent;
  });

  it('an approval with a time window lets the same statement through again, and not a different one', async () => {
    const sql = "INSERT INTO notes VALUES (3, 'windowed')";
    const first = held(sql);
    const id = await pendingFor(sql);
    expect((await approvals('approve', id, '--window', '5m', '--token-file', await tokenFile('alice'))).code).toBe(0);
    expect((await first).stderr).toBe('');
    const again = await runAgent(env.cg('report-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', sql]);
    expect(again.stderr).toBe(''); // no new request: it ran at once
    expect(readAudit(env.auditFile).filter((l) => l.event === 'approval.requested' && l.command === sql)).toHaveLength(1);
    const other = await held("INSERT INTO notes VALUES (4, 'not covered')");
    expect(other.stderr).toMatch(/approval timed out/);
    chmodSync(env.root, 0o755);
  });

  it('groups from the workload\'s client-credentials token drive policy; with the IdP down after expiry they are dropped and access is denied', async () => {
    const asIdpBot = () => runAgent(env.cg('idp-bot.service'), 'psql', ['-h', '127.0.0.3', '-U', 'agent', '-d', 'orders', '-w', '-qAtX', '-c', "SELECT 'idp_groups_ok'"]);
    const ok = await asIdpBot();
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('idp_groups_ok\n'); // allowed only through the IdP's [reporting] group
    const start = await waitForAudit(env.auditFile, (l) => l.event === 'session.start' && l.pid === ok.pid);
    expect(start.groups).toEqual(expect.arrayContaining(['reporting', 'orders-reader']));

    await idp.setDown(true);
    try {
      await new Promise((r) => setTimeout(r, 5000)); // past the 4 s token lifetime
      await asIdpBot(); // sees the expiry, asks the IdP, which is down
      await new Promise((r) => setTimeout(r, 300));
      const denied = await asIdpBot();
      expect(denied.stdout).toBe('');
      expect(denied.stderr).toMatch(/has no policy for target orders-db/);
      await waitForAudit(env.auditFile, (l) => l.event === 'workload.groups-dropped' && l.workload === 'idp-bot');
    } finally {
      await idp.setDown(false);
    }
  });
});
