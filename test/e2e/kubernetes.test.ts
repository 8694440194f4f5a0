/**
 * Kubernetes end to end: the real kubectl, unmodified, run as `nobody` inside the
 * agents' cgroup with a credential-free kubeconfig from `interlock kubeconfig`, dials
 * the API server's address; the eBPF redirect hands it to interlock, which decides,
 * masks, injects the vaulted token and records. There is no kube-apiserver on this
 * machine: the upstream is the test fixture in test/helpers/kube-apiserver.ts (TLS,
 * HTTP/2, discovery, CRUD, Table, watch, exec over WebSocket), driven by real kubectl.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { collect, runAgent, spawnAgent, type AgentResult } from '../helpers/agent.js';
import { cli, readAudit, waitForAudit } from '../helpers/daemon.js';
import { ALLOW_ORDINARY, E2EEnv } from '../helpers/e2e-env.js';
import { startKubeApiServer, type FakeKubeApiServer } from '../helpers/kube-apiserver.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { readRecording } from '../../src/recording/store.js';

const enabled = bpfGate();
const HOST = '127.0.0.6';
const TOKEN = `vaulted-token-${process.pid}`;

describe.skipIf(!enabled)('Kubernetes API through the redirect', () => {
  let api: FakeKubeApiServer;
  let env: E2EEnv;
  let work = '';
  let kubeconfig = '';
  let runs = 0;

  const kubectl = (args: string[], opts: { config?: string; timeoutMs?: number } = {}): Promise<AgentResult> => {
    const cache = join(work, `cache-${runs++}`);
    return runAgent(env.cg('ci-bot.service'), 'kubectl', ['--kubeconfig', opts.config ?? kubeconfig, '--cache-dir', cache, '--request-timeout', '15s', ...args], { timeoutMs: opts.timeoutMs ?? 30_000 });
  };

  beforeAll(async () => {
    work = mkdtempSync('/tmp/interlock-kube-work-');
    chmodSync(work, 0o777);
    api = await startKubeApiServer({ host: HOST, port: 6443, dir: join(work, 'api'), token: TOKEN });
    const tokenFile = join(work, 'cluster.token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    env = new E2EEnv({
      name: 'kube',
      proxyPort: 15441,
      rules: ALLOW_ORDINARY,
      targets: [
        '  - name: cluster',
        '    protocol: kubernetes',
        `    address: ${HOST}:6443`,
        '    serverName: kubernetes.default.svc',
        '    upstream:',
        `      token: { file: ${tokenFile} }`,
        `      ca: { file: ${api.caFile} }`,
      ].join('\n'),
      workloads: '  - name: ci-bot\n    match: { cgroup: /interlock-kube.slice/ci-bot.service }\n    groups: [ci]',
      policies: [
        '  - name: ci-kube',
        '    subjects: { groups: [ci] }',
        '    targets: [cluster]',
        '    rules:',
        '      - { action: allow, match: { verbs: [get, list, watch], resources: [pods, deployments, secrets, configmaps, pods/log], namespaces: [shop] } }',
        '      - { action: deny,  match: { verbs: [delete, deletecollection] }, message: "agents do not delete" }',
        '      - { action: allow, match: { verbs: [create], resources: [pods/exec], commands: ["ls *", "cat /etc/hostname"] } }',
        '    masking:',
        '      - { detectors: [email, aws_key], strategy: redact }',
      ].join('\n'),
    });
    await env.start();
    const kc = cli(['kubeconfig', '--target', 'cluster', '--config', env.configFile]);
    expect(kc.code, kc.stderr).toBe(0);
    kubeconfig = join(work, 'kubeconfig');
    writeFileSync(kubeconfig, kc.stdout);
    chmodSync(kubeconfig, 0o644);
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
    await api?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('prints a kubeconfig with no credential that trusts the node CA', () => {
    const kc = cli(['kubeconfig', '--target', 'cluster', '--config', env.configFile]).stdout;
    expect(kc).toContain(`server: https://${HOST}:6443`);
    expect(kc).toContain('certificate-authority-data:');
    expect(kc).toMatch(/token: interlock-injects-the-credential/); // a placeholder, so kubectl does not prompt
    expect(kc).not.toMatch(/client-key|password/i);
    expect(kc).not.toContain(TOKEN);
  });

  it('lists pods: allowed, with the vaulted token injected and the agent\'s own token stripped', async () => {
    const before = api.requests.length;
    const r = await kubectl(['get', 'pods', '-n', 'shop', '--token', 'agents-own-token']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^NAME\s+READY\s+STATUS/m);
    expect(r.stdout).toMatch(/^web-0\s/m);
    const seen = api.requests.slice(before);
    expect(seen.length).toBeGreaterThan(0);
    for (const q of seen) expect(q.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(JSON.stringify(seen)).not.toContain('agents-own-token');
    expect(JSON.stringify(seen)).not.toContain('interlock-injects-the-credential');
    const q = await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.verb === 'list' && l.resource === 'pods' && l.namespace === 'shop');
    expect(q).toMatchObject({ workload: 'ci-bot', target: 'cluster', decision: 'allow', comm: expect.stringMatching(/kubectl/) });
  });

  it('denies a delete with kubectl\'s normal Forbidden output, and nothing is deleted', async () => {
    const r = await kubectl(['delete', 'deployment', 'web', '-n', 'shop']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Error from server \(Forbidden\): deployments\.apps "web" is forbidden: interlock: agents do not delete/);
    expect(api.store.get('deployments', 'shop', 'web')).toBeTruthy();
    expect(api.requests.some((q) => q.method === 'DELETE')).toBe(false);
  });

  it('denies what no rule allows (secrets in another namespace)', async () => {
    const r = await kubectl(['get', 'secrets', '-n', 'kube-system']);
    expect(r.stderr).toMatch(/Forbidden/);
    expect(r.stdout).toBe('');
  });

  it('masks Secret values and detector hits: get -o yaml shows no secret', async () => {
    const r = await kubectl(['get', 'secret', 'db-creds', '-n', 'shop', '-o', 'yaml']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/password:/);
    expect(r.stdout).not.toContain('czNjcjN0LXBhNTU='); // base64 of the password
    expect(r.stdout).not.toContain('s3cr3t-pa55');
    const cm = await kubectl(['get', 'configmap', 'app-config', '-n', 'shop', '-o', 'json']);
    expect(cm.stderr).toBe('');
    expect(cm.stdout).not.toContain('AKIAIOSFODNN7EXAMPLE');
    await waitForAudit(env.auditFile, (l) => l.event === 'masked' && l.resource === 'secrets');
  });

  it('masks a watch stream', async () => {
    const child = spawnAgent(env.cg('ci-bot.service'), 'kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(work, 'cache-watch'), 'get', 'secrets', '-n', 'shop', '-w', '-o', 'json']);
    const done = collect(child, 30_000);
    await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.verb === 'watch' && l.resource === 'secrets');
    await new Promise((res) => setTimeout(res, 300));
    api.store.update('secrets', 'shop', 'db-creds', (s) => {
      (s as { data: Record<string, string> }).data.password = Buffer.from('rotated-very-secret').toString('base64');
    });
    await new Promise((res) => setTimeout(res, 800));
    child.kill('SIGTERM');
    const r = await done;
    expect(r.stdout).toContain('db-creds');
    expect(r.stdout).not.toContain(Buffer.from('rotated-very-secret').toString('base64'));
    expect(r.stdout).not.toContain('czNjcjN0LXBhNTU=');
  });

  it('exec: allowed by command, denied otherwise (nothing runs), and recorded', async () => {
    const ok = await kubectl(['exec', 'web-0', '-n', 'shop', '--', 'ls', '-l']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.length).toBeGreaterThan(0);
    expect(api.execs.some((e) => e.command.join(' ') === 'ls -l')).toBe(true);
    const bad = await kubectl(['exec', 'web-0', '-n', 'shop', '--', 'sh', '-c', 'ls; rm -rf /']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/forbidden|Forbidden/);
    expect(api.execs.some((e) => e.command.includes('rm -rf /') || e.command.join(' ').includes('rm -rf'))).toBe(false);

    const start = await waitForAudit(env.auditFile, (l) => l.event === 'command' && l.resource === 'pods/exec' && l.decision === 'allow');
    await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === start.session);
    await new Promise((res) => setTimeout(res, 300));
    const rec = readRecording(env.recordingsDir, String(start.session), loadRecordingKey(env.recordingKey, { create: false }));
    expect(rec.problems).toEqual([]);
    expect(rec.start).toMatchObject({ protocol: 'kubernetes', workload: 'ci-bot', target: 'cluster' });
    expect(rec.events.some((e) => e.k === 'decision' && e.command.includes('/exec?') && e.action === 'allow')).toBe(true);
    expect(rec.events.some((e) => e.k === 'out')).toBe(true); // the stream's frames, with timing
  });

  it('a client that does not trust the node CA fails TLS', async () => {
    const untrusting = join(work, 'kubeconfig-no-ca');
    writeFileSync(untrusting, `apiVersion: v1
kind: Config
clusters: [ { name: c, cluster: { server: "https://${HOST}:6443" } } ]
users: [ { name: u, user: { token: placeholder } } ]
contexts: [ { name: c, context: { cluster: c, user: u } } ]
current-context: c
`);
    chmodSync(untrusting, 0o644);
    const r = await kubectl(['get', 'pods', '-n', 'shop'], { config: untrusting });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate signed by unknown authority|x509/);
  });

  it('serves 20 concurrent kubectl processes', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => kubectl(['get', 'pods', '-n', 'shop', '-o', 'name'], { timeoutMs: 60_000 })));
    for (const r of results) {
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('pod/web-1');
    }
    const lists = () => readAudit(env.auditFile).filter((l) => l.event === 'command' && l.verb === 'list' && l.resource === 'pods' && l.namespace === 'shop').length;
    for (let i = 0; i < 20 && lists() < 20; i++) await new Promise((res) => setTimeout(res, 100)); // the trail is written in batches
    expect(lists()).toBeGreaterThanOrEqual(20);
  });
});
