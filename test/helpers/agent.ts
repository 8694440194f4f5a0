/**
 * Runs an unmodified program as an agent would run: inside a cgroup below the agents'
 * cgroup, as the unprivileged user nobody, with a clean environment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface AgentResult {
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface AgentOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  user?: string;
}

export function spawnAgent(cgroupDir: string, cmd: string, args: string[], opts: AgentOptions = {}): ChildProcess {
  mkdirSync(cgroupDir, { recursive: true });
  const user = opts.user ?? 'nobody';
  const env = { HOME: '/tmp', PATH: '/usr/bin:/bin:/usr/local/bin', PGCONNECT_TIMEOUT: '5', ...opts.env };
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  // join the cgroup first, then drop privileges and exec: the pid stays the same throughout
  return spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"', cgroupDir, '_',
    'setpriv', `--reuid=${user}`, '--regid=nogroup', '--clear-groups', 'env', '-i', ...envArgs, cmd, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function runAgent(cgroupDir: string, cmd: string, args: string[], opts: AgentOptions = {}): Promise<AgentResult> {
  const child = spawnAgent(cgroupDir, cmd, args, opts);
  return collect(child, opts.timeoutMs ?? 20_000);
}

export function collect(child: ChildProcess, timeoutMs: number): Promise<AgentResult> {
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, stdout, stderr });
    });
  });
}

export function agentCgroup(mount: string, agentsCgroup: string, unit: string): string {
  return join(mount, agentsCgroup, unit);
}
