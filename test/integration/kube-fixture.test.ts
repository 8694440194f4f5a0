/**
 * The fake Kubernetes API server is only useful if the real kubectl cannot tell it from a
 * cluster for the commands the Kubernetes tests use. These tests drive kubectl against it
 * directly: TLS + token from a kubeconfig, discovery, tables, YAML/JSON output, delete,
 * watch, exec over WebSocket, logs, a bad token, and many clients at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startKubeApiServer, type FakeKubeApiServer } from '../helpers/kube-apiserver.js';

const HOST = '127.0.0.8';
const TOKEN = 'fixture-token-7f3a9c';
const KUBECTL_TIMEOUT_MS = 20_000;

const kubectlMissing = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).error !== undefined;
if (kubectlMissing) console.warn('kube-fixture test skipped: kubectl is not on PATH');

interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe.skipIf(kubectlMissing)('fake kube-apiserver driven by the real kubectl', () => {
  let dir: string;
  let api: FakeKubeApiServer;
  const children = new Set<ChildProcess>();

  /** kubectl's environment: no proxies, no ambient kubeconfig, a private home. */
  function kubectlEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir };
    for (const name of ['KUBECONFIG', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy']) delete env[name];
    return env;
  }

  function writeKubeconfig(name: string, token: string): string {
    const file = join(dir, name);
    writeFileSync(file, [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${api.url}`,
      `    certificate-authority: ${api.caFile}`,
      'users:',
      '- name: agent',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: fake',
      '  context: {cluster: fake, user: agent}',
      'current-context: fake',
      '',
    ].join('\n'));
    return file;
  }

  function kubectlArgs(args: string[], opts: { token?: string; cacheDir?: string }): string[] {
    const kubeconfig = opts.token ? writeKubeconfig(`kubeconfig-${opts.token}`, opts.token) : join(dir, 'kubeconfig');
    return ['--kubeconfig', kubeconfig, '--cache-dir', opts.cacheDir ?? join(dir, 'cache'), ...args];
  }

  function kubectl(args: string[], opts: { token?: string; cacheDir?: string; stdin?: string } = {}): Promise<KubectlResult> {
    return new Promise((resolve) => {
      const child = execFile('kubectl', kubectlArgs(args, opts), { env: kubectlEnv(), timeout: KUBECTL_TIMEOUT_MS }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      });
      child.stdin!.end(opts.stdin ?? '');
    });
  }

  async function waitFor(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const requestsTo = (pathPrefix: string) => api.requests.filter((r) => r.path.startsWith(pathPrefix));

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/interlock-kube-fixture-');
    api = await startKubeApiServer({ host: HOST, port: 0, dir, token: TOKEN });
    writeKubeconfig('kubeconfig', TOKEN);
  });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists pods as a server-side table over HTTP/2, authenticated with the token', async () => {
    const r = await kubectl(['get', 'pods', '-n', 'shop']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/^web-0\s+1\/1\s+Running\s+0\s+\S+$/), expect.stringMatching(/^web-1\s+1\/1\s+Running\s+0\s+\S+$/)]);

    const list = requestsTo('/api/v1/namespaces/shop/pods?').at(-1)!;
    expect(list.httpVersion).toBe('2.0');
    expect(list.headers.accept).toContain('as=Table');
    expect(list.headers.authorization).toBe(`Bearer ${TOKEN}`);
    // kubectl asked for aggregated discovery and accepted the legacy documents instead
    expect(requestsTo('/api/v1?').length).toBeGreaterThan(0);
    expect(requestsTo('/apis/apps/v1?').length).toBeGreaterThan(0);
  });

  it('prints pods as JSON', async () => {
    const r = await kubectl(['get', 'pods', '-n', 'shop', '-o', 'json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(list.kind).toBe('List');
    expect(list.items.map((p: { kind: string; metadata: { name: string } }) => `${p.kind}/${p.metadata.name}`)).toEqual(['Pod/web-0', 'Pod/web-1']);
  });

  it('shows secrets and configmaps unmasked (the fixture is the cluster, not the proxy)', async () => {
    const secret = await kubectl(['get', 'secret', 'db-creds', '-n', 'shop', '-o', 'yaml']);
    expect(secret.code).toBe(0);
    expect(secret.stdout).toContain(`password: ${Buffer.from('s3cr3t-pa55').toString('base64')}`);
    expect(secret.stdout).toContain('kind: Secret');
    const config = await kubectl(['get', 'configmap', 'app-config', '-n', 'shop', '-o', 'json']);
    expect(JSON.parse(config.stdout).data.AWS_ACCESS_KEY_ID).toBe('AKIAIOSFODNN7EXAMPLE');
  });

  it('reports a missing object as the API server does', async () => {
    const r = await kubectl(['get', 'pod', 'nosuch', '-n', 'shop']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('Error from server (NotFound): pods "nosuch" not found');
  });

  it('deletes a deployment from the store', async () => {
    expect(api.store.get('deployments', 'shop', 'web')).toBeDefined();
    const r = await kubectl(['delete', 'deployment', 'web', '-n', 'shop']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('deployment.apps "web" deleted');
    expect(api.store.get('deployments', 'shop', 'web')).toBeUndefined();
    expect(api.requests.some((q) => q.method === 'DELETE' && q.path.startsWith('/apis/apps/v1/namespaces/shop/deployments/web'))).toBe(true);
  });

  it('creates, labels and scales through kubectl (protobuf and patch bodies)', async () => {
    expect((await kubectl(['create', 'secret', 'generic', 'api-key', '-n', 'shop', '--from-literal=key=k-123'])).stdout.trim()).toBe('secret/api-key created');
    expect(api.store.get('secrets', 'shop', 'api-key')?.data).toEqual({ key: Buffer.from('k-123').toString('base64') });
    const again = await kubectl(['create', 'secret', 'generic', 'api-key', '-n', 'shop', '--from-literal=key=k-123']);
    expect(again.stderr).toContain('already exists');

    expect((await kubectl(['label', 'pod', 'web-1', '-n', 'shop', 'tier=frontend'])).stdout.trim()).toBe('pod/web-1 labeled');
    expect(api.store.get('pods', 'shop', 'web-1')?.metadata.labels?.tier).toBe('frontend');
    const selected = await kubectl(['get', 'pods', '-n', 'shop', '-l', 'tier=frontend', '-o', 'name']);
    expect(selected.stdout.trim()).toBe('pod/web-1');
  });

  it('watches pods: the list, then a MODIFIED event when a pod changes', async () => {
    const child = spawn('kubectl', kubectlArgs(['get', 'pods', '-n', 'shop', '-w', '--output-watch-events'], {}), { env: kubectlEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the initial rows', () => /ADDED\s+web-1/.test(out));
      await waitFor('the watch request', () => api.requests.some((q) => q.path.startsWith('/api/v1/namespaces/shop/pods?') && q.path.includes('watch=true')));
      api.store.update('pods', 'shop', 'web-1', (pod) => {
        pod.status.containerStatuses[0].restartCount = 3;
      });
      await waitFor('the MODIFIED row', () => /MODIFIED\s+web-1\s+1\/1\s+Running\s+3\s/.test(out));
      expect(out.split('\n')[0]).toMatch(/^EVENT\s+NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
      expect(out).toMatch(/ADDED\s+web-0\s+1\/1\s+Running/);
    } finally {
      child.kill();
      children.delete(child);
    }
  });

  it('execs over a WebSocket and records the command', async () => {
    const r = await kubectl(['exec', 'web-0', '-n', 'shop', '--', 'ls', '-l']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('server.js');
    expect(r.stdout.split('\n')[0]).toBe('total 16');
    expect(api.execs.at(-1)).toEqual({ namespace: 'shop', pod: 'web-0', container: 'web', command: ['ls', '-l'], protocol: 'v5.channel.k8s.io' });

    const upgrade = requestsTo('/api/v1/namespaces/shop/pods/web-0/exec').at(-1)!;
    expect(upgrade.httpVersion).toBe('1.1');
    expect(upgrade.headers.upgrade?.toLowerCase()).toBe('websocket');
    expect(upgrade.headers.authorization).toBe(`Bearer ${TOKEN}`);
    // kubectl did not need its SPDY fallback
    expect(api.requests.some((q) => /spdy/i.test(String(q.headers.upgrade ?? '')))).toBe(false);
  });

  it('passes exit codes and stdin through exec', async () => {
    const failed = await kubectl(['exec', 'web-0', '-n', 'shop', '--', 'false']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('command terminated with exit code 1');
    const hostname = await kubectl(['exec', 'web-1', '-n', 'shop', '--', 'cat', '/etc/hostname']);
    expect(hostname.stdout).toBe('web-1\n');
    const echoed = await kubectl(['exec', '-i', 'web-1', '-n', 'shop', '--', 'cat'], { stdin: 'hello from stdin\n' });
    expect(echoed.stdout).toBe('hello from stdin\n');
  });

  it('serves pod logs', async () => {
    const all = await kubectl(['logs', 'web-0', '-n', 'shop']);
    expect(all.code).toBe(0);
    expect(all.stdout).toContain('starting web server');
    expect(all.stdout.trim().split('\n').length).toBeGreaterThan(2);
    const tail = await kubectl(['logs', 'web-0', '-n', 'shop', '--tail=1']);
    expect(tail.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('refuses a wrong token with 401 and kubectl says so', async () => {
    // with discovery cached, the request itself fails and kubectl shows the Status message
    const cached = await kubectl(['get', 'pods', '-n', 'shop'], { token: 'wrong-token' });
    expect(cached.code).toBe(1);
    expect(cached.stderr.trim()).toBe('error: You must be logged in to the server (Unauthorized)');
    expect(api.requests.at(-1)!.headers.authorization).toBe('Bearer wrong-token');
    // with nothing cached, discovery fails first and client-go words it its own way
    const cold = await kubectl(['get', 'pods', '-n', 'shop'], { token: 'wrong-token', cacheDir: join(dir, 'cold-cache') });
    expect(cold.code).toBe(1);
    expect(cold.stderr).toContain('error: You must be logged in to the server (the server has asked for the client to provide credentials)');
  });

  it('serves 20 concurrent kubectl clients', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => kubectl(['get', 'pods', '-n', 'shop'])));
    for (const r of results) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/web-0\s+1\/1\s+Running/);
    }
  }, 60_000);
});
