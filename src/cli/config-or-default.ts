/** Commands that work without a daemon read the config if they can, else use defaults. */
import { existsSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import type { InterlockConfig } from '../config/types.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/interlock';
export const DEFAULT_CONTROL_SOCKET = '/run/interlock/control.sock';

/** The config, or undefined when no file was named and the default one is absent. */
export function optionalConfig(file: string, explicit: boolean): InterlockConfig | undefined {
  if (!explicit && !existsSync(file)) return undefined;
  return loadConfig(file);
}
