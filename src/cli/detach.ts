/** `interlock detach`: the only way the redirect goes away. */
import { Redirect } from '../interception/redirect.js';
import { DEFAULT_PIN_DIR, optionalConfig } from './config-or-default.js';

export async function detachCommand(configFile: string, explicit: boolean): Promise<number> {
  const pinDir = optionalConfig(configFile, explicit)?.bpf.pinDir ?? DEFAULT_PIN_DIR;
  const removed = Redirect.detach(pinDir);
  process.stdout.write(removed ? `detached: removed ${removed} pins under ${pinDir}; agents now connect directly\n` : `nothing attached under ${pinDir}\n`);
  return 0;
}
