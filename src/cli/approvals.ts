/**
 * `interlock approvals list|show ID|approve ID [--window 30m]|reject ID --reason …`:
 * a human decides held commands. The daemon only listens to a root-only socket and
 * only acts on an OIDC ID token of a human in the request's approver group: the CLI
 * gets one with the device authorization grant (or reads one from --token-file).
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { controlRequest } from '../daemon/control.js';
import { deviceFlowIdToken } from '../identity/oidc.js';
import type { ApprovalRequest } from '../approvals/store.js';
import type { CommandContext } from './main.js';
import { UsageError } from './usage-error.js';
import { oneLine } from './one-line.js';

export async function approvalsCommand(ctx: CommandContext): Promise<number> {
  const [sub, id] = ctx.positionals;
  const config = loadConfig(ctx.configFile);
  if (!config.approvals) throw new UsageError('approvals are not configured: add an approvals section with oidc (issuer, clientId) to the config');
  const oidc = config.approvals.oidc;
  const token = async (): Promise<string> => {
    if (typeof ctx.values['token-file'] === 'string') return readFileSync(ctx.values['token-file'], 'utf8').trim();
    return deviceFlowIdToken({
      issuer: oidc.issuer, clientId: oidc.clientId, scope: oidc.scope,
      show: (uri, code, complete) => process.stderr.write(`To approve as yourself, open ${complete ?? uri} and enter the code ${code}\n`),
    });
  };
  const ask = async (op: string, fields: Record<string, unknown>) =>
    (await controlRequest(config.control.socket, op, 15_000, { ...fields, token: await token() })) as { requests?: ApprovalRequest[]; request?: ApprovalRequest };
  switch (sub) {
    case 'list': {
      const { requests = [] } = await ask('approvals.list', { all: ctx.values.all === true });
      for (const r of requests) process.stdout.write(`${r.id}  ${r.state.padEnd(8)}  ${r.workload} → ${r.target}  approvers: ${r.approvers.join(',') || '-'}  expires ${r.expiresAt}\n    ${oneLine(r.command)}\n`);
      process.stdout.write(`${requests.length} request${requests.length === 1 ? '' : 's'}\n`);
      return 0;
    }
    case 'show': {
      if (!id) throw new UsageError('approvals show needs a request id');
      const { request } = await ask('approvals.show', { id });
      process.stdout.write(`${JSON.stringify(request, null, 2)}\n`);
      return 0;
    }
    case 'approve': {
      if (!id) throw new UsageError('approvals approve needs a request id');
      const { request } = await ask('approvals.approve', { id, window: ctx.values.window });
      process.stdout.write(`${request!.id}: approved by ${request!.decidedBy}${request!.windowUntil ? `; the same command is granted to ${request!.workload} on ${request!.target} until ${request!.windowUntil}` : ''}\n`);
      return 0;
    }
    case 'reject': {
      if (!id) throw new UsageError('approvals reject needs a request id');
      if (typeof ctx.values.reason !== 'string') throw new UsageError('approvals reject needs --reason');
      const { request } = await ask('approvals.reject', { id, reason: ctx.values.reason });
      process.stdout.write(`${request!.id}: rejected by ${request!.decidedBy}: ${request!.reason}\n`);
      return 0;
    }
    default:
      throw new UsageError('approvals needs list, show ID, approve ID or reject ID --reason …');
  }
}
