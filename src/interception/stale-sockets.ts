/**
 * Sockets the cgroup hooks never judged: a process that joined the agents' cgroup
 * after opening a socket keeps that socket's original cgroup, and with it a way
 * around the redirect. The kernel reports each socket's cgroup through sock_diag;
 * `ss --cgroup` reads it, and /proc says which cgroup each owner lives in now.
 */
import { execFile } from 'node:child_process';
import { cgroupOfProcess, isWithin } from '../identity/cgroups.js';

export interface SocketOwner {
  netid: string;
  local: string;
  peer: string;
  /** the socket's cgroup (where it was created), relative to the cgroup2 mount */
  socketCgroup: string;
  owners: { comm: string; pid: number }[];
}

export interface StaleSocket {
  pid: number;
  comm: string;
  /** the process's cgroup now */
  processCgroup: string;
  socketCgroup: string;
  netid: string;
  local: string;
  peer: string;
}

const USERS = /users:\((.*)\)/;
const OWNER = /\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)/g;
const CGROUP = /\bcgroup:(\S+)/;

/** Parses `ss -tuanpH --cgroup` output (pure). Lines without an owner or a cgroup are skipped. */
export function parseSs(text: string): SocketOwner[] {
  const out: SocketOwner[] = [];
  for (const line of text.split('\n')) {
    const users = USERS.exec(line);
    const cg = CGROUP.exec(line);
    if (!users || !cg) continue;
    const f = line.trim().split(/\s+/);
    const owners = [...users[1].matchAll(OWNER)].map((m) => ({ comm: m[1], pid: Number(m[2]) }));
    out.push({ netid: f[0], local: f[4], peer: f[5], socketCgroup: cg[1], owners });
  }
  return out;
}

/** Owners inside the agents' cgroup holding sockets created outside it (pure). */
export function staleSockets(sockets: SocketOwner[], agents: string, cgroupOf: (pid: number) => string | undefined): StaleSocket[] {
  const found: StaleSocket[] = [];
  for (const s of sockets) {
    if (isWithin(s.socketCgroup, agents)) continue;
    for (const o of s.owners) {
      const now = cgroupOf(o.pid);
      if (now === undefined || !isWithin(now, agents)) continue;
      found.push({ pid: o.pid, comm: o.comm, processCgroup: now, socketCgroup: s.socketCgroup, netid: s.netid, local: s.local, peer: s.peer });
    }
  }
  return found;
}

/** The stale sockets on this host right now; undefined when `ss` cannot tell (too old, missing). */
export function findStaleSockets(agents: string): Promise<StaleSocket[] | undefined> {
  return new Promise((resolve) => {
    execFile('ss', ['-tuanpH', '--cgroup'], { encoding: 'utf8', timeout: 10_000, maxBuffer: 64 << 20 }, (err, text) => {
      resolve(err ? undefined : staleSockets(parseSs(text), agents, (pid) => cgroupOfProcess(pid)));
    });
  });
}

/** Reports each stale socket once, for as long as it lasts (pure bookkeeping). */
export class StaleSocketWatch {
  private seen = new Set<string>();

  /** The sockets of `now` not reported before; forgets those that are gone. */
  fresh(now: StaleSocket[]): StaleSocket[] {
    const keys = new Set<string>();
    const out: StaleSocket[] = [];
    for (const s of now) {
      const key = `${s.pid}|${s.netid}|${s.local}|${s.peer}`;
      keys.add(key);
      if (!this.seen.has(key)) out.push(s);
    }
    this.seen = keys;
    return out;
  }
}
