/** Values an SSH agent hands the remote shell are data of a checked shape, never code. */
import { describe, expect, it } from 'vitest';
import { envValueProblem, terminalNameProblem } from '../../src/policy/agent-values.js';

describe('the terminal type of a pty request', () => {
  it('is a plain terminal name', () => {
    for (const t of ['xterm-256color', 'screen.xterm-256color', 'vt100', 'xterm+256', 'dumb', '']) expect(terminalNameProblem(t), t).toBeUndefined();
  });
  it('refuses anything a shell or an arithmetic context could evaluate', () => {
    for (const t of ['a[$(touch M)]', '$(id)', 'xterm;id', '`id`', 'x'.repeat(65), 'xterm 256', 'a[1]']) expect(terminalNameProblem(t), t).toBeDefined();
  });
});

describe('env request values', () => {
  it('locale variables hold locale names', () => {
    for (const [n, v] of [['LANG', 'en_US.UTF-8'], ['LC_ALL', 'C.UTF-8'], ['LC_MESSAGES', 'de_DE@euro'], ['LANG', '']]) expect(envValueProblem(n!, v!), `${n}=${v}`).toBeUndefined();
    for (const v of ['a[$(touch M)]', 'en_US.UTF-8;id', '$(id)', 'C UTF-8']) expect(envValueProblem('LC_X', v), v).toMatch(/not a locale name/);
  });
  it('other allowed variables hold words, paths and lists only', () => {
    expect(envValueProblem('APP_MODE', 'read-only')).toBeUndefined();
    expect(envValueProblem('APP_PATH', '/srv/app:/opt/bin')).toBeUndefined();
    for (const v of ['a[$(touch M)]', '${x}', 'a b', "'q'", 'x\ny']) expect(envValueProblem('APP_MODE', v), v).toMatch(/characters a shell may evaluate/);
  });
});
