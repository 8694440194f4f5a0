/**
 * The eBPF redirect as the daemon sees it: attach it to the agents' cgroup, tell it
 * which destinations to intercept, and look up who dialed an accepted connection.
 */
import { join } from 'node:path';
import { addon, type PinnedLink } from './addon.js';
import {
  ENDPOINT_SIZE, MAP_FLOWS, MAP_PORTS, MAP_TARGETS, ORIGIN_SIZE, PORT_KEY_SIZE,
  decodeOrigin, encodeEndpoint, encodePortKey, encodeRedirect, type Origin,
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

export class Redirect {
  private readonly flowKey = Buffer.alloc(ENDPOINT_SIZE);

  private constructor(readonly pinDir: string, readonly cgroupId: bigint) {}

  /** Attaches (or re-uses the pinned) programs on cgroupPath; pins under pinDir. */
  static attach(cgroupPath: string, pinDir: string): Redirect {
    const a = addon();
    const bpffs = pinDir.split('/').slice(0, 4).join('/') || pinDir;
    try {
      a.ensureBpffs(bpffs);
      const { cgroupId } = a.attach(cgroupPath, pinDir);
      return new Redirect(pinDir, cgroupId);
    } catch (e) {
      throw explainBpfError(e, `attaching the redirect to ${cgroupPath}`);
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
