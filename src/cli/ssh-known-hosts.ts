/**
 * `interlock ssh-known-hosts`: the known_hosts lines agents need so their OpenSSH
 * clients trust the node's host key for every intercepted SSH target (install them in
 * the agents' /etc/ssh/ssh_known_hosts). Creates the host key if the daemon has not yet.
 */
import { loadConfig } from '../config/load.js';
import { hostEntryName } from '../protocols/ssh/known-hosts.js';
import { loadHostKey } from '../protocols/ssh/host-key.js';

export async function sshKnownHostsCommand(configFile: string): Promise<number> {
  const config = loadConfig(configFile);
  const key = loadHostKey(config.ssh.hostKey, { create: true });
  const lines = config.targets
    .filter((t) => t.protocol === 'ssh')
    .map((t) => {
      const addr = hostEntryName(t.address.host, t.address.port);
      const name = hostEntryName(t.name, t.address.port);
      return `${name},${addr} ${key.publicKey} interlock:${t.name}`;
    });
  if (lines.length === 0) process.stderr.write('interlock: no SSH targets in the config\n');
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
  return 0;
}
