/**
 * The eBPF redirect as the daemon sees it: attach it to the agents' cgroup, tell it
 * which destinations to intercept, and look up who dialed an accepted connection.
 */
import { join } from 'node:path';
import { addon, type PinnedLink } from './addon.js';
import {
  ALLOW_KEY_SIZE, EGRESS_LOCKDOWN, ENDPOINT_SIZE, MAP_CONFIG, MAP_EGRESS_ALLOW, MAP_EVENTS, MAP_FLOWS, MAP_LOST_EVENTS, MAP_PORTS,
  MAP_TARGETS, MAP_UNIX_DENY, ORIGIN_SIZE, PORT_KEY_SIZE, UNIX_PATH_LEN,
  decodeEvent, decodeOrigin, encodeAllowKey, encodeConfig, encodeEndpoint, encodePortKey, encodeRedirect, encodeUnixName,
  type AllowEntry, type Origin, type RefusedAttempt,
} from './layout.js';

export interface InterceptedEndpoint {
  ip: string;
  port: number;
  proxyPort: number;
  protocol: number;
}

export interface InterceptedPort {
  port: number;
  proxyPort: number;
  protocol: number;
}

/** Turns the addon's errno-coded failures into what an operator can act on. */
export function explainBpfError(e: unknown, doing: string): Error {
  const err = e as Error & { code?: string };
  const hint =
    err.code === 'EPERM' || err.code === 'EACCES'
      ? ' (needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)'
      : err.code === 'ENOENT'
        ? ' (does the cgroup exist on the cgroup2 mount?)'
        : err.code === 'EINVAL' || err.code === 'ENOTSUP'
          ? ' (kernel too old or without cgroup BPF? see `interlock doctor`)'
          : '';
  return new Error(`${doing}: ${err.message}${hint}`);
}

/** optional programs, by what they need: BPF LSM (lsm_cgroup), and cgroup unix connect (6.7+) */
const LSM_PROGRAMS = ['il_socket_create', 'il_unix_connect'];
const UNIX_CONNECT_PROGRAMS = ['il_connect_unix'];

export interface Coverage {
  /** unix connects judged on the listener's bound name (BPF LSM): symlinks and hard links change nothing */
  unixByBoundName: boolean;
  /** unix connects judged on the path the client passed (cgroup/connect_unix) */
  unixByDialedPath: boolean;
  /** AF_PACKET sockets refused (BPF LSM) */
  packetSockets: boolean;
  /** why an optional program is not attached */
  missing: string[];
}

export class Redirect {
  private readonly flowKey = Buffer.alloc(ENDPOINT_SIZE);

  private events?: number;

  /**
   * @param coverage what the optional programs this kernel loaded guard, and why any is missing
   */
  private constructor(readonly pinDir: string, readonly cgroupId: bigint, readonly coverage: Coverage) {}

  /** Attaches (or re-uses the pinned) programs on cgroupPath; pins under pinDir. */
  static attach(cgroupPath: string, pinDir: string): Redirect {
    const a = addon();
    const bpffs = pinDir.split('/').slice(0, 4).join('/') || pinDir;
    try {
      a.ensureBpffs(bpffs);
    } catch (e) {
      throw explainBpfError(e, `mounting bpffs at ${bpffs}`);
    }
    const missing: string[] = [];
    const skip: string[] = [];
    // BPF LSM programs attach fine where the bpf LSM is inactive, and then never run: ask first
    const lsms = a.activeLsms().trim();
    if (!lsms.split(',').includes('bpf')) {
      skip.push(...LSM_PROGRAMS);
      missing.push(lsms ? `the bpf LSM is not active (lsm=${lsms})` : 'the active LSMs cannot be read');
    }
    // the optional programs go one group at a time until the kernel takes the rest
    const optional = [LSM_PROGRAMS, UNIX_CONNECT_PROGRAMS].filter((g) => !g.every((p) => skip.includes(p)));
    for (;;) {
      try {
        const { cgroupId } = a.attach(cgroupPath, pinDir, skip);
        const has = (p: string) => !skip.includes(p);
        return new Redirect(pinDir, cgroupId, {
          unixByBoundName: has('il_unix_connect'),
          unixByDialedPath: has('il_connect_unix'),
          packetSockets: has('il_socket_create'),
          missing,
        });
      } catch (e) {
        const group = optional.shift();
        if (!group) throw explainBpfError(e, `attaching the redirect to ${cgroupPath}`);
        skip.push(...group);
        const code = (e as { code?: string }).code ?? 'error';
        missing.push(`${group.join(', ')}: ${group === LSM_PROGRAMS ? 'this kernel refuses BPF LSM programs' : 'this kernel has no cgroup unix-connect hook (6.7+)'} (${code})`);
      }
    }
  }

  /** Removes every pinned link and map: agents connect directly again. */
  static detach(pinDir: string): number {
    try {
      return addon().detach(pinDir);
    } catch (e) {
      throw explainBpfError(e, `detaching ${pinDir}`);
    }
  }

  static links(pinDir: string): PinnedLink[] {
    return addon().links(pinDir);
  }

  private map(name: string): string {
    return join(this.pinDir, name);
  }

  /** Makes the target map hold exactly these endpoints. */
  syncTargets(endpoints: InterceptedEndpoint[]): void {
    const path = this.map(MAP_TARGETS);
    const wanted = new Map<string, InterceptedEndpoint>();
    for (const e of endpoints) wanted.set(encodeEndpoint(e.ip, e.port).toString('hex'), e);
    this.sync(path, ENDPOINT_SIZE, wanted, (e) => encodeEndpoint(e.ip, e.port), (e) => encodeRedirect(e.proxyPort, e.protocol));
  }

  /** Makes the port map hold exactly these ports. */
  syncPorts(ports: InterceptedPort[]): void {
    const path = this.map(MAP_PORTS);
    const wanted = new Map<string, InterceptedPort>();
    for (const p of ports) wanted.set(encodePortKey(p.port).toString('hex'), p);
    this.sync(path, PORT_KEY_SIZE, wanted, (p) => encodePortKey(p.port), (p) => encodeRedirect(p.proxyPort, p.protocol));
  }

  /** Lockdown on or off, and exactly these allow-list entries. */
  syncEgress(lockdown: boolean, allow: AllowEntry[]): void {
    const wanted = new Map<string, AllowEntry>();
    for (const e of allow) wanted.set(encodeAllowKey(e).toString('hex'), e);
    // entries first, then the switch: turning lockdown on never refuses what is about to be allowed
    this.sync(this.map(MAP_EGRESS_ALLOW), ALLOW_KEY_SIZE, wanted, encodeAllowKey, () => Buffer.of(1));
    addon().mapUpdate(this.map(MAP_CONFIG), Buffer.alloc(4), encodeConfig(lockdown ? EGRESS_LOCKDOWN : 0));
  }

  /** Unix socket names (as the server bound them) agents may not connect to, beside PostgreSQL's. */
  syncUnixDeny(paths: string[]): void {
    const wanted = new Map<string, string>();
    for (const p of paths) wanted.set(encodeUnixName(p).toString('hex'), p);
    this.sync(this.map(MAP_UNIX_DENY), UNIX_PATH_LEN, wanted, encodeUnixName, () => Buffer.of(1));
  }

  /** Refused attempts reported since the last call (at most max). */
  drainRefused(max = 1024): RefusedAttempt[] {
    const a = addon();
    this.events ??= a.eventsOpen(this.map(MAP_EVENTS));
    return a.eventsDrain(this.events, max).map(decodeEvent);
  }

  /** How many refused attempts the BPF program could not report (ring buffer full). */
  lostEvents(): bigint {
    const v = addon().mapLookup(this.map(MAP_LOST_EVENTS), Buffer.alloc(4), 8);
    return v ? v.readBigUInt64LE(0) : 0n;
  }

  close(): void {
    if (this.events !== undefined) addon().eventsClose(this.events);
    this.events = undefined;
  }

  private sync<T>(path: string, keySize: number, wanted: Map<string, T>, key: (t: T) => Buffer, value: (t: T) => Buffer) {
    const a = addon();
    // add before removing so a reload never leaves a destination unintercepted
    for (const t of wanted.values()) a.mapUpdate(path, key(t), value(t));
    for (const k of a.mapKeys(path, keySize)) if (!wanted.has(k.toString('hex'))) a.mapDelete(path, k);
  }

  /** Who dialed the connection whose client end is peerIp:peerPort (consumed: one lookup per flow). */
  takeFlow(peerIp: string, peerPort: number): Origin | null {
    const value = addon().mapTake(this.map(MAP_FLOWS), encodeEndpoint(peerIp, peerPort, this.flowKey), ORIGIN_SIZE);
    return value ? decodeOrigin(value) : null;
  }
}
