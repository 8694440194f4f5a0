/** `interlock status`: the pinned redirect (from bpffs) and the daemon's view (from its socket). */
import { Redirect } from '../interception/redirect.js';
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
  process.stdout.write(`${out.join('\n')}\n`);
  return code;
}
