/**
 * Values an SSH agent hands the remote side that the remote shell may read as code: the
 * terminal type of a pty request (it becomes $TERM) and env request values. They are data of
 * a checked shape, never code: `TERM='a[$(touch M)]'` and `LC_X='a[$(touch M)]'` reach
 * bash's arithmetic, which evaluates subscripts. Pure.
 */

/** A terminal name as terminfo spells them: xterm-256color, screen.xterm, vt100+... */
const TERMINAL_NAME = /^[A-Za-z0-9._+-]{0,64}$/; // empty: the client has no TERM
/** A locale name: en_US.UTF-8, C.UTF-8, POSIX, de_DE@euro; empty unsets */
const LOCALE_NAME = /^[A-Za-z0-9_.@+-]{0,64}$/;
/** Any other allowed variable: words, paths and lists, nothing a shell expands or an arithmetic context evaluates */
const PLAIN_VALUE = /^[A-Za-z0-9_.,:/@%+=-]{0,1024}$/;

export function terminalNameProblem(term: string): string | undefined {
  return TERMINAL_NAME.test(term) ? undefined : 'the terminal type is not a plain terminal name ([A-Za-z0-9._+-], at most 64 characters)';
}

/** Why an env request's value is refused, or undefined. */
export function envValueProblem(name: string, value: string): string | undefined {
  if (name === 'LANG' || name === 'LANGUAGE' || name.startsWith('LC_')) {
    return LOCALE_NAME.test(value) ? undefined : `${name} is not a locale name ([A-Za-z0-9_.@+-], at most 64 characters)`;
  }
  return PLAIN_VALUE.test(value) ? undefined : `the value of ${name} has characters a shell may evaluate (allowed: letters, digits and _ . , : / @ % + = -)`;
}
