/** The native addon (native/addon.cc, built by binding.gyp), typed. */
import { createRequire } from 'node:module';

export interface PinnedLink {
  name: string;
  linkId: number;
  progId: number;
  cgroupId: bigint;
}

export interface Addon {
  ensureBpffs(dir: string): boolean;
  activeLsms(): string;
  /** skip: optional programs (by name) to leave out on a kernel that cannot load them */
  attach(cgroupPath: string, pinDir: string, skip: string[]): { cgroupId: bigint; created: number; updated: number };
  detach(pinDir: string): number;
  links(pinDir: string): PinnedLink[];
  mapUpdate(mapPath: string, key: Buffer, value: Buffer): void;
  mapDelete(mapPath: string, key: Buffer): boolean;
  mapTake(mapPath: string, key: Buffer, valueSize: number): Buffer | null;
  mapKeys(mapPath: string, keySize: number): Buffer[];
  mapLookup(mapPath: string, key: Buffer, valueSize: number): Buffer | null;
  eventsOpen(mapPath: string): number;
  eventsDrain(reader: number, max: number): Buffer[];
  eventsClose(reader: number): void;
  /** lsmPrograms: 'yes', or why the kernel refused a trivial BPF LSM program */
  probe(): { cgroupSockAddr: boolean; sockOps: boolean; lruHash: boolean; lsmPrograms: string };
  setParentDeathSignal(signo: number): void;
}

let loaded: Addon | undefined;

export function addon(): Addon {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    try {
      loaded = require('../../build/Release/interlock.node') as Addon;
    } catch (e) {
      throw new Error(`the native addon is not built (${(e as Error).message.split('\n')[0]}): run \`npm ci\` (needs clang, libbpf-dev, bpftool)`);
    }
  }
  return loaded;
}
