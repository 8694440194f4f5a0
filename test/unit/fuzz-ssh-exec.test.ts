/**
 * Fuzzing the SSH exec analysis (shell.ts) and its decisions (ssh-rules.ts decideExec).
 * See test/helpers/fuzz.ts for run counts.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { analyzeShellCommand } from '../../src/policy/shell.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';
import { sshRules } from '../helpers/policies.js';

const ruleSet = (rules: string) => sshRules(rules);

/** `echo` with anything, and nothing else: no match is a denial. */
const ECHO_ONLY = ruleSet(`
      - { action: allow, match: { commands: ["echo *"] } }`);

// ---------------------------------------------------------------------------------------------
// shell-ish text

const word = fc.oneof(
  fc.constantFrom('echo', 'hi', '-n', '$HOME', '"$x"', "'a b'", '*', '~', '\\;', '{a,b}', '$((1+2))', '"$(id)"', '`id`', "$'\\x41'", 'é', '\u202e', '\0'),
  fc.string({ maxLength: 6 }),
);
const simple = fc.array(word, { minLength: 1, maxLength: 4 }).map((ws) => ws.join(' '));
const joiner = fc.constantFrom('; ', ' && ', ' || ', ' | ', ' & ', '\n', ' |& ');
const shellish = fc.letrec<{ cmd: string }>((tie) => ({
  cmd: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    simple,
    fc.tuple(tie('cmd'), joiner, tie('cmd')).map(([a, j, b]) => a + j + b),
    tie('cmd').map((c) => `(${c})`),
    tie('cmd').map((c) => `{ ${c}; }`),
    tie('cmd').map((c) => `echo "$(${c})"`),
    tie('cmd').map((c) => `echo \`${c}\``),
    tie('cmd').map((c) => `bash -c '${c.replaceAll("'", '')}'`),
    tie('cmd').map((c) => `if true; then ${c}; fi`),
    tie('cmd').map((c) => `cat <<EOF\n$(${c})\nEOF`),
    tie('cmd').map((c) => `${c} > /tmp/out`),
  ),
})).cmd;
const anyCommand = fc.oneof(shellish, fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 40 }));

/** The denied command, in the many forms a shell still runs it as a command. */
const rmAsCommand = fc.constantFrom(
  'rm -rf /', '/bin/rm -rf /', 'env rm -rf /', 'nohup rm -rf /', 'timeout 5 rm -rf /', 'sh -c "rm -rf /"',
  'bash -c \'rm -rf /\'', 'exec rm -rf /', 'command rm -rf /', 'xargs rm', 'find / -exec rm {} +', 'sudo rm -rf /',
  'FOO=1 rm -rf /', '"rm" -rf /', "'rm' -rf /", 'r\\m -rf /', 'eval rm -rf /', '$(echo rm) -rf /', '${RM:-rm} -rf /',
);
/** Ways to put it next to, inside or after an allowed command. */
const composition = fc.constantFrom(
  (x: string, r: string) => `${x}; ${r}`,
  (x: string, r: string) => `${x} && ${r}`,
  (x: string, r: string) => `${x} || ${r}`,
  (x: string, r: string) => `${x} | ${r}`,
  (x: string, r: string) => `${x} & ${r}`,
  (x: string, r: string) => `${x}\n${r}`,
  (x: string, r: string) => `${x} $(${r})`,
  (x: string, r: string) => `${x} "$(${r})"`,
  (x: string, r: string) => `${x} \`${r}\``,
  (x: string, r: string) => `${x} <(${r})`,
  (x: string, r: string) => `(${x}; ${r})`,
  (x: string, r: string) => `{ ${x}; ${r}; }`,
  (x: string, r: string) => `${r}; ${x}`,
  (x: string, r: string) => `if ${x}; then ${r}; fi`,
  (x: string, r: string) => `while ${x}; do ${r}; done`,
  (x: string, r: string) => `f() { ${r}; }; ${x}`,
  (x: string, r: string) => `${x} <<EOF\n$(${r})\nEOF`,
  (x: string, r: string) => `${x} <<< "$(${r})"`,
);

describe('SSH exec decisions, fuzzed', () => {
  it('any text: analysed or refused with a reason, decided allow/deny/approve, never a throw', () => {
    fc.assert(
      fc.property(anyCommand, (cmd) => {
        const a = analyzeShellCommand(cmd);
        if (a.error !== undefined) expect(a.parts).toEqual([]);
        for (const p of a.parts) {
          expect(typeof p.program).toBe('string');
          expect(p.text.startsWith(p.program)).toBe(true);
        }
        const v = ECHO_ONLY.decideExec(cmd);
        expect(['allow', 'deny', 'approve']).toContain(v.decision.action);
        if (a.error !== undefined || a.parts.length === 0) expect(v.decision.action).toBe('deny');
        // an allowed command has nothing but echo in it
        if (v.decision.action === 'allow') for (const p of a.parts) expect(p.program).toBe('echo');
      }),
      fuzz(500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('metamorphic: an allowed command composed with rm, in any form, is never allowed', () => {
    const allowedX = fc.array(fc.constantFrom('hi', '-n', "'a b'", '"x y"', 'é', '1'), { maxLength: 3 }).map((ws) => ['echo', ...ws].join(' '));
    fc.assert(
      fc.property(allowedX, rmAsCommand, composition, (x, rm, compose) => {
        expect(ECHO_ONLY.decideExec(x).decision.action).toBe('allow');
        const cmd = compose(x, rm);
        expect(ECHO_ONLY.decideExec(cmd).decision.action, cmd).not.toBe('allow');
      }),
      fuzz(600),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('an analysis does not depend on what was analysed before (the parser is shared)', () => {
    fc.assert(
      fc.property(anyCommand, fc.array(anyCommand, { maxLength: 3 }), (cmd, before) => {
        const fresh = analyzeShellCommand(cmd);
        for (const other of before) analyzeShellCommand(other);
        expect(analyzeShellCommand(cmd)).toEqual(fresh);
      }),
      fuzz(250),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
