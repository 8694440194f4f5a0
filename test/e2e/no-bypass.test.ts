/**
 * No way around interlock: every attempt runs from inside the agents' cgroup (as the
 * unprivileged user nobody unless the attempt needs root to mean anything), with egress
 * lockdown on, and the assertions are on what the would-be target saw (nothing) and
 * what the audit trail said.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createTcpServer, type Server } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { ALLOW_ORDINARY, E2EEnv } from '../helpers/e2e-env.js';
import { collect, runAgent, spawnAgent, type AgentResult } from '../helpers/agent.js';
import { CLI, cli, readAudit, waitForAudit, type AuditLine } from '../helpers/daemon.js';
import { Redirect } from '../../src/interception/redirect.js';

const enabled = bpfGate();
const UNIT = 'report-bot.service';

/** What a malicious agent would run: one attempt per invocation, the outcome as JSON. */
const PROBE = `
const net = require('node:net'), dgram = require('node:dgram');
const [kind, a, b] = process.argv.slice(2);
const done = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
const fail = (e) => done({ ok: false, code: e.code || e.message });
setTimeout(() => done({ ok: false, code: 'TIMEOUT' }), 4000);
if (kind === 'tcp') {
  const s = net.connect({ host: a, port: Number(b) }, () => { s.end('hello'); done({ ok: true }); });
  s.on('error', fail);
} else if (kind === 'unix') {
  const s = net.connect(a, () => { s.end(); done({ ok: true }); });
  s.on('error', fail);
} else if (kind === 'udp' || kind === 'udp-connected') {
  const s = dgram.createSocket(a.includes(':') && !a.startsWith('::ffff:') ? 'udp6' : (a.startsWith('::ffff:') ? 'udp6' : 'udp4'));
  s.on('error', fail);
  const sent = (e) => (e ? fail(e) : done({ ok: true }));
  const send = () => (kind === 'udp' ? s.send(Buffer.from('hello'), Number(b), a, sent) : s.send(Buffer.from('hello'), sent));
  if (kind === 'udp') send(); else s.connect(Number(b), a, (e) => (e ? fail(e) : send()));
}
`;

interface ProbeResult { ok: boolean; code?: string }

describe.skipIf(!enabled)('no bypass: egress lockdown, raw and packet sockets, database unix sockets, the slice', () => {
  const env = new E2EEnv({
    name: 'nobypass',
    proxyPort: 15444,
    rules: ALLOW_ORDINARY,
    agents: [
      '  egress: lockdown',
      '  allow: ["tcp 127.0.0.6:7001", "udp 127.0.0.6/32:5353"]',
      '  denyUnixSockets: [/tmp/interlock-nobypass-listed.sock]',
    ].join('\n'),
    workloads: '  - name: other-bot\n    match: { cgroup: /interlock-nobypass.slice/other-bot.service }\n    groups: [analysts]',
    extra: 'limits: { maxSessionsPerWorkload: 3 }',
  });
  let probeFile = '';
  /** would-be targets and what each of them saw */
  const tcpSeen = new Map<string, number>();
  const udpSeen = new Map<string, number>();
  const servers: (Server | UdpSocket)[] = [];

  const listenTcp = (host: string, port: number, hold = false) => new Promise<void>((resolve, reject) => {
    const key = `${host}|${port}`;
    tcpSeen.set(key, 0);
    const s = createTcpServer((c) => {
      tcpSeen.set(key, tcpSeen.get(key)! + 1);
      if (hold) c.on('error', () => undefined).setTimeout(10_000, () => c.destroy());
      else c.destroy();
    });
    s.once('error', reject);
    s.listen({ host, port, ipv6Only: host.includes(':') }, () => resolve());
    servers.push(s);
  });
  const listenUdp = (host: string, port: number) => new Promise<void>((resolve, reject) => {
    const key = `${host}|${port}`;
    udpSeen.set(key, 0);
    const s = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
    s.on('message', () => udpSeen.set(key, udpSeen.get(key)! + 1));
    s.once('error', reject);
    s.bind(port, host, () => resolve());
    servers.push(s);
  });

  const probe = async (kind: string, a: string, b = '', user?: string): Promise<ProbeResult & { pid: number; raw: AgentResult }> => {
    const r = await runAgent(env.cg(UNIT), process.execPath, [probeFile, kind, a, b], { user });
    let parsed: ProbeResult;
    try {
      parsed = JSON.parse(r.stdout) as ProbeResult;
    } catch {
      throw new Error(`probe printed no verdict (code ${r.code}): ${r.stdout} ${r.stderr}`);
    }
    return { ...parsed, pid: r.pid, raw: r };
  };
  const refusal = (pred: (l: AuditLine) => boolean) => waitForAudit(env.auditFile, (l) => l.event === 'egress.refused' && pred(l));
  /** a moment for anything that did get through to arrive */
  const settle = () => new Promise((r) => setTimeout(r, 300));

  beforeAll(async () => {
    await env.start();
    probeFile = join(env.root, 'probe.cjs');
    writeFileSync(probeFile, PROBE, { mode: 0o644 });
    await listenTcp('127.0.0.5', 7000);
    await listenTcp('::1', 7000);
    await listenTcp('127.0.0.6', 7001);
    await listenTcp('127.0.0.1', 7003);
    await listenTcp('127.0.0.5', 7004, true);
    await listenUdp('127.0.0.5', 7002);
    await listenUdp('::1', 7002);
    await listenUdp('127.0.0.6', 5353);
  });

  afterAll(async () => {
    for (const s of servers) (s as { close(): void }).close();
    await env.stop();
  });

  it('reports lockdown and unix-socket denial in `interlock status`', () => {
    const r = cli(['status', '--config', env.configFile]);
    expect(r.stdout).toContain('egress: lockdown');
    // this machine runs no BPF LSM programs (EPERM on load): the dialed-path hook stands in
    expect(r.stdout).toMatch(/unix sockets to databases: refused by the (name the server bound|path dialed)/);
  });

  it('still sends intercepted connections through the proxy', async () => {
    const r = await env.psql("select 'through_lockdown'");
    expect(r.stdout.trim()).toBe('through_lockdown');
    expect(env.pg.log()).toContain("statement: select 'through_lockdown'");
  });

  it('refuses TCP to another address and port, and says who tried', async () => {
    const r = await probe('tcp', '127.0.0.5', '7000');
    expect(r).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    expect(tcpSeen.get('127.0.0.5|7000')).toBe(0);
    const a = await refusal((l) => l.destination === '127.0.0.5:7000');
    expect(a).toMatchObject({ kind: 'connect', protocol: 'tcp', pid: r.pid, uid: 65534, comm: 'node', workload: 'report-bot', cgroup: `${env.agents}/${UNIT}` });
  });

  it('refuses a TCP Fast Open send, which connects without connect()', async () => {
    const tfo = "import socket\ns = socket.socket()\ntry:\n  s.sendto(b'hello', socket.MSG_FASTOPEN, ('127.0.0.5', 7000))\n  print('sent')\nexcept OSError as e:\n  print('refused', e.errno)";
    const r = await runAgent(env.cg(UNIT), '/usr/bin/python3', ['-c', tfo]);
    expect(r.stdout.trim()).toBe('refused 1'); // EPERM
    await settle();
    expect(tcpSeen.get('127.0.0.5|7000')).toBe(0);
    await refusal((l) => l.destination === '127.0.0.5:7000' && l.pid === r.pid && l.comm === 'python3');
  });

  it('refuses native IPv6 and v4-mapped IPv6 alike', async () => {
    const v6 = await probe('tcp', '::1', '7000');
    expect(v6).toMatchObject({ ok: false, code: 'EPERM' });
    const mapped = await probe('tcp', '::ffff:127.0.0.5', '7000');
    expect(mapped).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    expect(tcpSeen.get('::1|7000')).toBe(0);
    expect(tcpSeen.get('127.0.0.5|7000')).toBe(0);
    await refusal((l) => l.destination === '[::1]:7000' && l.pid === v6.pid);
    // the mapped dial is judged (and reported) as the IPv4 address it is
    await refusal((l) => l.destination === '127.0.0.5:7000' && l.pid === mapped.pid);
  });

  it('refuses the proxy port dialed directly, and loopback services', async () => {
    const proxy = await probe('tcp', '127.0.0.1', '15444');
    expect(proxy).toMatchObject({ ok: false, code: 'EPERM' });
    const local = await probe('tcp', '127.0.0.1', '7003');
    expect(local).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    expect(tcpSeen.get('127.0.0.1|7003')).toBe(0);
    // nothing reached the proxy as a session either
    expect(readAudit(env.auditFile).some((l) => l.event === 'connect.refused' && l.pid === proxy.pid)).toBe(false);
  });

  it('refuses UDP datagrams (DNS, QUIC …): unconnected, connected and IPv6', async () => {
    const plain = await probe('udp', '127.0.0.5', '7002');
    expect(plain).toMatchObject({ ok: false, code: 'EPERM' });
    const connected = await probe('udp-connected', '127.0.0.5', '7002');
    expect(connected).toMatchObject({ ok: false, code: 'EPERM' });
    const v6 = await probe('udp', '::1', '7002');
    expect(v6).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    expect(udpSeen.get('127.0.0.5|7002')).toBe(0);
    expect(udpSeen.get('::1|7002')).toBe(0);
    await refusal((l) => l.kind === 'sendmsg' && l.protocol === 'udp' && l.destination === '127.0.0.5:7002' && l.pid === plain.pid);
    await refusal((l) => l.kind === 'connect' && l.protocol === 'udp' && l.pid === connected.pid);
    await refusal((l) => l.kind === 'sendmsg' && l.destination === '[::1]:7002' && l.pid === v6.pid);
  });

  it('lets the allow-list out, per protocol and port', async () => {
    const tcp = await probe('tcp', '127.0.0.6', '7001');
    expect(tcp.ok).toBe(true);
    const udp = await probe('udp', '127.0.0.6', '5353');
    expect(udp.ok).toBe(true);
    // listed for udp only: tcp to the same port stays refused
    const wrongProtocol = await probe('tcp', '127.0.0.6', '5353');
    expect(wrongProtocol).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    expect(tcpSeen.get('127.0.0.6|7001')).toBe(1);
    expect(udpSeen.get('127.0.0.6|5353')).toBe(1);
  });

  it('refuses raw IP sockets even to root in the slice (outside it, root gets one)', async () => {
    const perl = ['-MSocket', '-e', 'socket(my $s, PF_INET, SOCK_RAW, 1) or die "refused: $!\\n"; print "raw socket\\n"'];
    const inside = await runAgent(env.cg(UNIT), 'perl', perl, { user: 'root' });
    expect(inside.stdout).not.toContain('raw socket');
    expect(inside.stderr).toContain('refused: Operation not permitted');
    const a = await refusal((l) => l.kind === 'socket' && l.pid === inside.pid);
    expect(a).toMatchObject({ family: 'inet', type: 'raw', protocol: 'icmp', uid: 0, comm: 'perl' });
    // the attempt itself is sound: the same command outside the agents' cgroup works
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync('perl', perl, { encoding: 'utf8' })).toContain('raw socket');
  });

  it('refuses packet sockets (BPF LSM, where it runs) and ICMP datagram sockets (lockdown)', async () => {
    const packetProgram = ['-MSocket', '-e', 'socket(my $s, 17, SOCK_RAW, 0) or die "refused: $!\\n"; print "packet socket\\n"'];
    // unprivileged, the kernel refuses it anyway (no CAP_NET_RAW)
    const asAgent = await runAgent(env.cg(UNIT), 'perl', packetProgram);
    expect(asAgent.stderr).toMatch(/refused: (Operation not permitted|Permission denied)/);
    if (cli(['status', '--config', env.configFile]).stdout.includes('packet sockets: refused')) {
      const asRoot = await runAgent(env.cg(UNIT), 'perl', packetProgram, { user: 'root' });
      expect(asRoot.stdout).not.toContain('packet socket');
      await refusal((l) => l.kind === 'socket' && l.family === 'packet' && l.pid === asRoot.pid);
    } else {
      console.warn('packet sockets: this kernel does not load BPF LSM programs; only the capability check applies (documented in docs/security.md)');
    }
    // ICMP datagram sockets are open to every group only when ping_group_range says so: open it for the attempt
    const range = '/proc/sys/net/ipv4/ping_group_range';
    const saved = readFileSync(range, 'utf8');
    writeFileSync(range, '0 2147483647');
    try {
      const ping = await runAgent(env.cg(UNIT), 'perl', ['-MSocket', '-e', 'socket(my $s, PF_INET, SOCK_DGRAM, 1) or die "refused: $!\\n"; print "ping socket\\n"']);
      expect(ping.stdout).not.toContain('ping socket');
      expect(ping.stderr).toContain('refused: Operation not permitted');
      await refusal((l) => l.kind === 'socket' && l.type === 'dgram' && l.protocol === 'icmp' && l.pid === ping.pid);
    } finally {
      writeFileSync(range, saved);
    }
  });

  it("refuses PostgreSQL's unix socket, by its path or a relative one (and a symlink, with BPF LSM)", async () => {
    const sockDir = join(env.root, 'pg');
    const socket = join(sockDir, '.s.PGSQL.5432');
    const localConnections = () => (env.pg.log().match(/connection received: host=\[local\]/g) ?? []).length;
    const before = localConnections();
    const psql = await runAgent(env.cg(UNIT), 'psql', ['-h', sockDir, '-p', '5432', '-U', 'app', '-d', 'orders', '-w', '-c', 'select 1']);
    expect(psql.code).not.toBe(0);
    expect(psql.stderr).toMatch(/Operation not permitted/);
    const direct = await probe('unix', socket);
    expect(direct).toMatchObject({ ok: false, code: 'EPERM' });
    const relative = await runAgent(env.cg(UNIT), 'sh', ['-c', `cd ${sockDir} && exec "$0" "$@"`, process.execPath, probeFile, 'unix', './.s.PGSQL.5432']);
    expect(JSON.parse(relative.stdout)).toMatchObject({ ok: false, code: 'EPERM' });
    await settle();
    // the server never saw a local connection from any of them
    expect(localConnections()).toBe(before);
    const a = await refusal((l) => l.kind === 'unix' && l.pid === direct.pid);
    expect(a.path).toBe(socket);

    const link = join(env.root, 'innocent.sock');
    symlinkSync(socket, link);
    const status = cli(['status', '--config', env.configFile]).stdout;
    if (status.includes('refused by the name the server bound')) {
      expect(await probe('unix', link)).toMatchObject({ ok: false, code: 'EPERM' });
      await settle();
      expect(localConnections()).toBe(before);
    } else {
      // without BPF LSM a symlink under another name is not caught, and status says so
      expect(status).toContain('symlinks to a database socket are not caught here: start agents with InaccessiblePaths=');
      console.warn('unix sockets: this kernel does not load BPF LSM programs; symlinks are left to InaccessiblePaths= (docs/security.md)');
    }
  });

  it('refuses listed unix sockets and leaves others alone', async () => {
    let accepted = 0;
    const listed = '/tmp/interlock-nobypass-listed.sock';
    const other = join(env.root, 'other.sock');
    const open = (path: string) => new Promise<Server>((resolve) => {
      const s = createTcpServer(() => accepted++);
      s.listen(path, () => { chmodSync(path, 0o777); resolve(s); });
    });
    const a = await open(listed), b = await open(other);
    try {
      expect(await probe('unix', listed)).toMatchObject({ ok: false, code: 'EPERM' });
      await settle();
      expect(accepted).toBe(0);
      expect((await probe('unix', other)).ok).toBe(true);
      await settle();
      expect(accepted).toBe(1);
    } finally {
      a.close();
      b.close();
    }
  });

  it('cannot leave the slice, detach the programs, or reach the control socket', async () => {
    const mount = env.cg(UNIT).slice(0, env.cg(UNIT).indexOf(env.agents));
    const escape = await runAgent(env.cg(UNIT), 'sh', ['-c', `echo $$ > ${mount}/cgroup.procs; cat /proc/self/cgroup`]);
    expect(escape.stderr).toMatch(/Permission denied/);
    expect(escape.stdout).toContain(`${env.agents}/${UNIT}`);
    const linksBefore = Redirect.links(env.pinDir).length;
    const detach = await runAgent(env.cg(UNIT), process.execPath, [CLI, 'detach', '--config', env.configFile]);
    expect(detach.code).not.toBe(0);
    expect(Redirect.links(env.pinDir).length).toBe(linksBefore);
    const control = await probe('unix', join(env.root, 'control.sock'));
    expect(control).toMatchObject({ ok: false, code: 'EACCES' });
    // and the redirect still holds after all that
    const r = await env.psql("select 'still_redirected'");
    expect(r.stdout.trim()).toBe('still_redirected');
  });

  it('`interlock status` and the audit trail flag a process that joined the slice with a socket opened outside it', { timeout: 40_000 }, async () => {
    // the documented limit: the hooks judge sockets when they are made, so one made
    // before joining keeps going where it went; status is how an operator finds it
    mkdirSync(env.cg(UNIT), { recursive: true });
    const procs = join(env.cg(UNIT), 'cgroup.procs');
    const late = spawn(process.execPath, ['-e', `const s=require('net').connect(7004,'127.0.0.5',()=>{require('fs').writeFileSync(${JSON.stringify(procs)},String(process.pid));console.log('joined')});setTimeout(()=>process.exit(0),20000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => late.stdout!.on('data', (d: Buffer) => d.toString().includes('joined') && resolve()));
      expect(readFileSync(`/proc/${late.pid}/cgroup`, 'utf8')).toContain(`${env.agents}/${UNIT}`);
      const status = cli(['status', '--config', env.configFile]).stdout;
      // and the daemon says it in the trail on its own, once
      const said = await waitForAudit(env.auditFile, (l) => l.event === 'egress.bypass' && l.pid === late.pid, 12_000);
      expect(said).toMatchObject({ comm: 'node', cgroup: `${env.agents}/${UNIT}`, workload: 'report-bot', socketCgroup: '/', protocol: 'tcp', peer: '127.0.0.5:7004' });
      expect(status, status).toMatch(new RegExp(`bypass: pid ${late.pid} \\(node\\) in ${env.agents}/${UNIT} holds a tcp socket \\S+ -> 127\\.0\\.0\\.5:7004 created in /`));
    } finally {
      late.kill();
    }
    // with it gone, nothing is flagged
    await new Promise((r) => setTimeout(r, 200));
    expect(cli(['status', '--config', env.configFile]).stdout).toContain('sockets older than the slice: none');
  });

  it('cannot take every upstream slot: a workload past its session quota is refused, others are not', async () => {
    const hold = () => collect(spawnAgent(env.cg(UNIT), 'psql', ['-h', '127.0.0.3', '-U', 'x', '-d', 'orders', '-w', '-qAtX', '-c', "select 'held', pg_sleep(3)"]), 20_000);
    const held = [hold(), hold(), hold()];
    for (let i = 0; i < 100 && (env.pg.log().match(/select 'held', pg_sleep/g) ?? []).length < 3; i++) await settle();
    const fourth = await env.psql("select 'one_too_many'");
    expect(fourth.stdout).not.toContain('one_too_many');
    expect(fourth.stderr).toContain('interlock: workload report-bot has 3 sessions open, the most limits.maxSessionsPerWorkload allows');
    expect(env.pg.log()).not.toContain('one_too_many');
    await waitForAudit(env.auditFile, (l) => l.event === 'limit.exceeded' && l.limit === 'limits.maxSessionsPerWorkload' && l.workload === 'report-bot');
    // another workload is served meanwhile
    const other = await env.psql("select 'other_served'", { unit: 'other-bot.service' });
    expect(other.stdout.trim()).toBe('other_served');
    for (const h of held) expect((await h).stdout).toContain('held');
    // and once they end, the workload is served again
    expect((await env.psql("select 'served_again'")).stdout.trim()).toBe('served_again');
  });

  it('cannot read the recordings, the vaulted secrets, the recording key or the CA key', async () => {
    mkdirSync(env.recordingsDir, { recursive: true });
    const files = [join(env.root, 'secrets', 'orders-db'), env.recordingKey, join(env.root, 'etc', 'node-ca.key'), join(env.root, 'etc', 'ssh_host_ed25519_key')];
    for (const f of files) expect(readFileSync(f).length).toBeGreaterThan(0); // they exist: the refusals below mean something
    const r = await runAgent(env.cg(UNIT), 'sh', ['-c', [...files.map((f) => `cat ${f}`), `ls ${env.recordingsDir}`].join('; ')]);
    expect(r.stdout).toBe('');
    expect(r.stderr.match(/Permission denied/g)?.length).toBe(files.length + 1);
  });
});
