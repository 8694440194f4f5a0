/** `interlock status`: the pinned redirect (from bpffs) and the daemon's view (from its socket). */
import { Redirect } from '../interception/redirect.js';
import { findStaleSockets } from '../interception/stale-sockets.js';
import { controlRequest, type DaemonStatus } from '../daemon/control.js';
import { DEFAULT_CONTROL_SOCKET, DEFAULT_PIN_DIR, optionalConfig } from './config-or-default.js';

export async function statusCommand(configFile: string, explicit: boolean): Promise<number> {
  const config = optionalConfig(configFile, explicit);
  const pinDir = config?.bpf.pinDir ?? DEFAULT_PIN_DIR;
  const links = Redirect.links(pinDir);
  const out: string[] = [];
  out.push(links.length
    ? `redirect: attached (${links.length} programs, cgroup id ${links[0].cgroupId}) pinned under ${pinDir}`
    : `redirect: not attached (nothing pinned under ${pinDir})`);
  let code = links.length ? 0 : 3;
  try {
    const res = (await controlRequest(config?.control.socket ?? DEFAULT_CONTROL_SOCKET, 'status')) as { status: DaemonStatus };
    const s = res.status;
    out.push(`daemon: running, pid ${s.pid}, since ${s.since}, agents' cgroup ${s.cgroup}`);
    out.push(`egress: ${s.egress}${s.egress === 'open' ? ' (agents reach any address but intercepted ones directly)' : ''}`);
    out.push(`unix sockets to databases: ${s.unixSockets}; packet sockets: ${s.packetSockets}`);
    for (const m of s.missing) out.push(`  not attached: ${m}`);
    if (!s.unixSockets.includes('bound')) out.push('  symlinks to a database socket are not caught here: start agents with InaccessiblePaths= (deploy/systemd/example-agent.service)');
    for (const t of s.targets) out.push(`target: ${t.name} ${t.protocol} ${t.address}`);
    const mib = (n: number) => (n / 1048576).toFixed(1);
    if (s.memory) out.push(`memory: heap ${mib(s.memory.heapUsed)} MiB used of ${mib(s.memory.heapTotal)} MiB, rss ${mib(s.memory.rss)} MiB`);
    out.push(`sessions: ${s.sessions.length}`);
    for (const x of s.sessions) {
      out.push(`  ${x.id} ${x.protocol} workload=${x.workload ?? '-'} target=${x.target ?? '-'} pid=${x.pid ?? '-'} comm=${x.comm ?? '-'} since=${x.since} queries=${x.queries}`);
    }
  } catch (e) {
    out.push(`daemon: not running (${(e as Error).message})${links.length ? ': agents are refused until it is back (fail closed)' : ''}`);
    code = code || 3;
  }
  if (config) {
    const stale = await findStaleSockets(config.agents.cgroup);
    if (stale === undefined) out.push('sockets older than the slice: cannot tell (`ss --cgroup` is missing or too old)');
    else if (stale.length === 0) out.push('sockets older than the slice: none');
    for (const x of stale ?? []) {
      out.push(`bypass: pid ${x.pid} (${x.comm}) in ${x.processCgroup} holds a ${x.netid} socket ${x.local} -> ${x.peer} created in ${x.socketCgroup}: it is not redirected; start agents inside the slice`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return code;
}
