/**
 * `interlock kubeconfig --target NAME`: a kubeconfig for agents that holds no
 * credential at all. It points at the address agents already dial and trusts the node
 * CA, whose certificates interlock presents for that address; interlock adds the real
 * credential upstream.
 */
import { loadConfig } from '../config/load.js';
import { NodeCa } from '../tls/node-ca.js';
import { UsageError } from './usage-error.js';
import type { CommandContext } from './main.js';

export const PLACEHOLDER_TOKEN = 'interlock-injects-the-credential';

export async function kubeconfigCommand(ctx: CommandContext): Promise<number> {
  const config = loadConfig(ctx.configFile);
  const kube = config.targets.filter((t) => t.protocol === 'kubernetes');
  const name = ctx.values.target as string | undefined;
  const target = name ? kube.find((t) => t.name === name) : kube.length === 1 ? kube[0] : undefined;
  if (!target || target.protocol !== 'kubernetes') {
    throw new UsageError(`kubeconfig needs --target NAME, one of: ${kube.map((t) => t.name).join(', ') || '(no kubernetes targets in the config)'}`);
  }
  const ca = NodeCa.load(config.tls.caCert, config.tls.caKey, { create: true });
  const host = target.address.host.includes(':') ? `[${target.address.host}]` : target.address.host;
  const server = `https://${host}:${target.address.port}`;
  process.stdout.write(`# interlock: ${target.name}. No credential here: interlock presents the real one.
apiVersion: v1
kind: Config
clusters:
  - name: ${target.name}
    cluster:
      server: ${server}
      certificate-authority-data: ${Buffer.from(ca.certPem).toString('base64')}
users:
  - name: agent
    # not a credential: kubectl prompts for one when a user has none, and interlock
    # drops whatever the agent sends and presents the real credential upstream
    user: { token: ${PLACEHOLDER_TOKEN} }
contexts:
  - name: ${target.name}
    context: { cluster: ${target.name}, user: agent }
current-context: ${target.name}
`);
  return 0;
}
