import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/load.js';
import { decodeEvent, encodeAllowKey, EVENT_SIZE } from '../../src/interception/layout.js';
import { RefusalReporter, refusalFields } from '../../src/daemon/refusals.js';

const withAgents = (lines: string) => `agents:\n  cgroup: /agents.slice\n${lines}\n`;

function configError(text: string): ConfigError {
  try {
    parseConfig(text, 'interlock.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('agents.egress and agents.allow', () => {
  it('reads lockdown with CIDR:port entries, per protocol, IPv4 and IPv6', () => {
    const c = parseConfig(withAgents('  egress: lockdown\n  allow: ["udp 10.0.0.2:53", "10.1.0.0/16:*", "tcp [2001:db8::/32]:443"]'), 'interlock.yaml');
    expect(c.agents.egress).toBe('lockdown');
    expect(c.agents.allow).toEqual([
      { ip: '10.0.0.2', prefix: 32, port: 53, protocol: 'udp' },
      { ip: '10.1.0.0', prefix: 16, port: 0, protocol: 'any' },
      { ip: '2001:db8::', prefix: 32, port: 443, protocol: 'tcp' },
    ]);
  });

  it('names the file, line and field of a bad entry', () => {
    const e = configError(withAgents('  egress: lockdown\n  allow:\n    - 10.0.0.2:53\n    - 10.0.0.300/8:53'));
    expect(e.message).toMatch(/^interlock\.yaml:6:\d+: agents\.allow\[1\]: "10\.0\.0\.300" is not an IPv4 address/);
    expect(configError(withAgents('  egress: lockdown\n  allow: ["10.0.0.0/33:53"]')).message).toMatch(/agents\.allow\[0\]: prefix \/33 is longer than 32 bits/);
    expect(configError(withAgents('  egress: lockdown\n  allow: ["10.0.0.1:0"]')).message).toMatch(/port 0 is out of range/);
    expect(configError(withAgents('  egress: lockdown\n  allow: ["icmp 10.0.0.1:1"]')).message).toMatch(/is not \[tcp\|udp\] CIDR:port/);
    expect(configError(withAgents('  egress: closed')).message).toMatch(/agents\.egress: unknown egress mode "closed" \(valid: open, lockdown\)/);
  });

  it('refuses an allow-list without lockdown, where it would mean nothing', () => {
    expect(configError(withAgents('  allow: ["10.0.0.2:53"]')).message).toMatch(/agents\.allow: an allow-list only means something with egress: lockdown/);
  });

  it('keeps unix socket names within what sun_path holds', () => {
    expect(configError(withAgents(`  denyUnixSockets: [/${'x'.repeat(107)}]`)).message).toMatch(/longer than a unix socket name can be/);
    expect(configError(withAgents('  denyUnixSockets: [run/docker.sock]')).message).toMatch(/not an absolute path/);
  });
});

describe('the BPF layouts', () => {
  it('encodes an allow entry as protocol, big-endian port, then the v4-mapped address, with the prefix counting all three', () => {
    const k = encodeAllowKey({ ip: '10.1.0.0', prefix: 96 + 16, port: 443, protocol: 6 });
    expect(k.length).toBe(24);
    expect(k.readUInt32LE(0)).toBe(24 + 112);
    expect([...k.subarray(4, 7)]).toEqual([6, 0x01, 0xbb]);
    expect(k.subarray(7, 23).toString('hex')).toBe('00000000000000000000ffff0a010000');
  });

  it('decodes a refused connect and a refused unix connect', () => {
    const b = Buffer.alloc(EVENT_SIZE);
    b.writeBigUInt64LE(77n, 0);
    b.writeUInt32LE(1234, 8);
    b.writeUInt32LE(65534, 12);
    b[16] = 1; // connect
    b[17] = 6;
    b.writeUInt16LE(7000, 18);
    b.writeUInt16LE(2, 20);
    b.writeUInt16LE(1, 22);
    b.write('00000000000000000000ffff7f000005', 24, 'hex');
    b.write('node', 40);
    expect(decodeEvent(b)).toMatchObject({ kind: 'connect', cgroupId: 77n, pid: 1234, uid: 65534, protocol: 6, dstIp: '127.0.0.5', dstPort: 7000, comm: 'node' });
    b[16] = 4; // unix
    b.write('/run/postgresql/.s.PGSQL.5432', 56);
    expect(decodeEvent(b)).toMatchObject({ kind: 'unix', path: '/run/postgresql/.s.PGSQL.5432' });
    expect(decodeEvent(b).dstIp).toBeUndefined();
  });
});

describe('refusals in the audit trail', () => {
  const attempt = (pid: number, port: number) => ({
    kind: 'connect' as const, pid, uid: 1000, cgroupId: 9n, comm: 'curl', family: 2, sockType: 1, protocol: 6, dstIp: '203.0.113.9', dstPort: port,
  });

  it('names the attempt in words', () => {
    expect(refusalFields(attempt(5, 443))).toEqual({ kind: 'connect', pid: 5, uid: 1000, comm: 'curl', destination: '203.0.113.9:443', protocol: 'tcp' });
    expect(refusalFields({ kind: 'socket', pid: 5, uid: 0, cgroupId: 9n, comm: 'perl', family: 17, sockType: 3, protocol: 0 }))
      .toEqual({ kind: 'socket', pid: 5, uid: 0, comm: 'perl', family: 'packet', type: 'raw', protocol: 0 });
  });

  it('folds repeats of one attempt into a count, keeps distinct ones apart, and reports lost events once', () => {
    const batches = [[attempt(5, 443), attempt(5, 443), attempt(5, 443), attempt(6, 443)], []];
    let lost = 0n;
    const events: [string, Record<string, unknown>][] = [];
    const reporter = new RefusalReporter(
      { drainRefused: () => batches.shift() ?? [], lostEvents: () => lost },
      () => ({ workload: 'ci', cgroup: '/agents.slice/ci.service' }),
      (event, fields) => events.push([event, fields]),
    );
    expect(reporter.drain()).toBe(4);
    expect(events).toEqual([
      ['egress.refused', expect.objectContaining({ pid: 5, count: 3, workload: 'ci' })],
      ['egress.refused', expect.objectContaining({ pid: 6, workload: 'ci' })],
    ]);
    expect(events[1][1]).not.toHaveProperty('count');
    lost = 7n;
    reporter.drain();
    reporter.drain();
    expect(events.slice(2)).toEqual([['egress.refusals-lost', { count: 7, why: 'the BPF ring buffer was full' }]]);
  });
});

describe('sockets older than the slice', () => {
  const SS = [
    'tcp ESTAB 0 0 127.0.0.1:40000 127.0.0.5:7000 users:(("node",pid=41,fd=20)) cgroup:/',
    'tcp ESTAB 0 0 127.0.0.1:40002 127.0.0.1:15432 users:(("psql",pid=42,fd=3)) cgroup:/agents.slice/ci.service',
    'udp UNCONN 0 0 0.0.0.0:5353 0.0.0.0:* users:(("avahi",pid=7,fd=12),("node",pid=41,fd=21)) cgroup:/system.slice',
    'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* cgroup:/',
    'tcp TIME-WAIT 0 0 127.0.0.1:1 127.0.0.1:2',
  ].join('\n');

  it('reads owners and the socket cgroup from ss --cgroup', async () => {
    const { parseSs } = await import('../../src/interception/stale-sockets.js');
    const s = parseSs(SS);
    expect(s).toHaveLength(3);
    expect(s[2]).toEqual({ netid: 'udp', local: '0.0.0.0:5353', peer: '0.0.0.0:*', socketCgroup: '/system.slice', owners: [{ comm: 'avahi', pid: 7 }, { comm: 'node', pid: 41 }] });
  });

  it('flags processes in the slice holding sockets made outside it, and nothing else', async () => {
    const { parseSs, staleSockets } = await import('../../src/interception/stale-sockets.js');
    const where: Record<number, string> = { 41: '/agents.slice/ci.service', 42: '/agents.slice/ci.service', 7: '/system.slice/avahi.service' };
    const found = staleSockets(parseSs(SS), '/agents.slice', (pid) => where[pid]);
    expect(found.map((f) => [f.pid, f.peer, f.socketCgroup])).toEqual([[41, '127.0.0.5:7000', '/'], [41, '0.0.0.0:*', '/system.slice']]);
  });
});

describe('watching for sockets older than the slice', () => {
  it('reports each stale socket once while it lasts, and again if it comes back', async () => {
    const { StaleSocketWatch } = await import('../../src/interception/stale-sockets.js');
    const a = { pid: 1, comm: 'x', processCgroup: '/agents.slice/a', socketCgroup: '/', netid: 'tcp', local: '1.1.1.1:1', peer: '2.2.2.2:2' };
    const b = { ...a, pid: 2 };
    const w = new StaleSocketWatch();
    expect(w.fresh([a])).toEqual([a]);
    expect(w.fresh([a, b])).toEqual([b]);
    expect(w.fresh([b])).toEqual([]);
    expect(w.fresh([a, b])).toEqual([a]);
  });
});
