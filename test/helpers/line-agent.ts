/**
 * An agent that stays up while the test acts around it: it reports on stdout as JSON
 * lines (read as they arrive) and waits for the test's word on stdin.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { spawnAgent } from './agent.js';

/** node-postgres, for agent scripts (required by absolute path: agents run as nobody from /tmp) */
export const PG_MODULE = join(import.meta.dirname, '../../node_modules/pg');

export type AgentLine = Record<string, unknown> & { ev: string };

export class LineAgent {
  /** every agent not yet exited: a failed test's afterAll kills them (killAll), not their own time limit */
  private static readonly live = new Set<LineAgent>();
  readonly lines: AgentLine[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private partial = '';
  private readonly killer: NodeJS.Timeout;

  /** a node script run as the agent in `cgroupDir`; killed after `timeoutMs` whatever happens */
  constructor(cgroupDir: string, script: string, args: string[], timeoutMs: number) {
    this.child = spawnAgent(cgroupDir, process.execPath, ['-e', script, ...args]);
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      const text = this.partial + d;
      const parts = text.split('\n');
      this.partial = parts.pop()!;
      for (const p of parts) if (p.trim()) this.lines.push(JSON.parse(p) as AgentLine);
    });
    this.child.stderr!.on('data', (d) => (this.stderr += d));
    this.child.stdin!.on('error', () => {}); // an agent that already exited does not read its stdin
    this.killer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    LineAgent.live.add(this);
    this.exited = new Promise((resolve) => this.child.on('close', (code) => {
      clearTimeout(this.killer);
      LineAgent.live.delete(this);
      resolve(code);
    }));
  }

  static async killAll(): Promise<void> {
    const all = [...LineAgent.live];
    for (const a of all) a.child.kill('SIGKILL');
    await Promise.all(all.map((a) => a.exited));
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(word: string): void {
    this.child.stdin!.write(`${word}\n`);
  }

  /** the first line (in order) that satisfies `pred`, waiting up to `timeoutMs` */
  async waitFor(pred: (l: AgentLine) => boolean, timeoutMs: number): Promise<AgentLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`agent ${this.pid}: no matching line in ${timeoutMs} ms; got ${JSON.stringify(this.lines.slice(-5))}; stderr: ${this.stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
