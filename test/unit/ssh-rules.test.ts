import { describe, expect, it } from 'vitest';
import { normalizePath, SshRuleSet } from '../../src/policy/ssh-rules.js';
import { sshRules } from '../helpers/policies.js';

/** An SshRuleSet from the rules YAML of one policy (lines indented by 6), named `name`. */
const ruleSet = (rules: string, name = 'ci-ssh') => sshRules(rules, name);

/** The example policy. */
const EXAMPLE = `
      - { action: allow, match: { commands: ["echo *", "uname *", "systemctl status *"] } }
      - { action: deny, match: { commands: ["rm *"] }, message: "no deletes" }
      - { action: allow, match: { channels: [sftp] } }`;

describe('SshRuleSet.decideExec on the example policy', () => {
  const rs = ruleSet(EXAMPLE);

  it('denies a list with a denied part, naming that part and the rule', () => {
    const v = rs.decideExec('true; rm -rf /tmp/x');
    expect(v.decision).toMatchObject({ action: 'deny', rule: 'ci-ssh#2', message: '"rm -rf /tmp/x" is denied by rule ci-ssh#2: no deletes' });
    expect(v.refused?.part).toBe('rm -rf /tmp/x');
    expect(v.parts.map((p) => p.text)).toEqual(['true', 'rm -rf /tmp/x']);
  });

  it('allows a list whose every part is allowed', () => {
    const v = rs.decideExec('echo hi && uname -a');
    expect(v.decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#1' });
    expect(v.refused).toBeUndefined();
    expect(rs.decideExec('systemctl status app | echo done').decision.action).toBe('allow');
  });

  it('reads "uname *" as uname with or without arguments, and nothing longer', () => {
    expect(rs.decideExec('uname').decision.action).toBe('allow');
    expect(rs.decideExec('echo').decision.action).toBe('allow');
    expect(rs.decideExec('unamex').decision.action).toBe('deny');
    expect(rs.decideExec('systemctl status').decision.action).toBe('allow');
    expect(rs.decideExec('systemctl restart app').decision).toMatchObject({ action: 'deny', message: '"systemctl restart app" is not allowed: no rule allows it' });
  });

  it('judges the commands inside a substitution: echo $(rm -rf /) is a delete', () => {
    const v = rs.decideExec('echo $(rm -rf /)');
    expect(v.decision).toMatchObject({ action: 'deny', rule: 'ci-ssh#2' });
    expect(v.refused?.part).toBe('rm -rf /');
  });

  it('lets "echo *" cover run-time words, while what computes them is judged on its own', () => {
    const v = rs.decideExec('echo $(cat /etc/shadow)');
    expect(v.decision.action).toBe('deny'); // cat is not allowed
    expect(v.decision.message).toMatch(/"cat \/etc\/shadow" is not allowed/);
    expect(v.parts.map((p) => p.text)).toContain('cat /etc/shadow');
    expect(rs.decideExec('echo $HOME').decision.action).toBe('allow');
    expect(rs.decideExec('echo *').decision.action).toBe('allow'); // globbing: file names, handed to echo
  });

  it('denies a redirection no rule allows', () => {
    const v = rs.decideExec('echo hi > /etc/passwd');
    expect(v.decision).toMatchObject({ action: 'deny', message: '"> /etc/passwd" is not allowed: no rule allows writing "/etc/passwd"' });
    expect(v.refused?.part).toBe('> /etc/passwd');
    expect(rs.decideExec('echo hi > /dev/null 2>&1').decision.action).toBe('allow');
  });

  it('catches rm however it is reached', () => {
    for (const command of ['/bin/rm -rf /', "'r'\"m\" -rf /", 'sudo rm -rf /', 'env X=1 rm x', 'ls | xargs rm', 'find . -exec rm {} \\;', "sh -c 'echo hi; rm -rf /tmp/x'", 'command rm x', 'timeout 5 rm x']) {
      expect(rs.decideExec(command).decision, command).toMatchObject({ action: 'deny', rule: 'ci-ssh#2' });
    }
  });

  it('sees through sh -c to allowed commands', () => {
    expect(rs.decideExec(`bash -c "echo hi && uname -r"`).decision.action).toBe('allow');
  });

  it('needs a rule for an assignment, which can change what a command runs', () => {
    const v = rs.decideExec('GIT_PAGER=x uname -a');
    expect(v.decision.action).toBe('deny');
    expect(v.refused?.part).toBe('= GIT_PAGER=x');
  });

  it('denies what cannot be analysed, and an empty command', () => {
    expect(rs.decideExec('echo "unclosed').decision).toMatchObject({ action: 'deny', message: expect.stringMatching(/^the command could not be analysed: 1:6: reached EOF without closing quote/) });
    expect(rs.decideExec(`echo ${'x'.repeat(70 * 1024)}`).decision.message).toMatch(/longer than 65536 bytes/);
    expect(rs.decideExec('  ').decision).toMatchObject({ action: 'deny', message: 'empty command: there is nothing to run' });
  });

  it('remembers verdicts by command text', () => {
    const first = rs.decideExec('echo cached && uname');
    expect(rs.decideExec('echo cached && uname')).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(rs.decideExec('echo cached; rm x')).not.toBe(first);
    expect(rs.decideExec('echo cached; rm x').decision.action).toBe('deny');
    expect(rs.decideExec('echo cached && uname').decision.action).toBe('allow');
  });
});

describe('SshRuleSet.decideExec: rules', () => {
  it('matches a dynamic part with an exact glob, or a rule with a pattern', () => {
    const rs = ruleSet(`
      - { action: allow, match: { commands: ["echo $HOME", "date"] } }
      - { action: allow, match: { commands: ["printf *"], pattern: "^printf [a-z%]+ \\\\$USER$" } }`);
    expect(rs.decideExec('echo $HOME').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#1' });
    expect(rs.decideExec('echo "$HOME"').decision.action).toBe('allow');
    expect(rs.decideExec('echo $PATH').decision.action).toBe('deny');
    expect(rs.decideExec('printf %s $USER').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#2' });
    expect(rs.decideExec('printf %s $HOME').decision.action).toBe('deny');
  });

  it('asks for approval when a part needs it, unless another is denied', () => {
    const rs = ruleSet(`
      - { action: allow, match: { commands: ["systemctl status *"] } }
      - { action: approve, match: { commands: ["systemctl restart *"] }, approvers: [ops], timeout: 5m, message: "restarts are reviewed" }
      - { action: deny, match: { commands: ["rm *"] } }`, 'ops');
    const v = rs.decideExec('systemctl status app && systemctl restart app');
    expect(v.decision).toMatchObject({
      action: 'approve',
      rule: 'ops#2',
      approvers: ['ops'],
      message: '"systemctl restart app" needs approval (rule ops#2, approvers: ops): restarts are reviewed',
    });
    expect(v.refused?.part).toBe('systemctl restart app');
    expect(rs.decideExec('systemctl restart $SVC').decision.action).toBe('approve'); // an approver reads it first
    expect(rs.decideExec('systemctl restart app; rm x').decision).toMatchObject({ action: 'deny', rule: 'ops#3', message: '"rm x" is denied by rule ops#3' });
  });

  it('lets sudo through only where a rule allows the sudo part too', () => {
    const plain = ruleSet(EXAMPLE);
    expect(plain.decideExec('sudo systemctl status app').decision).toMatchObject({ action: 'deny', message: '"sudo systemctl status app" is not allowed: no rule allows it' });
    const withSudo = ruleSet(`
      - { action: allow, match: { commands: ["sudo systemctl status *", "systemctl status *"] } }`);
    expect(withSudo.decideExec('sudo systemctl status app').decision.action).toBe('allow');
    expect(withSudo.decideExec('sudo systemctl stop app').decision.action).toBe('deny');
  });

  it('lets named assignments through', () => {
    const rs = ruleSet(`
      - { action: allow, match: { commands: ["= LANG=*", "uname *"] } }`);
    expect(rs.decideExec('LANG=C uname -a').decision.action).toBe('allow');
    expect(rs.decideExec('LD_PRELOAD=/tmp/x.so uname -a').decision.action).toBe('deny');
  });

  it('takes channels: [exec] without commands as exec of anything, and only for exec', () => {
    const rs = ruleSet(`
      - { action: deny, match: { commands: ["reboot *"] } }
      - { action: allow, match: { channels: [exec] } }`);
    expect(rs.decideExec('rm -rf /tmp/x; echo $(id)').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#2' });
    expect(rs.decideExec('sudo reboot').decision).toMatchObject({ action: 'deny', rule: 'ci-ssh#1' });
    expect(rs.decideChannel('shell').action).toBe('deny');
  });

  it('applies commands only to exec when the rule names other channels', () => {
    const rs = ruleSet(`
      - { action: allow, match: { channels: [shell], commands: ["ls *"] } }
      - { action: allow, match: { channels: [exec], commands: ["id"] } }`);
    expect(rs.decideExec('ls').decision.action).toBe('deny');
    expect(rs.decideExec('id').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#2' });
  });

  it('numbers rules by their place in the policy, SQL rules included, and ignores those', () => {
    const rs = ruleSet(`
      - { action: allow, match: { statements: [select] } }
      - { action: allow, match: { commands: ["ls *"] } }`, 'mixed');
    expect(rs.size).toBe(1);
    expect(rs.decideExec('ls -la').decision).toMatchObject({ action: 'allow', rule: 'mixed#2' });
    expect(rs.decideExec('select 1').decision.action).toBe('deny');
  });

  it('lets path rules judge redirections, but not a channels: [sftp] rule', () => {
    const rs = ruleSet(`
      - { action: allow, match: { commands: ["echo *", "sort *"] } }
      - { action: allow, match: { paths: ["/srv/out/**"], access: write } }
      - { action: allow, match: { channels: [sftp] } }`);
    expect(rs.decideExec('echo hi > /srv/out/a.txt').decision.action).toBe('allow');
    expect(rs.decideExec('echo hi >> /srv/out/../../etc/passwd').decision.action).toBe('deny');
    expect(rs.decideExec('sort < /srv/out/a.txt').decision.action).toBe('deny'); // write only
    expect(rs.decideExec('echo hi > /tmp/a').decision.action).toBe('deny');
  });
});

describe('SshRuleSet.decideChannel', () => {
  it('denies shell and forwarding by default, each with its own message', () => {
    const rs = ruleSet(EXAMPLE);
    expect(rs.decideChannel('shell')).toEqual({ action: 'deny', message: 'no rule allows an interactive shell on this target (channel shell)' });
    expect(rs.decideChannel('port-forward')).toEqual({ action: 'deny', message: 'port forwarding is not allowed (no rule allows channel port-forward)' });
    expect(rs.decideChannel('remote-forward').message).toBe('remote port forwarding is not allowed (no rule allows channel remote-forward)');
    expect(rs.decideChannel('agent-forward').message).toBe('agent forwarding is not allowed (no rule allows channel agent-forward)');
    expect(rs.decideChannel('x11').message).toBe('X11 forwarding is not allowed (no rule allows channel x11)');
    expect(rs.decideChannel('sftp')).toMatchObject({ action: 'allow', rule: 'ci-ssh#3' });
  });

  it('allows what a rule lists, and denies what a rule denies', () => {
    const rs = ruleSet(`
      - { action: deny, match: { channels: [x11] }, message: "no X here" }
      - { action: allow, match: { channels: [port-forward, agent-forward] } }`, 'fwd');
    expect(rs.decideChannel('port-forward')).toMatchObject({ action: 'allow', rule: 'fwd#2' });
    expect(rs.decideChannel('agent-forward')).toMatchObject({ action: 'allow', rule: 'fwd#2' });
    expect(rs.decideChannel('x11')).toMatchObject({ action: 'deny', rule: 'fwd#1', message: 'X11 forwarding is denied by rule fwd#1: no X here' });
    expect(rs.decideChannel('shell').action).toBe('deny');
    expect(rs.decideChannel('sftp').action).toBe('deny');
  });

  it('opens sftp for an allow rule with paths, whose operations are then decided one by one', () => {
    const rs = ruleSet(`
      - { action: deny, match: { paths: ["/etc/**"] } }
      - { action: allow, match: { paths: ["/srv/**"], access: read } }`);
    expect(rs.decideChannel('sftp')).toMatchObject({ action: 'allow', rule: 'ci-ssh#2' });
    expect(rs.decideChannel('shell').action).toBe('deny');
  });
});

describe('SshRuleSet.decidePath', () => {
  const rs = ruleSet(`
      - { action: deny, match: { paths: ["/srv/app/**/*.key"] }, message: "no keys" }
      - { action: allow, match: { paths: ["/srv/app/**"], access: read } }
      - { action: allow, match: { paths: ["/srv/app/uploads/*"], access: write } }
      - { action: approve, match: { paths: ["data/**"] }, approvers: [dba] }`, 'files');

  it('applies path rules in order, with their access', () => {
    expect(rs.decidePath('read', '/srv/app/config.yml')).toMatchObject({ action: 'allow', rule: 'files#2' });
    expect(rs.decidePath('read', '/srv/app/tls/server.key')).toMatchObject({ action: 'deny', rule: 'files#1', message: 'reading "/srv/app/tls/server.key" is denied by rule files#1: no keys' });
    expect(rs.decidePath('write', '/srv/app/config.yml')).toEqual({ action: 'deny', message: 'no rule allows writing "/srv/app/config.yml"' });
    expect(rs.decidePath('write', '/srv/app/uploads/x.txt')).toMatchObject({ action: 'allow', rule: 'files#3' });
    expect(rs.decidePath('write', '/srv/app/uploads/sub/x.txt').action).toBe('deny'); // * stays in one segment
    expect(rs.decidePath('write', 'data/export.csv')).toMatchObject({ action: 'approve', rule: 'files#4', approvers: ['dba'] });
  });

  it('lets "dir/**" cover dir itself', () => {
    expect(rs.decidePath('read', '/srv/app').action).toBe('allow');
    expect(rs.decidePath('read', '/srv/application').action).toBe('deny');
  });

  it('normalises before matching', () => {
    expect(rs.decidePath('read', '//srv//app/./x/../config.yml')).toMatchObject({ action: 'allow', rule: 'files#2' });
    expect(rs.decidePath('read', '/srv/app/../../etc/shadow')).toEqual({ action: 'deny', message: 'no rule allows reading "/etc/shadow"' });
    expect(rs.decidePath('read', '/srv/app/tls/../tls/server.key').rule).toBe('files#1');
    expect(rs.decidePath('write', 'data/../data/x').action).toBe('approve');
    expect(rs.decidePath('read', 'srv/app/config.yml').action).toBe('deny'); // relative stays relative
    expect(rs.decidePath('read', '../etc/passwd').message).toMatch(/may not climb above the login directory/);
  });

  it('reads ** as a whole segment as any number of directories, none included', () => {
    expect(rs.decidePath('read', '/srv/app/server.key').rule).toBe('files#1');
    expect(rs.decidePath('read', '/srv/app/a/b/c/server.key').rule).toBe('files#1');
    expect(rs.decidePath('read', '/srv/app/server.keys').rule).toBe('files#2');
  });

  it('matches names holding newlines', () => {
    expect(rs.decidePath('read', '/srv/app/x\ny.key').rule).toBe('files#1');
    expect(rs.decidePath('read', '/srv/app/x/\n/y.key').rule).toBe('files#1');
  });

  it('lets channels: [sftp] without paths decide every path', () => {
    const sftp = ruleSet(`
      - { action: deny, match: { paths: ["/etc/**"] } }
      - { action: allow, match: { channels: [sftp] } }`);
    expect(sftp.decidePath('write', '/anything/at/all')).toMatchObject({ action: 'allow', rule: 'ci-ssh#2' });
    expect(sftp.decidePath('read', '/etc/shadow')).toMatchObject({ action: 'deny', rule: 'ci-ssh#1' });
  });
});

describe('normalizePath', () => {
  it.each<[string, string]>([
    ['/a//b/./c/', '/a/b/c'],
    ['/a/b/../../..', '/'],
    ['a/./b/../c', 'a/c'],
    ['', '.'],
    ['.', '.'],
    ['a/..', '.'],
  ])('%s → %s', (input, output) => {
    expect(normalizePath(input)).toEqual({ path: output });
  });

  it('refuses NUL bytes and relative paths above their start', () => {
    expect(normalizePath('/a\0b')).toHaveProperty('error');
    expect(normalizePath('a/../../b')).toHaveProperty('error');
  });
});

describe('SshRuleSet: legacy scp as a file transfer', () => {
  it('decides scp -t / -f with the sftp channel rule of the example policy', () => {
    const rs = ruleSet(EXAMPLE);
    expect(rs.decideExec('scp -t /dst/dir').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#3' });
    expect(rs.decideExec('scp -f /src/file').decision).toMatchObject({ action: 'allow', rule: 'ci-ssh#3' });
    expect(rs.decideExec('scp -v -r -p -d -t -- /dst/dir').decision.action).toBe('allow');
  });

  it('denies scp where no rule allows file transfers', () => {
    const rs = ruleSet(`
      - { action: allow, match: { commands: ["echo *"] } }`);
    expect(rs.decideExec('scp -f /etc/hosts').decision).toEqual({ action: 'deny', message: 'scp is not allowed here: no rule allows reading "/etc/hosts"' });
  });

  it('reads and writes by path rules, covering the names an upload receives', () => {
    const rs = ruleSet(`
      - { action: deny, match: { paths: ["/srv/app/**/*.key"], access: read }, message: "no keys" }
      - { action: allow, match: { paths: ["/srv/app/**"], access: read } }
      - { action: allow, match: { paths: ["/srv/app/uploads/*"], access: write } }
      - { action: allow, match: { paths: ["/srv/drop/**"], access: write } }`, 'files');
    expect(rs.decideExec('scp -f /srv/app/config.yml').decision).toMatchObject({ action: 'allow', rule: 'files#2' });
    expect(rs.decideExec('scp -f /srv/app/tls/server.key').decision).toMatchObject({ action: 'deny', rule: 'files#1', message: 'scp reading "/srv/app/tls/server.key" is denied by rule files#1: no keys' });
    // a recursive download reads everything under the directory, keys included
    expect(rs.decideExec('scp -r -f /srv/app/tls').decision).toMatchObject({ action: 'deny', rule: 'files#1' });
    expect(rs.decideExec('scp -r -f /srv/app/docs').decision).toMatchObject({ action: 'deny', rule: 'files#1' });
    expect(rs.decideExec('scp -f /etc/shadow').decision.action).toBe('deny');

    // into a directory: any single name there
    expect(rs.decideExec('scp -t /srv/app/uploads/').decision).toMatchObject({ action: 'allow', rule: 'files#3' });
    expect(rs.decideExec('scp -d -t /srv/app/uploads').decision).toMatchObject({ action: 'allow', rule: 'files#3' });
    // DEST may be a file or a directory: both must be allowed
    expect(rs.decideExec('scp -t /srv/app/uploads').decision).toMatchObject({ action: 'deny', message: 'scp is not allowed here: no rule allows writing "/srv/app/uploads"' });
    // recursive: any depth, which "/*" does not cover
    expect(rs.decideExec('scp -r -t /srv/app/uploads/').decision).toMatchObject({ action: 'deny', message: 'scp is not allowed here: no rule allows writing anything under "/srv/app/uploads"' });
    expect(rs.decideExec('scp -r -t /srv/drop/in').decision).toMatchObject({ action: 'allow', rule: 'files#4' });
    expect(rs.decideExec('scp -t /srv/drop/file.txt').decision.action).toBe('allow');
    expect(rs.decideExec('scp -t /etc/').decision.action).toBe('deny');
  });

  it('denies an upload into a directory where a deny rule could match a received name', () => {
    const rs = ruleSet(`
      - { action: deny, match: { paths: ["/srv/drop/**/*.sh"] }, message: "no scripts" }
      - { action: allow, match: { paths: ["/srv/drop/**"], access: write } }`);
    expect(rs.decideExec('scp -t /srv/drop/in/').decision).toMatchObject({ action: 'deny', rule: 'ci-ssh#1', message: 'scp writing files under "/srv/drop/in" is denied by rule ci-ssh#1: no scripts' });
    expect(rs.decidePath('write', '/srv/drop/in/a.txt').action).toBe('allow');
    expect(rs.decideExec('scp -t /srv/elsewhere/').decision.action).toBe('deny');
  });

  it('lets exec-of-anything and command rules decide scp too', () => {
    expect(ruleSet(`
      - { action: allow, match: { channels: [exec] } }`).decideExec('scp -t /anywhere/').decision.action).toBe('allow');
    const noScp = ruleSet(`
      - { action: deny, match: { commands: ["scp *"] }, message: "use sftp" }
      - { action: allow, match: { channels: [sftp] } }`);
    expect(noScp.decideExec('scp -f /x').decision).toMatchObject({ action: 'deny', rule: 'ci-ssh#1' });
  });

  it('denies scp paths only known at run time, and treats other scp invocations as commands', () => {
    const rs = ruleSet(EXAMPLE);
    expect(rs.decideExec('scp -f /var/log/*.log').decision.message).toMatch(/scp paths are only known at run time \(pathname expansion/);
    expect(rs.decideExec('scp /etc/passwd other:/tmp').decision).toMatchObject({ action: 'deny', message: '"scp /etc/passwd other:/tmp" is not allowed: no rule allows it' });
  });
});

describe('run-time words under a trailing wildcard', () => {
  const rules = new SshRuleSet([{
    name: 'p', subjects: { groups: [], workloads: [] }, targets: [], masking: [],
    rules: [
      { action: 'allow', match: { commands: ['echo *', 'uname *', 'systemctl status *', 'cat /tmp/*'] } },
    ],
  }]);
  it('lets "echo *" cover a substituted word, judging the substitution on its own', () => {
    expect(rules.decideExec('echo hello-from-$(uname -s)').decision.action).toBe('allow');
    expect(rules.decideExec('echo $(rm -rf /)').decision.action).toBe('deny');
  });
  it('needs the literal prefix before the first run-time word', () => {
    expect(rules.decideExec('systemctl status $UNIT').decision.action).toBe('allow');
    expect(rules.decideExec('systemctl $VERB app').decision.action).toBe('deny');
    expect(rules.decideExec('$CMD status app').decision.action).toBe('deny');
  });
  it('does not let a mid-word wildcard vouch for a run-time word', () => {
    expect(rules.decideExec('cat /tmp/$(echo x)').decision.action).toBe('deny');
  });
});
