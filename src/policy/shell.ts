/**
 * What a shell command line runs, read with a real parser (mvdan-sh, Bash dialect). Pure.
 *
 * The line becomes a flat list of parts, one per simple command wherever it sits: lists and
 * pipelines, $(…) and `…` (the substitution's commands are parts of their own and the word that
 * holds it is dynamic), subshells, { …; }, if/while/for/case, function bodies, <(…), time, coproc.
 * Words are taken as the shell would see them before expansion: quotes removed, escapes resolved.
 *
 * Beyond simple commands:
 *   redirections   `> f`, `>> f`, `< f` are parts of their own (program ">", ">>" or "<", the path
 *                  as argument); `>|`, `<>` and `&>` count as ">", `&>>` as ">>". Nothing for fd
 *                  duplication (2>&1, >&-), /dev/null, here-documents and here-strings (their
 *                  substitutions are still parts).
 *   assignments    every assignment is a part "= NAME=value", before a command (FOO=1 cmd), alone
 *                  (FOO=1) or as env's argument: PATH, LD_PRELOAD or GIT_PAGER change what later
 *                  programs do, so a policy has to let them through by name ("= LANG=*").
 *                  export/local/declare/readonly/typeset are parts named after themselves.
 *   arithmetic     ((…)), for ((…)) and let are parts ("((", "let"), dynamic: arithmetic reads
 *                  variables as expressions, and those can run commands. [[ … ]] is a part ("[["),
 *                  dynamic when it expands a word or compares numbers.
 *   wrappers       commands that run another command from their arguments are seen through: the
 *                  inner command is the part (sh/bash -c SCRIPT is analysed as a script of its own,
 *                  env, nohup, timeout, nice, setsid, stdbuf, exec, command, builtin, time, busybox,
 *                  xargs, find -exec). sudo and doas are a part themselves as well, so that a policy
 *                  decides on the privilege change too. Options a wrapper is not known to take make
 *                  it dynamic: which command it runs cannot be told.
 *   shell code     eval, source / ., trap and alias run text as code later: dynamic parts.
 *
 * A part is dynamic when its program or an argument is only known at run time: parameter,
 * command, arithmetic or process substitution, pathname or brace expansion, $'…' escapes, $"…",
 * arguments xargs or find fill in. Its text keeps those words as written ("echo $HOME").
 * `~` is kept as written. Input that does not parse gives no parts and the parser's message.
 * Lines are read as Bash reads them; a login shell of another family (zsh, fish) may not.
 */
import { createRequire } from 'node:module';
import type { ArrayExpr, Assign, CallExpr, DblQuoted, DeclClause, LetClause, Lit, Node, Parser, Redirect, SglQuoted, Word } from 'mvdan-sh';

export interface ShellPart {
  program: string;
  args: string[];
  /** "program arg arg" with single spaces, for glob matching */
  text: string;
  /** why this part's program or an argument is only known at run time (parameter expansion, command substitution as a word, globbing characters, arithmetic), if so */
  dynamic?: string;
  /**
   * For a dynamic part whose program is literal: the literal words before the first
   * run-time word, each followed by a space. A rule ending in one `*` after a literal
   * prefix ("echo *") covers whatever run-time words follow that prefix.
   */
  staticPrefix?: string;
}

export interface ShellAnalysis {
  parts: ShellPart[];
  error?: string;
}

/** Longer command lines are refused rather than analysed. */
export const MAX_SHELL_COMMAND_BYTES = 64 * 1024;
/** sh -c inside sh -c … deeper than this is not followed: the part is dynamic. */
const MAX_SCRIPT_NESTING = 8;
/** the longest piece of source quoted in a dynamic reason */
const MAX_SNIPPET = 60;

// mvdan-sh's runtime sets Error.stackTraceLimit to Infinity as it loads, which would make every
// error in the process record its whole stack: loaded here, in order, and the limit put back
const stackTraceLimit = Error.stackTraceLimit;
const { syntax } = createRequire(import.meta.url)('mvdan-sh') as typeof import('mvdan-sh').default;
Error.stackTraceLimit = stackTraceLimit;

export function analyzeShellCommand(src: string): ShellAnalysis {
  try {
    return { parts: scriptParts(src, 0) };
  } catch (e) {
    // whatever could not be analysed is reported, never guessed: the caller denies on error
    if (e instanceof ShellError) return { parts: [], error: e.message };
    if (e instanceof RangeError) return { parts: [], error: 'the command is nested too deeply to analyse' };
    return { parts: [], error: `the command could not be analysed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

class ShellError extends Error {}

let parser: Parser | undefined;

function scriptParts(src: string, depth: number): ShellPart[] {
  const bytes = Buffer.from(src, 'utf8');
  if (bytes.length > MAX_SHELL_COMMAND_BYTES) throw new ShellError(`the command is longer than ${MAX_SHELL_COMMAND_BYTES} bytes`);
  let file;
  try {
    parser ??= syntax.NewParser();
    file = parser.Parse(src, '');
  } catch (e) {
    parser = undefined; // a fresh one next time: this one may have stopped half-way
    if (e instanceof RangeError) throw new ShellError('the command is nested too deeply to analyse');
    throw new ShellError(parseMessage(e));
  }
  const script = new Script(bytes, depth);
  const parts: ShellPart[] = [];
  syntax.Walk(file, (node) => {
    if (node) parts.push(...script.partsOf(node));
    return true;
  });
  return parts;
}

function parseMessage(e: unknown): string {
  if (e !== null && typeof e === 'object' && typeof (e as { Error?: unknown }).Error === 'function') return String((e as { Error(): unknown }).Error());
  return e instanceof Error ? e.message : String(e);
}

/** A word as the program will receive it, or as written when only known at run time. */
interface Arg {
  value: string;
  dynamic?: string;
}

const EXPANSIONS: Record<string, string> = {
  ParamExp: 'parameter expansion',
  CmdSubst: 'command substitution',
  ArithmExp: 'arithmetic expansion',
  ProcSubst: 'process substitution',
  ExtGlob: 'pathname expansion',
  BraceExp: 'brace expansion',
};

const ARITHMETIC = 'arithmetic evaluation, which reads variables as expressions';

/** One parsed source (the command line, or the script of an sh -c inside it). */
class Script {
  constructor(
    private readonly bytes: Buffer,
    readonly depth: number,
  ) {}

  partsOf(node: Node): ShellPart[] {
    switch (syntax.NodeType(node)) {
      case 'CallExpr':
        return this.call(node as CallExpr);
      case 'DeclClause':
        return [this.declaration(node as DeclClause)];
      case 'Redirect': {
        const part = this.redirect(node as Redirect);
        return part ? [part] : [];
      }
      case 'ArithmCmd':
      case 'CStyleLoop': {
        const inner = this.source(node).replace(/^\(\(|\)\)$/g, '').trim();
        return [{ program: '((', args: [inner, '))'], text: `(( ${inner} ))`, dynamic: ARITHMETIC }];
      }
      case 'LetClause': {
        const args = (node as LetClause).Exprs.map((x) => this.source(x));
        return [makePart([{ value: 'let' }, ...args.map((value) => ({ value }))], ARITHMETIC)];
      }
      case 'TestClause':
        return [this.test(node)];
      default:
        return [];
    }
  }

  private call(c: CallExpr): ShellPart[] {
    const assignments = c.Assigns.map((a) => assignmentPart(this.assign(a)));
    return [...assignments, ...commandParts(c.Args.map((w) => this.word(w, true)), this.depth)];
  }

  private declaration(d: DeclClause): ShellPart {
    return makePart([{ value: d.Variant.Value }, ...d.Args.map((a) => this.assign(a))]);
  }

  private assign(a: Assign): Arg {
    let value = a.Name?.Value ?? '';
    let dynamic: string | undefined;
    if (a.Index) {
      const index = this.source(a.Index);
      value += `[${index}]`;
      if (!/^\d+$/.test(index)) dynamic = `arithmetic subscript [${snippet(index)}]`;
    }
    if (a.Naked) {
      // declare's options (-x) and names without a value
      if (a.Value) return this.word(a.Value, true);
      return { value, dynamic };
    }
    value += a.Append ? '+=' : '=';
    if (a.Value) {
      // a scalar assignment neither splits nor globs its value
      const v = this.word(a.Value, false);
      value += v.value;
      dynamic ??= v.dynamic;
    } else if (a.Array) {
      value += this.source(a.Array);
      dynamic ??= this.arrayDynamic(a.Array);
    }
    return { value, dynamic };
  }

  private arrayDynamic(array: ArrayExpr): string | undefined {
    for (const e of array.Elems) {
      if (e.Index) return `arithmetic subscript [${snippet(this.source(e.Index))}]`;
      const d = e.Value && this.word(e.Value, true).dynamic;
      if (d) return d;
    }
    return undefined;
  }

  private redirect(r: Redirect): ShellPart | undefined {
    const kind = redirectKinds().get(r.Op) ?? 'write'; // an operator this build does not name: the cautious reading
    if (kind === 'none' || !r.Word) return undefined;
    const target = this.word(r.Word, true);
    if (!target.dynamic) {
      if ((kind === 'dup-write' || kind === 'dup-read') && /^(\d+-?|-)$/.test(target.value)) return undefined; // 2>&1, >&-
      if (target.value === '/dev/null') return undefined;
    }
    const program = kind === 'append' ? '>>' : kind === 'read' || kind === 'dup-read' ? '<' : '>';
    return makePart([{ value: program }, target]);
  }

  /** [[ … ]] as written; dynamic when it expands anything or compares numbers (arithmetic). */
  private test(node: Node): ShellPart {
    const inner = this.source(node).replace(/^\[\[|\]\]$/g, '').trim().split(/\s+/).filter(Boolean);
    const text = ['[[', ...inner, ']]'].join(' ');
    let dynamic: string | undefined;
    if (/[$`]/.test(text)) dynamic = `expansion in ${snippet(text)}`;
    else if (inner.some((w) => /^-(eq|ne|lt|le|gt|ge)$/.test(w))) dynamic = ARITHMETIC;
    return { program: '[[', args: [...inner, ']]'], text, dynamic };
  }

  word(w: Word, expands: boolean): Arg {
    let value = '';
    // the word with every quoted, escaped or expanded character replaced by "_": what is left can glob or brace-expand
    let bare = '';
    let dynamic: string | undefined;
    const expansion = (node: Node) => {
      const type = syntax.NodeType(node);
      value += this.source(node);
      dynamic ??= `${EXPANSIONS[type] ?? `shell expansion (${type})`} ${snippet(this.source(node))}`;
    };
    for (const part of w.Parts) {
      switch (syntax.NodeType(part)) {
        case 'Lit': {
          const raw = (part as Lit).Value;
          value += raw.replace(/\\([\s\S])/g, '$1');
          bare += raw.replace(/\\[\s\S]/g, '_');
          break;
        }
        case 'SglQuoted': {
          const q = part as SglQuoted;
          if (q.Dollar && q.Value.includes('\\')) {
            value += this.source(part);
            dynamic ??= `ANSI-C quoting ${snippet(this.source(part))}`;
          } else value += q.Value;
          bare += '_';
          break;
        }
        case 'DblQuoted': {
          const q = part as DblQuoted;
          if (q.Dollar) dynamic ??= `locale translation ${snippet(this.source(part))}`;
          for (const inner of q.Parts) {
            if (syntax.NodeType(inner) === 'Lit') value += (inner as Lit).Value.replace(/\\([$`"\\\n])/g, '$1');
            else expansion(inner);
          }
          bare += '_';
          break;
        }
        default:
          expansion(part);
          bare += '_';
      }
    }
    if (expands && !dynamic) {
      if (/[*?]|\[[\s\S]*\]/.test(bare)) dynamic = `pathname expansion ${snippet(this.source(w))}`;
      else if (/\{[^{}]*(,|\.\.)[^{}]*\}/.test(bare)) dynamic = `brace expansion ${snippet(this.source(w))}`;
    }
    return { value, dynamic };
  }

  private source(node: Node): string {
    return this.bytes.subarray(node.Pos().Offset(), node.End().Offset()).toString('utf8');
  }
}

function snippet(s: string): string {
  return s.length > MAX_SNIPPET ? `${s.slice(0, MAX_SNIPPET - 1)}…` : s;
}

function makePart(words: Arg[], dynamic?: string): ShellPart {
  const values = words.map((w) => w.value);
  const part: ShellPart = { program: values[0], args: values.slice(1), text: values.join(' ') };
  const reason = dynamic ?? words.find((w) => w.dynamic)?.dynamic;
  if (reason) part.dynamic = reason;
  const firstDynamic = words.findIndex((w) => w.dynamic);
  if (!dynamic && firstDynamic > 0) part.staticPrefix = values.slice(0, firstDynamic).map((v) => `${v} `).join('');
  return part;
}

function assignmentPart(assignment: Arg): ShellPart {
  return makePart([{ value: '=' }, assignment]);
}

type RedirectKind = 'write' | 'append' | 'read' | 'dup-write' | 'dup-read' | 'none';
let redirectOps: Map<number, RedirectKind> | undefined;

/** The parser's operator codes, learnt from the parser itself rather than copied from its source. */
function redirectKinds(): Map<number, RedirectKind> {
  if (redirectOps) return redirectOps;
  const samples: [string, RedirectKind][] = [
    ['>', 'write'], ['>|', 'write'], ['<>', 'write'], ['&>', 'write'], ['>>', 'append'], ['&>>', 'append'], ['<', 'read'],
    ['>&', 'dup-write'], ['<&', 'dup-read'], ['<<', 'none'], ['<<-', 'none'], ['<<<', 'none'],
  ];
  const ops = new Map<number, RedirectKind>();
  const p = syntax.NewParser();
  for (const [op, kind] of samples) {
    const src = op.startsWith('<<') && op !== '<<<' ? `: ${op}x\nx\n` : `: ${op} x`;
    syntax.Walk(p.Parse(src, ''), (node) => {
      if (node && syntax.NodeType(node) === 'Redirect') ops.set((node as Redirect).Op, kind);
      return true;
    });
  }
  redirectOps = ops;
  return ops;
}

/* ---------- commands that run other commands ---------- */

type Wrapper = (words: Arg[], depth: number) => ShellPart[];

function commandParts(words: Arg[], depth: number): ShellPart[] {
  if (words.length === 0) return [];
  const head = words[0];
  if (head.dynamic) return [makePart(words, `the program is only known at run time (${head.dynamic})`)];
  const name = head.value.slice(head.value.lastIndexOf('/') + 1);
  const wrapper = Object.hasOwn(WRAPPERS, name) ? WRAPPERS[name] : undefined;
  return wrapper ? wrapper(words, depth) : [makePart(words)];
}

interface OptionSpec {
  /** one-letter options without a value */
  flags?: string;
  /** one-letter options with a value, attached (-uroot) or in the next word */
  valued?: string;
  /** one-letter options whose optional value can only be attached (xargs -i, -i{}) */
  attached?: string;
  /** long options without a value, or with one only after "=" */
  long?: string[];
  /** long options with a value, after "=" or in the next word */
  longValued?: string[];
  /** -N (a number) is an option: nice -10 */
  numeric?: boolean;
}

type Options = { start: number; seen: Map<string, Arg> } | { unknown: string };

/** Where a wrapper's command starts, after the options it is known to take. */
function parseOptions(words: Arg[], spec: OptionSpec, from = 1): Options {
  const seen = new Map<string, Arg>();
  let i = from;
  const next = () => words[++i];
  for (; i < words.length; i++) {
    const w = words[i];
    if (w.dynamic) return { unknown: w.value }; // an option or the command: cannot be told
    const a = w.value;
    if (a === '--') return { start: i + 1, seen };
    if (!a.startsWith('-') || a === '-') break;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      if (spec.long?.includes(name)) seen.set(name, { value: eq < 0 ? '' : a.slice(eq + 1) });
      else if (spec.longValued?.includes(name)) {
        const v = eq < 0 ? next() : { value: a.slice(eq + 1) };
        if (!v) return { unknown: a };
        seen.set(name, v);
      } else return { unknown: a };
      continue;
    }
    if (spec.numeric && /^-\d+$/.test(a)) continue;
    for (let j = 1; j < a.length; j++) {
      const c = a[j];
      const rest = a.slice(j + 1);
      if (spec.flags?.includes(c)) {
        seen.set(c, { value: '' });
        continue;
      }
      if (spec.attached?.includes(c)) seen.set(c, { value: rest });
      else if (spec.valued?.includes(c)) {
        const v = rest ? { value: rest } : next();
        if (!v) return { unknown: a };
        seen.set(c, v);
      } else return { unknown: a };
      break;
    }
  }
  return { start: i, seen };
}

function unknownCommand(words: Arg[], option: string): ShellPart[] {
  return [makePart(words, `could not tell which command ${words[0].value} runs (${snippet(option)})`)];
}

/** env, nohup, nice…: the command after the options is the part; without one, the wrapper itself. */
function seeThrough(spec: OptionSpec, operands = 0): Wrapper {
  return (words, depth) => {
    const o = parseOptions(words, spec);
    if ('unknown' in o) return unknownCommand(words, o.unknown);
    const start = o.start + operands;
    return start < words.length ? commandParts(words.slice(start), depth) : [makePart(words)];
  };
}

/** sudo, doas: the privilege change is a part, and so is the command it runs. */
function privileged(spec: OptionSpec): Wrapper {
  return (words, depth) => {
    const o = parseOptions(words, spec);
    if ('unknown' in o) return unknownCommand(words, o.unknown);
    const own = makePart(words);
    return o.start < words.length ? [own, ...commandParts(words.slice(o.start), depth)] : [own];
  };
}

function codeRunner(reason: string, when: (args: Arg[]) => boolean = () => true): Wrapper {
  return (words) => [makePart(words, when(words.slice(1)) ? reason : undefined)];
}

const NAME_VALUE = /^[A-Za-z_][A-Za-z0-9_]*=/;

const env: Wrapper = (words, depth) => {
  const o = parseOptions(words, { flags: 'i0v', valued: 'uC', long: ['--ignore-environment', '--null', '--debug'], longValued: ['--unset', '--chdir'] });
  if ('unknown' in o) return unknownCommand(words, o.unknown);
  let i = o.start;
  if (words[i]?.value === '-' && !words[i].dynamic) i++; // "env -" is env -i
  const parts: ShellPart[] = [];
  for (; i < words.length && NAME_VALUE.test(words[i].value); i++) parts.push(assignmentPart(words[i]));
  if (words[i]?.dynamic) return [...parts, ...unknownCommand(words, words[i].value)]; // "$X" may be NAME=value
  return i < words.length ? [...parts, ...commandParts(words.slice(i), depth)] : [makePart(words)];
};

const XARGS_OPTIONS: OptionSpec = {
  flags: '0prtxo',
  valued: 'IaLnPsdE',
  attached: 'ile',
  long: ['--null', '--no-run-if-empty', '--verbose', '--interactive', '--exit', '--show-limits', '--open-tty', '--replace', '--eof', '--max-lines'],
  longValued: ['--arg-file', '--delimiter', '--max-args', '--max-procs', '--max-chars', '--process-slot-var'],
};

/** xargs CMD ARGS: CMD runs with arguments read from its input, appended ("{}") or put in place of -I's string. */
const xargs: Wrapper = (words, depth) => {
  const o = parseOptions(words, XARGS_OPTIONS);
  if ('unknown' in o) return unknownCommand(words, o.unknown);
  const replace = o.seen.get('I') ?? o.seen.get('i') ?? o.seen.get('--replace');
  if (replace?.dynamic) return unknownCommand(words, replace.value);
  const inner = o.start < words.length ? words.slice(o.start) : [{ value: 'echo' }];
  if (!replace) return commandParts([...inner, { value: '{}', dynamic: 'arguments xargs reads from its input' }], depth);
  const marker = replace.value || '{}';
  const reason = `arguments xargs puts in place of ${marker}`;
  return commandParts(inner.map((w) => (!w.dynamic && w.value.includes(marker) ? { value: w.value, dynamic: reason } : w)), depth);
};

const FIND_ACTIONS = new Set(['-exec', '-execdir', '-ok', '-okdir']);

/** find … -exec CMD {} ; — find is a part, and so is each command it runs on the names it finds. */
const find: Wrapper = (words, depth) => {
  const parts = [makePart(words)];
  for (let i = 1; i < words.length; i++) {
    if (words[i].dynamic || !FIND_ACTIONS.has(words[i].value)) continue;
    let end = i + 1;
    while (end < words.length && !(!words[end].dynamic && (words[end].value === ';' || words[end].value === '+'))) end++;
    const inner = words.slice(i + 1, end).map((w) => (!w.dynamic && w.value.includes('{}') ? { value: w.value, dynamic: 'names find puts in place of {}' } : w));
    parts.push(...commandParts(inner, depth));
    i = end;
  }
  return parts;
};

/** sh -c SCRIPT: the script's own parts; sh FILE or sh reading its input: the shell itself. */
const shell: Wrapper = (words, depth) => {
  let i = 1;
  let script = false;
  for (; i < words.length; i++) {
    const w = words[i];
    if (w.dynamic) return unknownCommand(words, w.value);
    const a = w.value;
    if (a === '--' || a === '-') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      if (a === '--rcfile' || a === '--init-file') i++;
      continue;
    }
    if (!(a.startsWith('-') || a.startsWith('+')) || a.length < 2) break;
    if (a[0] === '-' && a.includes('c')) script = true;
    i += [...a].filter((c) => c === 'o' || c === 'O').length; // -o OPTION, -O SHOPT
  }
  const source = words[i];
  if (!script || !source) return [makePart(words)];
  if (source.dynamic) return [makePart(words, `the script of ${words[0].value} -c is only known at run time (${source.dynamic})`)];
  if (depth + 1 > MAX_SCRIPT_NESTING) return [makePart(words, 'shell scripts nested too deeply to analyse')];
  try {
    return scriptParts(source.value, depth + 1);
  } catch (e) {
    if (e instanceof ShellError) throw new ShellError(`in the script of ${words[0].value} -c: ${e.message}`);
    throw e;
  }
};

const command: Wrapper = (words, depth) => {
  const o = parseOptions(words, { flags: 'pvV' });
  if ('unknown' in o) return unknownCommand(words, o.unknown);
  // command -v / -V only describe their arguments
  if (o.seen.has('v') || o.seen.has('V') || o.start >= words.length) return [makePart(words)];
  return commandParts(words.slice(o.start), depth);
};

const busybox: Wrapper = (words, depth) => (words.length > 1 && !words[1].dynamic && !words[1].value.startsWith('-') ? commandParts(words.slice(1), depth) : [makePart(words)]);

const SHELLS = ['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash'];

const WRAPPERS: Record<string, Wrapper> = {
  ...Object.fromEntries(SHELLS.map((s) => [s, shell])),
  busybox,
  sudo: privileged({
    flags: 'AbEHnPSk',
    valued: 'ugCDhprtTU',
    long: ['--askpass', '--background', '--preserve-env', '--set-home', '--non-interactive', '--preserve-groups', '--stdin', '--reset-timestamp'],
    longValued: ['--user', '--group', '--close-from', '--chdir', '--host', '--prompt', '--role', '--type', '--command-timeout', '--other-user'],
  }),
  doas: privileged({ flags: 'n', valued: 'u' }),
  env,
  nohup: seeThrough({}),
  timeout: seeThrough({ flags: 'v', valued: 'sk', long: ['--preserve-status', '--foreground', '--verbose'], longValued: ['--signal', '--kill-after'] }, 1),
  nice: seeThrough({ valued: 'n', longValued: ['--adjustment'], numeric: true }),
  setsid: seeThrough({ flags: 'cfw', long: ['--ctty', '--fork', '--wait'] }),
  stdbuf: seeThrough({ valued: 'ioe', longValued: ['--input', '--output', '--error'] }),
  exec: seeThrough({ flags: 'cl', valued: 'a' }),
  builtin: seeThrough({}),
  time: seeThrough({ flags: 'pqv', valued: 'f', long: ['--portability', '--quiet', '--verbose'], longValued: ['--format'] }),
  command,
  xargs,
  find,
  eval: codeRunner('eval runs its arguments as shell code'),
  source: codeRunner('source runs the commands of a file'),
  '.': codeRunner('. runs the commands of a file'),
  trap: codeRunner('trap runs its argument as shell code later', (args) => args.length > 1),
  alias: codeRunner('alias defines shell code that later commands run', (args) => args.some((a) => a.value.includes('='))),
};
