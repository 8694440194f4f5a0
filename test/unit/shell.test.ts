import { describe, expect, it } from 'vitest';
import { analyzeShellCommand, MAX_SHELL_COMMAND_BYTES } from '../../src/policy/shell.js';

const DYNAMIC = ' ‹dynamic›';

/** Each part's text, marked when the part is only known at run time. */
function parts(src: string): string[] {
  const a = analyzeShellCommand(src);
  expect(a.error).toBeUndefined();
  return a.parts.map((p) => (p.dynamic ? p.text + DYNAMIC : p.text));
}

const dyn = (text: string) => text + DYNAMIC;

describe('analyzeShellCommand: every simple command is a part', () => {
  it.each<[string, string, string[]]>([
    ['a pipeline', 'ps aux | grep -v grep | wc -l', ['ps aux', 'grep -v grep', 'wc -l']],
    ['and, or, semicolon, background', 'a && b || c; d & e', ['a', 'b', 'c', 'd', 'e']],
    ['a subshell and a group', '(cd /tmp && ls); { pwd; }', ['cd /tmp', 'ls', 'pwd']],
    ['if / elif / else with conditions', 'if test -f x; then cat x; elif true; then id; else false; fi', ['test -f x', 'cat x', 'true', 'id', 'false']],
    ['while with its condition', 'while read line; do echo "$line"; done', ['read line', dyn('echo $line')]],
    ['for over a glob', 'for f in *.log; do gzip "$f"; done', [dyn('gzip $f')]],
    ['case arms', 'case "$1" in start) run;; *) usage;; esac', ['run', 'usage']],
    ['a function body, and its call', 'cleanup() { rm -rf /tmp/x; }; cleanup', ['rm -rf /tmp/x', 'cleanup']],
    ['negation, time, coproc', '! grep -q x f; time ls; coproc sleep 1', ['grep -q x f', 'ls', 'sleep 1']],
    ['process substitution', 'diff <(ls a) <(ls b)', [dyn('diff <(ls a) <(ls b)'), 'ls a', 'ls b']],
    ['a program given by path', '/bin/rm -rf /', ['/bin/rm -rf /']],
  ])('%s', (_, src, expected) => {
    expect(parts(src)).toEqual(expected);
  });

  it('command substitutions, nested, are parts and make their word dynamic', () => {
    expect(parts('echo $(cat $(ls /etc))')).toEqual([dyn('echo $(cat $(ls /etc))'), dyn('cat $(ls /etc)'), 'ls /etc']);
    expect(parts('echo $(rm -rf /)')).toEqual([dyn('echo $(rm -rf /)'), 'rm -rf /']);
    expect(parts('x=$(id)')).toEqual([dyn('= x=$(id)'), 'id']);
  });

  it('backticks, nested, are parts too', () => {
    const a = analyzeShellCommand('echo `echo \\`id\\``');
    expect(a.parts.map((p) => p.program)).toEqual(['echo', 'echo', 'id']);
    expect(a.parts.map((p) => p.dynamic !== undefined)).toEqual([true, true, false]);
    expect(a.parts[0].dynamic).toMatch(/^command substitution /);
  });

  it('takes quoted words without their quotes and resolves escapes', () => {
    const [p] = analyzeShellCommand(`'rm' "-rf" a\\ b`).parts;
    expect(p).toEqual({ program: 'rm', args: ['-rf', 'a b'], text: 'rm -rf a b' });
    expect(parts(`echo "a\\"b" '$HOME' \\$x "c\\q"`)).toEqual(['echo a"b $HOME $x c\\q']);
    expect(parts('ec\\\nho joined')).toEqual(['echo joined']);
    expect(parts('echo é > /tmp/ü')).toEqual(['echo é', '> /tmp/ü']);
  });
});

describe('analyzeShellCommand: redirections', () => {
  it.each<[string, string[]]>([
    ['echo x > /etc/passwd', ['echo x', '> /etc/passwd']],
    ['echo x >> log', ['echo x', '>> log']],
    ['sort < in.txt', ['sort', '< in.txt']],
    ['ls &> all.txt', ['ls', '> all.txt']],
    ['ls &>> all.txt', ['ls', '>> all.txt']],
    ['date >| clobbered', ['date', '> clobbered']],
    ['exec 3<> rw.txt', ['exec', '> rw.txt']],
    ['ls >& both.txt', ['ls', '> both.txt']],
    ['{ a; b; } > out', ['a', 'b', '> out']],
    ['while read l; do :; done < list', ['read l', ':', '< list']],
    ['echo x > "$F"', ['echo x', dyn('> $F')]],
  ])('%s', (src, expected) => {
    expect(parts(src)).toEqual(expected);
  });

  it('needs no part for fd duplication, closing, /dev/null, here-documents and here-strings', () => {
    expect(parts('make 2>&1 >/dev/null </dev/null 3>&- >&2')).toEqual(['make']);
    expect(parts("cat <<'EOF'\n$(id)\nEOF")).toEqual(['cat']);
    expect(parts('grep x <<< "literal"')).toEqual(['grep x']);
  });

  it('still finds the commands substituted into a here-document or here-string', () => {
    expect(parts('cat <<EOF\nhello $(id)\nEOF')).toEqual(['cat', 'id']);
    expect(parts('grep x <<< "$(date)"')).toEqual(['grep x', 'date']);
  });
});

describe('analyzeShellCommand: assignments and arithmetic', () => {
  it('makes every assignment a part "= NAME=value", before a command or alone', () => {
    expect(parts('FOO=1 BAR="a b" make')).toEqual(['= FOO=1', '= BAR=a b', 'make']);
    expect(parts('X=1')).toEqual(['= X=1']);
    expect(parts('PATH=/tmp:$PATH; ls')).toEqual([dyn('= PATH=/tmp:$PATH'), 'ls']);
    expect(parts('x=*')).toEqual(['= x=*']); // an assignment does not glob
  });

  it('names declarations after themselves', () => {
    expect(parts('export A=1 B; local -r c=2')).toEqual(['export A=1 B', 'local -r c=2']);
  });

  it('makes arithmetic commands and [[ ]] parts, dynamic where they evaluate', () => {
    expect(parts('((i++))')).toEqual([dyn('(( i++ ))')]);
    expect(parts('let x=1+2')).toEqual([dyn('let x=1+2')]);
    expect(parts('for ((i=0; i<3; i++)); do echo hi; done')).toEqual([dyn('(( i=0; i<3; i++ ))'), 'echo hi']);
    expect(parts('[[ -f /etc/x ]]')).toEqual(['[[ -f /etc/x ]]']);
    expect(parts('[[ n -eq 1 ]]')).toEqual([dyn('[[ n -eq 1 ]]')]);
    expect(parts('echo $((1 + 2))')).toEqual([dyn('echo $((1 + 2))')]);
    expect(parts('[ -f x ]')).toEqual(['[ -f x ]']);
  });
});

describe('analyzeShellCommand: words only known at run time', () => {
  it.each<[string, RegExp]>([
    ['$CMD args', /^the program is only known at run time \(parameter expansion \$CMD\)$/],
    ['"$(which rm)" -rf /', /^the program is only known at run time \(command substitution/],
    ['rm *.log', /^pathname expansion \*\.log$/],
    ['rm file?', /^pathname expansion/],
    ['rm [ab].txt', /^pathname expansion/],
    ['echo {a,b}', /^brace expansion \{a,b\}$/],
    ['echo {1..3}', /^brace expansion/],
    ["echo $'\\x72m'", /^ANSI-C quoting/],
    ['echo $"hello"', /^locale translation/],
    ['echo ${HOME:-/root}', /^parameter expansion/],
    ['ls @(a|b)', /^pathname expansion/],
  ])('%s', (src, reason) => {
    const a = analyzeShellCommand(src);
    expect(a.parts[0].dynamic).toMatch(reason);
  });

  it('does not take quoted or escaped wildcards, a lone [ or {} for expansions', () => {
    expect(parts("rm '*.log' \\*.txt \"a?\"")).toEqual(['rm *.log *.txt a?']);
    expect(parts('[ -n x ]; echo {} {a}')).toEqual(['[ -n x ]', 'echo {} {a}']);
    expect(parts('ls ~/x')).toEqual(['ls ~/x']);
  });
});

describe('analyzeShellCommand: commands that run other commands', () => {
  it.each<[string, string, string[]]>([
    ['sh -c SCRIPT', "sh -c 'ls -l; rm x'", ['ls -l', 'rm x']],
    ['bash -c inside bash -c', `bash -c "sh -c 'echo hi; id'"`, ['echo hi', 'id']],
    ['bash with options before -c', "bash -e -o pipefail -lc 'uptime'", ['uptime']],
    ['sh -c with a script only known at run time', 'sh -c "$SCRIPT"', [dyn('sh -c $SCRIPT')]],
    ['bash running a file', 'bash deploy.sh prod', ['bash deploy.sh prod']],
    ['env with assignments', 'env X=1 rm a', ['= X=1', 'rm a']],
    ['env -i', 'env -i PATH=/bin ls', ['= PATH=/bin', 'ls']],
    ['env alone', 'env', ['env']],
    ['sudo: itself and its command', 'sudo rm -rf /', ['sudo rm -rf /', 'rm -rf /']],
    ['sudo with options', 'sudo -n -u app -- systemctl status x', ['sudo -n -u app -- systemctl status x', 'systemctl status x']],
    ['doas', 'doas -u root id', ['doas -u root id', 'id']],
    ['nohup, timeout, nice, stacked', 'timeout -s KILL 5s nice -n 10 nohup rm x', ['rm x']],
    ['nice -N', 'nice -5 make', ['make']],
    ['exec, command, builtin', 'exec rm a; command rm b; builtin eval c', ['rm a', 'rm b', dyn('eval c')]],
    ['command -v only describes', 'command -v rm', ['command -v rm']],
    ['/usr/bin/env by path', '/usr/bin/env python3 x.py', ['python3 x.py']],
    ['busybox applets', "busybox sh -c 'rm -f x'", ['rm -f x']],
    ['xargs: input appended', 'ls | xargs rm', ['ls', dyn('rm {}')]],
    ['xargs with options', 'xargs -0 -n 1 -P4 rm -f', [dyn('rm -f {}')]],
    ['xargs -I', 'xargs -I % mv % /tmp', [dyn('mv % /tmp')]],
    ['xargs without a command runs echo', 'xargs', [dyn('echo {}')]],
    ['xargs sh -c: input lands in $0…', "xargs sh -c 'rm -rf /tmp/x'", ['rm -rf /tmp/x']],
    ['xargs -I into a script', "xargs -I{} sh -c 'rm {}'", [dyn('sh -c rm {}')]],
    ['find -exec … ;', "find /tmp -name '*.tmp' -exec rm {} \\;", ['find /tmp -name *.tmp -exec rm {} ;', dyn('rm {}')]],
    ['find -execdir … +', 'find . -execdir grep -l x {} + -print', ['find . -execdir grep -l x {} + -print', dyn('grep -l x {}')]],
    ['find -exec without {}', "find . -exec touch /tmp/seen ';'", ['find . -exec touch /tmp/seen ;', 'touch /tmp/seen']],
  ])('%s', (_, src, expected) => {
    expect(parts(src)).toEqual(expected);
  });

  it('marks eval, source, trap and alias as running code only known at run time', () => {
    const a = analyzeShellCommand('eval "rm x"; source ./env.sh; . ./env.sh; trap "rm -f /tmp/l" EXIT; alias ls="rm -rf"');
    expect(a.parts.map((p) => p.program)).toEqual(['eval', 'source', '.', 'trap', 'alias']);
    expect(a.parts.every((p) => p.dynamic !== undefined)).toBe(true);
    expect(a.parts[0]).toMatchObject({ text: 'eval rm x', dynamic: 'eval runs its arguments as shell code' });
  });

  it('makes a wrapper dynamic when an option hides which command it runs', () => {
    expect(analyzeShellCommand('sudo -s').parts[0]).toMatchObject({ text: 'sudo -s', dynamic: 'could not tell which command sudo runs (-s)' });
    expect(analyzeShellCommand('xargs --frobnicate rm').parts).toHaveLength(1);
    expect(analyzeShellCommand('xargs --frobnicate rm').parts[0].dynamic).toMatch(/could not tell which command xargs runs/);
    expect(analyzeShellCommand('env $OPTS rm').parts.at(-1)?.dynamic).toMatch(/could not tell/);
    expect(analyzeShellCommand('sudo $CMD').parts[0].dynamic).toMatch(/could not tell/);
  });

  it('stops following sh -c past a bounded depth', () => {
    let src = 'id';
    for (let i = 0; i < 10; i++) src = `sh -c ${escapeWord(src)}`;
    const a = analyzeShellCommand(src);
    expect(a.error).toBeUndefined();
    expect(a.parts).toHaveLength(1);
    expect(a.parts[0].program).toBe('sh');
    expect(a.parts[0].dynamic).toMatch(/nested too deeply/);
  });
});

describe('analyzeShellCommand: what cannot be analysed', () => {
  it.each(['echo "unclosed', 'if then fi', '(ls', 'echo $(', 'a |'])('a syntax error gives no parts and the parser message: %s', (src) => {
    const a = analyzeShellCommand(src);
    expect(a.parts).toEqual([]);
    expect(a.error).toMatch(/^\d+:\d+: /);
  });

  it('reports a syntax error inside sh -c, naming where', () => {
    const a = analyzeShellCommand(`ls; sh -c 'echo "oops'`);
    expect(a.parts).toEqual([]);
    expect(a.error).toMatch(/^in the script of sh -c: 1:6: /);
  });

  it('refuses input over the size bound without parsing it', () => {
    const a = analyzeShellCommand(`echo ${'x'.repeat(100 * 1024)}`);
    expect(a).toEqual({ parts: [], error: `the command is longer than ${MAX_SHELL_COMMAND_BYTES} bytes` });
    expect(analyzeShellCommand(`echo ${'é'.repeat(40 * 1024)}`).error).toMatch(/longer than/); // bytes, not characters
  });

  it('refuses nesting too deep for the parser, without throwing', () => {
    const deep = analyzeShellCommand(`${'('.repeat(20000)}ls${')'.repeat(20000)}`);
    expect(deep.parts).toEqual([]);
    expect(deep.error).toBe('the command is nested too deeply to analyse');
    const chain = analyzeShellCommand(Array(3000).fill('true').join(' && '));
    expect(chain.parts.length === 3000 || chain.error === 'the command is nested too deeply to analyse').toBe(true);
    expect(parts('echo ok')).toEqual(['echo ok']); // the parser still works afterwards
  });

  it('leaves the process-wide stack trace limit finite after loading the parser', () => {
    expect(Number.isFinite(Error.stackTraceLimit)).toBe(true);
  });

  it('has no parts for an empty line or a comment', () => {
    expect(analyzeShellCommand('')).toEqual({ parts: [] });
    expect(analyzeShellCommand('  # nothing\n')).toEqual({ parts: [] });
  });
});

/** One shell word with the same value: spaces and backslashes escaped. */
function escapeWord(s: string): string {
  return s.replace(/[\\ ]/g, '\\$&');
}
