/** Starts the real `interlock run` (the built CLI) on a config, and reads its audit trail. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '../../dist/cli/main.js');

export interface RunningDaemon {
  proc: ChildProcess;
  output(): string;
  /** SIGTERM and wait for exit; resolves to the exit code */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export async function startDaemon(configFile: string, timeoutMs = 15_000, nodeArgs: string[] = []): Promise<RunningDaemon> {
  const proc = spawn(process.execPath, [...nodeArgs, CLI, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not ready in ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = () => {
      if (out.includes('interlock ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stderr!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (${code}) before ready:\n${out}`));
    });
  });
  return {
    proc,
    output: () => out,
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export type AuditLine = Record<string, unknown> & { event: string };

export function readAudit(file: string): AuditLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditLine);
}

/** Polls the audit file until `pred` holds for some line (the trail is written asynchronously). */
export async function waitForAudit(file: string, pred: (l: AuditLine) => boolean, timeoutMs = 5000): Promise<AuditLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = readAudit(file).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no matching audit line in ${file}:\n${readFileSync(file, 'utf8').slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
