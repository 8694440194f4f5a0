import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig, parseConfig, parseHostPort } from '../../src/config/load.js';

// line numbers below refer to this document
const BASE = `agents:
  cgroup: /agents.slice
workloads:
  - name: report-bot
    match: { cgroup: /agents.slice/report-bot.service }
    groups: [analysts]
targets:
  - name: orders-db
    protocol: postgres
    address: 127.0.0.3:5432
    upstream:
      user: app
      password: { file: /etc/interlock/secrets/orders-db }
      database: orders
policies:
  - name: analysts-read
    subjects: { groups: [analysts] }
    targets: [orders-db]
    rules:
      - { action: allow, match: { statements: [select, insert, update, delete, create, drop, set, transaction, other] } }
audit:
  file: /var/log/interlock/audit.jsonl
`;

/** BASE with one exact substring replaced (which must exist, so tests can't silently test BASE) */
function edit(from: string, to: string, text = BASE): string {
  expect(text).toContain(from);
  return text.replace(from, to);
}

function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, 'interlock.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected parseConfig to throw');
}

function expectError(text: string, line: number, field: string, problem: RegExp): ConfigError {
  const e = errorOf(text);
  const fieldPart = field ? `${field.replace(/[.[\]]/g, '\\$&')}: ` : '';
  expect(e.message).toMatch(new RegExp(`^interlock\\.yaml:${line}:\\d+: ${fieldPart}`));
  expect(e.message).toMatch(problem);
  expect(e.file).toBe('interlock.yaml');
  expect(e.line).toBe(line);
  expect(e.field).toBe(field);
  return e;
}

describe('parseConfig: happy path', () => {
  it('loads the example and applies defaults', () => {
    const c = parseConfig(BASE, 'interlock.yaml');
    expect(c.source).toBe(resolve('interlock.yaml'));
    expect(c.agents).toEqual({ cgroup: '/agents.slice', egress: 'open', allow: [], denyUnixSockets: [] });
    expect(c.proxy).toEqual({ ports: { postgres: 15432, ssh: 15422, kubernetes: 15443 }, loginTimeoutMs: 30_000 });
    expect(c.intercept).toEqual({ ports: { postgres: [5432], ssh: [22], kubernetes: [6443] } });
    expect(c.bpf).toEqual({ pinDir: '/sys/fs/bpf/interlock' });
    expect(c.control).toEqual({ socket: '/run/interlock/control.sock' });
    expect(c.workloads).toEqual([
      { name: 'report-bot', match: { cgroup: '/agents.slice/report-bot.service' }, groups: ['analysts'] },
    ]);
    expect(c.targets).toEqual([
      {
        name: 'orders-db',
        protocol: 'postgres',
        address: { host: '127.0.0.3', port: 5432 },
        upstream: {
          host: '127.0.0.3',
          port: 5432,
          user: 'app',
          password: { file: '/etc/interlock/secrets/orders-db' },
          database: 'orders',
        },
      },
    ]);
    expect(c.policies).toHaveLength(1);
    const p = c.policies[0]!;
    expect(p.name).toBe('analysts-read');
    expect(p.subjects).toEqual({ groups: ['analysts'], workloads: [] });
    expect(p.targets).toEqual(['orders-db']);
    expect(p.masking).toEqual([]);
    expect(p.rules).toEqual([
      {
        action: 'allow',
        match: { statements: ['select', 'insert', 'update', 'delete', 'create', 'drop', 'set', 'transaction', 'other'] },
      },
    ]);
    expect(c.audit).toEqual({ file: '/var/log/interlock/audit.jsonl' });
  });

  it('accepts explicit settings, IPv6, upstream address, env secrets, approve rules and masking', () => {
    const c = parseConfig(
      `agents: { cgroup: /agents.slice }
proxy: { ports: { postgres: 16000 }, loginTimeout: 2m }
intercept: { ports: { postgres: [5432, 6432] } }
bpf: { pinDir: /sys/fs/bpf/x }
control: { socket: /tmp/c.sock }
workloads:
  - { name: by-uid, match: { uid: 1001 } }
targets:
  - name: v6
    protocol: postgres
    address: "[::1]:5432"
    upstream: { address: db.internal:6543, user: app, password: { env: PGPASSWORD } }
  - name: v4
    protocol: postgres
    address: 127.0.0.4:5432
    upstream: { host: 10.0.0.5, user: app }
policies:
  - name: p
    subjects: { workloads: [by-uid] }
    targets: [v6, v4]
    rules:
      - action: approve
        match: { relations: [public.orders], pattern: "^drop\\\\s" }
        approvers: [alice]
        timeout: 5m
    masking:
      - { detectors: [email, iban], strategy: partial }
      - { columns: [ssn], strategy: hash }
`,
      '/etc/interlock.yaml',
    );
    expect(c.proxy).toEqual({ ports: { postgres: 16000, ssh: 15422, kubernetes: 15443 }, loginTimeoutMs: 120_000 });
    expect(c.intercept.ports.postgres).toEqual([5432, 6432]);
    expect(c.bpf.pinDir).toBe('/sys/fs/bpf/x');
    expect(c.control.socket).toBe('/tmp/c.sock');
    expect(c.workloads[0]).toEqual({ name: 'by-uid', match: { uid: 1001 }, groups: [] });
    expect(c.targets[0]!.address).toEqual({ host: '::1', port: 5432 });
    expect(c.targets[0]!.upstream).toMatchObject({ host: 'db.internal', port: 6543, password: { env: 'PGPASSWORD' } });
    expect(c.targets[1]!.upstream).toMatchObject({ host: '10.0.0.5', port: 5432 });
    expect(c.policies[0]!.rules[0]).toEqual({
      action: 'approve',
      match: { relations: ['public.orders'], pattern: '^drop\\s' },
      approvers: ['alice'],
      timeout: '5m',
    });
    expect(c.policies[0]!.masking).toHaveLength(2);
    expect(c.audit.file).toBeUndefined();
  });

  it('treats empty sections as absent', () => {
    const c = parseConfig('agents:\n  cgroup: /a\nworkloads:\ntargets:\npolicies:\naudit:\n', 'x.yaml');
    expect(c.workloads).toEqual([]);
    expect(c.targets).toEqual([]);
    expect(c.policies).toEqual([]);
    expect(c.audit).toEqual({ file: undefined });
  });
});

describe('parseConfig: errors name file, line and field', () => {
  it('typo in a top-level key', () => {
    expectError(edit('audit:', 'audti:'), 21, 'audti', /unknown field \(expected one of: agents, proxy/);
  });

  it('two targets on the same address, one spelled v4-mapped', () => {
    expect(() => parseConfig(BASE.replace('targets:\n', 'targets:\n  - { name: twin, protocol: postgres, address: "[::ffff:127.0.0.3]:5432", upstream: { user: u } }\n'), 'c.yaml'))
      .toThrow(/targets\[1\]\.address: same address as targets\[0\] \("twin"\)/);
  });

  it('typo in a nested key', () => {
    expectError(edit('    address: 127', '    adress: 127'), 10, 'targets[0].adress', /unknown field/);
    expectError(edit('database: orders', 'databse: orders'), 14, 'targets[0].upstream.databse', /unknown field/);
  });

  it('unknown key inside rules[].match', () => {
    expectError(edit('match: { statements', 'match: { tables: [x], statements'), 20, 'policies[0].rules[0].match.tables',
      /unknown field \(expected one of: statements, relations, access, functions, pattern, commands, channels, paths, verbs, apiGroups, resources, namespaces, names\)/);
  });

  it('wrong type says what was expected and found', () => {
    expectError(edit('address: 127.0.0.3:5432', 'address: { host: 127.0.0.3 }'), 10, 'targets[0].address',
      /expected a string like 127\.0\.0\.3:5432, found a mapping$/);
    expectError(edit('groups: [analysts]', 'groups: analysts'), 6, 'workloads[0].groups',
      /expected a sequence, found the string "analysts"/);
    expectError(edit('targets: [orders-db]', 'targets: { name: orders-db }'), 18, 'policies[0].targets',
      /expected a sequence, found a mapping/);
    expectError(edit('  - name: report-bot\n    match: { cgroup: /agents.slice/report-bot.service }\n    groups: [analysts]', '  name: report-bot'), 3, 'workloads',
      /expected a sequence, found a mapping/);
    expectError('- a\n- b\n', 1, '', /expected a mapping at the top level, found a sequence/);
  });

  it('inline password is refused', () => {
    expectError(edit('password: { file: /etc/interlock/secrets/orders-db }', 'password: hunter2'), 13,
      'targets[0].upstream.password', /expected a mapping like \{ file: \/path \} or \{ env: NAME \}/);
    expectError(edit('{ file: /etc/interlock/secrets/orders-db }', '{ file: /x, env: X }'), 13,
      'targets[0].upstream.password', /exactly one of file or env/);
    expectError(edit('{ file: /etc/interlock/secrets/orders-db }', '{ file: secrets/x }'), 13,
      'targets[0].upstream.password.file', /not an absolute path/);
  });

  it('missing required field is reported at its parent mapping', () => {
    expectError(edit('    protocol: postgres\n', ''), 8, 'targets[0].protocol', /missing required field/);
    expectError(edit('      user: app\n', ''), 11, 'targets[0].upstream.user', /missing required field/);
    expectError(edit('agents:\n  cgroup: /agents.slice\n', ''), 1, 'agents.cgroup', /missing required field/);
    expectError(edit('  cgroup: /agents.slice', '  cgroup:'), 2, 'agents.cgroup', /is empty/);
  });

  it('bad values', () => {
    expectError(edit('cgroup: /agents.slice\n', 'cgroup: agents.slice\n'), 2, 'agents.cgroup', /must start with \//);
    expectError(edit('cgroup: /agents.slice\n', 'cgroup: /agents.slice/../x\n'), 2, 'agents.cgroup', /'\.\.'/);
    expectError(edit('protocol: postgres', 'protocol: mysql'), 9, 'targets[0].protocol',
      /unknown protocol "mysql" \(valid: postgres, ssh, kubernetes\)/);
    expectError(edit('- name: report-bot', '- name: unknown'), 4, 'workloads[0].name', /reserved/);
    expectError(edit('- name: report-bot', '- name: "report bot"'), 4, 'workloads[0].name', /not a valid name/);
    expectError(edit('match: { cgroup: /agents.slice/report-bot.service }', 'match: {}'), 5, 'workloads[0].match',
      /at least one of cgroup or uid/);
    expectError(edit('match: { cgroup: /agents.slice/report-bot.service }', 'match: { uid: -1 }'), 5,
      'workloads[0].match.uid', /expected an integer from 0/);
    expectError('agents: { cgroup: /a }\nproxy:\n  ports: { postgres: 70000 }\n', 3, 'proxy.ports.postgres',
      /expected an integer from 1 to 65535, found the number 70000/);
    expectError(edit('action: allow', 'action: permit'), 20, 'policies[0].rules[0].action', /unknown action "permit"/);
    expectError(edit('action: allow', 'action: allow, timeout: 30s'), 20, 'policies[0].rules[0].timeout',
      /only applies to action: approve/);
    expectError(edit('action: allow', 'action: approve, timeout: 30'), 20, 'policies[0].rules[0].timeout',
      /expected a duration like 30s, 5m or 1h, found the number 30/);
  });

  it('bad address', () => {
    expectError(edit('address: 127.0.0.3:5432', 'address: 127.0.0.3'), 10, 'targets[0].address', /no port/);
    expectError(edit('address: 127.0.0.3:5432', 'address: 127.0.0.3:99999'), 10, 'targets[0].address',
      /port "99999" is not a number from 1 to 65535/);
    expectError(edit('address: 127.0.0.3:5432', 'address: "::ffff:127.0.0.3"'), 10, 'targets[0].address',
      /needs brackets and a port/);
    expectError(edit('address: 127.0.0.3:5432', 'address: 127.0.0.300:5432'), 10, 'targets[0].address',
      /not a valid IPv4 address/);
  });

  it('hostname in a target address is explained', () => {
    const e = expectError(edit('address: 127.0.0.3:5432', 'address: db.internal:5432'), 10, 'targets[0].address',
      /"db\.internal" is a hostname/);
    expect(e.message).toMatch(/agents dial an IP address/);
    expect(e.column).toBe(14);
  });

  it('duplicate names and addresses', () => {
    const twoTargets = edit('policies:', `  - name: orders-db
    protocol: postgres
    address: 127.0.0.9:5432
    upstream: { user: app }
policies:`);
    expectError(twoTargets, 15, 'targets[1].name', /duplicate name "orders-db" \(also used by targets\[0\]\)/);
    const sameAddress = edit('name: orders-db\n    protocol: postgres\n    address: 127.0.0.9',
      'name: other-db\n    protocol: postgres\n    address: 127.0.0.3', twoTargets);
    expectError(sameAddress, 17, 'targets[1].address', /same address as targets\[0\] \("orders-db"\)/);
  });

  it('duplicate workload names', () => {
    const text = edit('targets:', '  - { name: report-bot, match: { uid: 7 } }\ntargets:');
    expectError(text, 7, 'workloads[1].name', /duplicate name "report-bot"/);
  });

  it('unknown target or workload in a policy', () => {
    expectError(edit('targets: [orders-db]', 'targets: [orders-db, billing-db]'), 18, 'policies[0].targets[1]',
      /unknown target "billing-db" \(defined: orders-db\)/);
    expectError(edit('subjects: { groups: [analysts] }', 'subjects: { workloads: [report-bott] }'), 17,
      'policies[0].subjects.workloads[0]', /unknown workload "report-bott" \(defined: report-bot\)/);
    expectError(edit('subjects: { groups: [analysts] }', 'subjects: { groups: [] }'), 17, 'policies[0].subjects',
      /at least one group or workload/);
    expectError(edit('targets: [orders-db]', 'targets: []'), 18, 'policies[0].targets', /at least one target/);
  });

  it('unknown statement kind', () => {
    expectError(edit('statements: [select,', 'statements: [selct,'), 20, 'policies[0].rules[0].match.statements[0]',
      /unknown statement kind "selct" \(valid: select, insert, update, delete, merge, copy_to/);
  });

  it('bad regex', () => {
    expectError(edit('match: { statements', 'match: { pattern: "(unclosed", statements'), 20,
      'policies[0].rules[0].match.pattern', /Invalid regular expression.*Unterminated group/);
  });

  it('masking rules', () => {
    expectError(edit('    rules:', '    masking:\n      - { detectors: [emial], strategy: redact }\n    rules:'), 20,
      'policies[0].masking[0].detectors[0]', /unknown detector "emial" \(valid: email,/);
    expectError(edit('    rules:', '    masking:\n      - { strategy: redact }\n    rules:'), 20,
      'policies[0].masking[0]', /at least one of columns, detectors or allowFunctions/);
    expectError(edit('    rules:', '    masking:\n      - { columns: [ssn] }\n    rules:'), 20,
      'policies[0].masking[0].strategy', /missing required field/);
    expectError(edit('    rules:', '    masking:\n      - { allowFunctions: [lookup] }\n    rules:'), 20,
      'policies[0].masking[0].allowFunctions[0]', /expected "schema.function"/);
  });

  it('YAML syntax error', () => {
    const e = errorOf(edit('    groups: [analysts]', '    groups: [analysts\n    oops: {'));
    // the unclosed [ is noticed where the next line starts
    expect(e.message).toMatch(/^interlock\.yaml:7:5: invalid YAML: Flow sequence .* end with a \]/);
    expect(e.line).toBe(7);
    const dup = errorOf(edit('      database: orders', '      database: orders\n      user: again'));
    expect(dup.message).toMatch(/^interlock\.yaml:15:7: invalid YAML: Map keys must be unique/);
    expect(dup.field).toBe('');
  });
});

describe('loadConfig', () => {
  it('loads a file, names it in errors, and reports missing files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'interlock-config-'));
    try {
      const good = join(dir, 'good.yaml');
      writeFileSync(good, BASE);
      expect(loadConfig(good).source).toBe(good);

      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, edit('audit:', 'audti:'));
      expect(() => loadConfig(bad)).toThrow(`${bad}:21:1: audti: unknown field`);

      const missing = join(dir, 'missing.yaml');
      let err: unknown;
      try {
        loadConfig(missing);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toBe(`${missing}: cannot read config file: no such file`);
      expect((err as ConfigError).line).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseHostPort', () => {
  it('parses IPv4 and bracketed IPv6', () => {
    expect(parseHostPort('127.0.0.3:5432')).toEqual({ host: '127.0.0.3', port: 5432 });
    expect(parseHostPort('[::1]:5432')).toEqual({ host: '::1', port: 5432 });
    expect(parseHostPort('db.internal:5432', 'x', { hostnames: true })).toEqual({ host: 'db.internal', port: 5432 });
  });

  it('rejects unbracketed IPv6, hostnames where not allowed, and bad ports', () => {
    expect(() => parseHostPort('::ffff:127.0.0.3')).toThrow(/brackets/);
    expect(() => parseHostPort('[::1]')).toThrow(/\[::1\]:5432/);
    expect(() => parseHostPort('[db]:5432', 'x', { hostnames: true })).toThrow(/not an IPv6 address/);
    expect(() => parseHostPort('db.internal:5432', 'target.address')).toThrow(/^target\.address: "db\.internal" is a hostname/);
    expect(() => parseHostPort('127.0.0.3:0')).toThrow(/port "0"/);
    expect(() => parseHostPort('127.0.0.3:54x')).toThrow(/port "54x"/);
    expect(() => parseHostPort(':5432')).toThrow(/missing host/);
    expect(() => parseHostPort('bad_host!:5432', 'x', { hostnames: true })).toThrow(/not a valid hostname/);
  });
});

describe('parseConfig: SSH targets, SSH rules, recording', () => {
  const SSH = `agents: { cgroup: /agents.slice }
targets:
  - name: build-host
    protocol: ssh
    address: 127.0.0.4:22
    upstream:
      user: deploy
      privateKey: { file: /etc/interlock/secrets/build-host.key }
      knownHosts: { file: /etc/interlock/build-host.known_hosts }
policies:
  - name: ci-ssh
    subjects: { groups: [ci] }
    targets: [build-host]
    rules:
      - { action: allow, match: { commands: ["echo *", "uname *"] } }
      - { action: allow, match: { channels: [sftp], paths: ["/srv/**"], access: read } }
recording:
  flush: { ms: 50, bytes: 64KiB }
  maxSessionBytes: 2GiB
  retention: { days: 7, totalBytes: 10 GB }
  onBackpressure: end
`;
  it('reads the issue\'s SSH target and rules, with defaults', () => {
    const c = parseConfig(SSH, 'interlock.yaml');
    const t = c.targets[0]!;
    expect(t.protocol).toBe('ssh');
    if (t.protocol !== 'ssh') return;
    expect(t.upstream).toMatchObject({ host: '127.0.0.4', port: 22, user: 'deploy', agentUsers: ['deploy'], env: ['LANG', 'LC_*'], knownHosts: { file: '/etc/interlock/build-host.known_hosts' } });
    expect(c.policies[0]!.rules[1]!.match).toMatchObject({ channels: ['sftp'], paths: ['/srv/**'], access: 'read' });
    expect(c.ssh.hostKey).toBe('/etc/interlock/ssh_host_ed25519_key');
    expect(c.recording).toMatchObject({ enabled: true, flushMs: 50, flushBytes: 65536, maxSessionBytes: 2 ** 31, retention: { days: 7, totalBytes: 1e10 }, onBackpressure: 'end' });
  });
  it('refuses an SSH target without a credential or a host key pin', () => {
    expectError(SSH.replace('      privateKey: { file: /etc/interlock/secrets/build-host.key }\n', ''), 6, 'targets[0].upstream', /needs privateKey or password/);
    expectError(SSH.replace('      knownHosts: { file: /etc/interlock/build-host.known_hosts }\n', ''), 6, 'targets[0].upstream.knownHosts', /missing required field/);
  });
  it('refuses a rule that mixes SSH and SQL filters, which would match everything in one engine', () => {
    expectError(SSH.replace('match: { commands: ["echo *", "uname *"] }', 'match: { statements: [select], commands: ["echo *"] }'), 15,
      'policies[0].rules[0].match.commands', /cannot share a rule with the PostgreSQL filter "statements"/);
  });
  it('refuses access without relations or paths, an unknown channel and a bad size', () => {
    expectError(SSH.replace('match: { commands: ["echo *", "uname *"] }', 'match: { commands: ["echo *"], access: read }'), 15, 'policies[0].rules[0].match.access', /only applies with relations or paths/);
    expectError(SSH.replace('channels: [sftp]', 'channels: [telnet]'), 16, 'policies[0].rules[1].match.channels[0]', /unknown channel "telnet"/);
    expectError(SSH.replace('maxSessionBytes: 2GiB', 'maxSessionBytes: lots'), 19, 'recording.maxSessionBytes', /a size like 65536, 64KiB or 1GiB/);
  });
});
