/**
 * Decisions for SSH targets. Pure: (the policies' SSH rules, a request) → allow | deny | approve.
 *
 * As for PostgreSQL: rules in order, first match wins, no match is a denial; ids are
 * "policy#n" with n the rule's position in its policy. What each request reads:
 *
 *   exec      the command is cut into parts (see shell.ts); each part is judged alone, by the
 *             first rule that matches it, and the most dangerous part decides the whole: a part
 *             a rule denies, else a part no rule allows, else a part needing approval. So an
 *             allow rule must cover EVERY part, and a deny rule hitting ANY part is enough.
 *             Rules that judge parts: `commands` globs (when the rule has no `channels` or they
 *             list exec), rules with `channels: [exec]` and no `commands`/`paths` (any command),
 *             and `paths` rules for redirections ("> f" is writing f, "< f" reading it).
 *   channels  shell, sftp and the forwardings: rules whose `channels` list the kind and that
 *             have no `commands` or `paths`. sftp also opens for an allow rule with `paths`:
 *             each operation is then decided by decidePath.
 *   paths     sftp operations and scp transfers: `paths` rules (with `access`, if given), and
 *             `channels: [sftp]` rules without `paths` for every path. Such a channel rule
 *             grants file transfers, not shell redirections; a `paths` rule naming channels
 *             holds where they say (sftp; exec for redirections; either for scp).
 *
 * Command globs: `*` matches anything, spaces and slashes included; `?` one character. A glob
 * ending in " *" also matches the program alone: "uname *" matches `uname`. An allow rule
 * matches the part as written ("/tmp/x/echo hi" is not "echo *"); deny and approve rules also
 * try the program's base name ("/bin/rm -rf /" hits "rm *").
 *
 * Dynamic parts (a word known only at run time, see shell.ts) would let a wildcard cover what it
 * was not written for, so an allow rule matches one only by an exact glob, without wildcards,
 * equal to its text ("echo $HOME"), or when the rule also has a `pattern` (which saw the whole
 * command text). Deny and approve rules match them by glob as usual: an approver reads the
 * command before it runs.
 *
 * `pattern` is a regular expression on the whole command (exec), on the normalised path (paths)
 * or on the channel kind (channels), in addition to the rule's other filters.
 *
 * Path globs: `*` stays within one segment, `**` crosses them; as a whole segment `**` may also
 * be none ("dir/**" matches dir itself). Paths are normalised before matching (`.` and `..` resolved, repeated and trailing
 * slashes dropped); relative paths stay relative (to the login directory) and are matched as
 * such, so "/srv/**" does not match "data/x". A relative path that climbs above its start
 * ("../x") is denied. Symbolic links are not resolved.
 *
 * Legacy scp (`scp -O`) runs `scp -t DEST` (upload) or `scp -f SRC` (download) remotely; such a
 * part is decided as the file transfer it is, not as a command. An upload writes DEST and the
 * files put in it, whose names the client chooses, so a rule must cover any name there
 * ("/dst/*", or "/dst/**" with -r); DEST itself is not written when it is a directory for sure
 * (-d, a trailing "/", "."). A download reads SRC (with -r everything under it). The rules that
 * decide are those decidePath uses, `channels: [exec]` rules (exec of anything), and `commands`
 * globs on the scp part itself ("scp *"). Paths only known at run time are denied.
 */
import type { PolicyDef, RuleDef } from '../config/types.js';
import { Lru } from './lru.js';
import { isSshRule, type Decision } from './rules.js';
import { analyzeShellCommand, type ShellPart } from './shell.js';

export type SshChannelKind = 'shell' | 'sftp' | 'port-forward' | 'remote-forward' | 'agent-forward' | 'x11';
export type PathAccess = 'read' | 'write';

export interface ExecVerdict {
  decision: Decision;
  parts: ShellPart[];
  /** the part that made the command denied or in need of approval */
  refused?: { part: string; decision: Decision };
}

interface CommandGlob {
  glob: string;
  regex: RegExp;
  /** no wildcard: may allow a dynamic part with exactly this text */
  exact: boolean;
  /** a literal prefix then one final `*` ("echo *"): may allow a dynamic part whose literal words start with it */
  trailingPrefix?: string;
}

interface PathGlob {
  glob: string;
  regex: RegExp;
  /** the glob up to its first wildcard: what any path it matches starts with */
  prefix: string;
}

interface CompiledRule {
  id: string;
  def: RuleDef;
  commands?: CommandGlob[];
  channels?: Set<string>;
  paths?: PathGlob[];
  pattern?: RegExp;
}

/** A path a scp transfer touches: the path itself, or the names under it (one level or any depth). */
interface Probe {
  path: string;
  under?: 'one' | 'any';
}

const CACHED_VERDICTS = 4096;
/** longer commands are analysed each time: the cache stays small whatever an agent sends */
const MAX_CACHED_COMMAND = 4096;
/** how much of a command is quoted back in a message */
const MAX_QUOTED = 200;

const CHANNEL_NAMES: Record<SshChannelKind, string> = {
  shell: 'an interactive shell',
  sftp: 'sftp',
  'port-forward': 'port forwarding',
  'remote-forward': 'remote port forwarding',
  'agent-forward': 'agent forwarding',
  x11: 'X11 forwarding',
};

const UNMATCHED_CHANNEL: Record<SshChannelKind, string> = {
  shell: 'no rule allows an interactive shell on this target (channel shell)',
  sftp: 'sftp is not allowed (no rule allows channel sftp or any path)',
  'port-forward': 'port forwarding is not allowed (no rule allows channel port-forward)',
  'remote-forward': 'remote port forwarding is not allowed (no rule allows channel remote-forward)',
  'agent-forward': 'agent forwarding is not allowed (no rule allows channel agent-forward)',
  x11: 'X11 forwarding is not allowed (no rule allows channel x11)',
};

export class SshRuleSet {
  private readonly rules: CompiledRule[];
  private readonly verdicts = new Lru<string, ExecVerdict>(CACHED_VERDICTS);

  constructor(policies: PolicyDef[]) {
    this.rules = policies.flatMap((p) => p.rules.flatMap((def, i) => (isSshRule(def) ? [compile(`${p.name}#${i + 1}`, def)] : [])));
  }

  get size(): number {
    return this.rules.length;
  }

  /** The verdict on an exec request, remembered by its exact text. */
  decideExec(command: string): ExecVerdict {
    let v = this.verdicts.get(command);
    if (!v) {
      v = freeze(this.judgeExec(command));
      if (command.length <= MAX_CACHED_COMMAND) this.verdicts.set(command, v);
    }
    return v;
  }

  decideChannel(kind: SshChannelKind): Decision {
    for (const r of this.rules) {
      if (wholeChannel(r, kind)) {
        if (r.pattern && !r.pattern.test(kind)) continue;
        return ruleDecision(r, CHANNEL_NAMES[kind]);
      }
      // some paths may be allowed: the channel opens and each operation is decided by path
      if (kind === 'sftp' && r.paths && !r.commands && r.def.action === 'allow' && (!r.channels || r.channels.has('sftp'))) return ruleDecision(r, 'sftp');
    }
    return deny(UNMATCHED_CHANNEL[kind]);
  }

  decidePath(access: PathAccess, path: string): Decision {
    const normal = normalizePath(path);
    if ('error' in normal) return deny(`${verb(access)} ${quote(path)} is not allowed: ${normal.error}`);
    const probe = { path: normal.path };
    const r = this.rules.find((rule) => pathHit(rule, access, probe, 'sftp'));
    return r ? ruleDecision(r, describeProbe(access, probe)) : deny(`no rule allows ${describeProbe(access, probe)}`);
  }

  private judgeExec(command: string): ExecVerdict {
    const analysis = analyzeShellCommand(command);
    if (analysis.error !== undefined) return { decision: deny(`the command could not be analysed: ${analysis.error}`), parts: [] };
    const parts = analysis.parts;
    if (parts.length === 0) return { decision: deny('empty command: there is nothing to run'), parts };
    const decisions = parts.map((p) => this.decidePart(p, command));
    const worst = mostDangerous(decisions);
    if (worst < 0) return { decision: decisions[0], parts };
    return { decision: decisions[worst], parts, refused: { part: parts[worst].text, decision: decisions[worst] } };
  }

  private decidePart(part: ShellPart, command: string): Decision {
    const transfer = scpTransfer(part);
    if (transfer) return this.decideTransfer(part, transfer, command);
    const redirect = redirection(part);
    for (const r of this.rules) {
      if (commandHit(r, part, command) || (redirect && pathHit(r, redirect.access, redirect, 'redirect'))) return ruleDecision(r, quote(part.text));
    }
    if (part.dynamic) return deny(`${quote(part.text)} is not allowed: it is only known at run time (${part.dynamic}), and no rule allows it by its exact text`);
    if (redirect) return deny(`${quote(part.text)} is not allowed: no rule allows ${describeProbe(redirect.access, redirect)}`);
    return deny(`${quote(part.text)} is not allowed: no rule allows it`);
  }

  private decideTransfer(part: ShellPart, t: ScpTransfer, command: string): Decision {
    if (part.dynamic) return deny(`${quote(part.text)} is not allowed: the scp paths are only known at run time (${part.dynamic})`);
    const probes: Probe[] = [];
    for (const p of t.paths) {
      const normal = normalizePath(p);
      if ('error' in normal) return deny(`scp of ${quote(p)} is not allowed: ${normal.error}`);
      const path = normal.path;
      // an upload to a directory (-d, "dir/", ".") writes only the files it receives
      const directory = t.intoDirectory || p.endsWith('/') || path === '.' || path === '/';
      if (!(t.access === 'write' && directory)) probes.push({ path });
      if (t.recursive) probes.push({ path, under: 'any' });
      else if (t.access === 'write') probes.push({ path, under: 'one' });
    }
    const decisions = probes.map((probe) => {
      const r = this.rules.find((rule) => commandHit(rule, part, command) || pathHit(rule, t.access, probe, 'scp'));
      return r ? ruleDecision(r, `scp ${describeProbe(t.access, probe)}`) : deny(`scp is not allowed here: no rule allows ${describeProbe(t.access, probe)}`);
    });
    const worst = mostDangerous(decisions);
    return decisions[worst < 0 ? 0 : worst];
  }
}

function compile(id: string, def: RuleDef): CompiledRule {
  const m = def.match;
  return {
    id,
    def,
    commands: m.commands?.map(commandGlob),
    channels: m.channels ? new Set(m.channels) : undefined,
    paths: m.paths?.map(pathGlob),
    pattern: m.pattern !== undefined ? new RegExp(m.pattern) : undefined,
  };
}

function commandGlob(glob: string): CommandGlob {
  // "uname *": uname with any arguments, or none
  const optionalArgs = glob.endsWith(' *');
  const body = optionalArgs ? glob.slice(0, -2) : glob;
  let re = '';
  for (const c of body) re += c === '*' ? '[\\s\\S]*' : c === '?' ? '[\\s\\S]' : c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  const trailing = glob.endsWith('*') && !/[*?]/.test(glob.slice(0, -1)) ? glob.slice(0, -1) : undefined;
  return { glob, regex: new RegExp(`^${re}${optionalArgs ? '(?: [\\s\\S]*)?' : ''}$`), exact: !/[*?]/.test(glob), trailingPrefix: trailing };
}

/**
 * Path globs: `*` and `?` within one segment, `**` across segments. As a whole segment, `**`
 * may also be no segment at all: "a/**" matches a itself, and a deny of "a/**" followed by
 * "/*.key" also catches a/x.key (as with globstar).
 */
function pathGlob(glob: string): PathGlob {
  const g = glob.length > 1 ? glob.replace(/\/+$/, '') : glob;
  let re = '';
  for (let i = 0; i < g.length; i++) {
    if (i > 0 && i + 3 === g.length && g.endsWith('/**')) {
      re += '(?:/[\\s\\S]*)?';
      break;
    }
    if (g.startsWith('**/', i) && (i === 0 || g[i - 1] === '/')) {
      re += '(?:[\\s\\S]*/)?';
      i += 2;
    } else if (g.startsWith('**', i)) {
      re += '[\\s\\S]*';
      i++;
    } else if (g[i] === '*') re += '[^/]*';
    else if (g[i] === '?') re += '[^/]';
    else re += g[i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  const wildcard = g.search(/[*?]/);
  return { glob: g, regex: new RegExp(`^${re}$`), prefix: wildcard < 0 ? g : g.slice(0, wildcard) };
}

/** A rule about channels as a whole: it lists the kind and has no finer filter. */
function wholeChannel(r: CompiledRule, kind: string): boolean {
  return !r.commands && !r.paths && r.channels !== undefined && r.channels.has(kind);
}

function commandHit(r: CompiledRule, part: ShellPart, command: string): boolean {
  if (r.pattern && !r.pattern.test(command)) return false;
  if (wholeChannel(r, 'exec')) return true;
  if (!r.commands || (r.channels && !r.channels.has('exec'))) return false;
  if (r.def.action === 'allow') {
    if (part.dynamic && !r.pattern) {
      return r.commands.some((g) => (g.exact ? g.glob === part.text : g.trailingPrefix !== undefined && part.staticPrefix?.startsWith(g.trailingPrefix) === true));
    }
    return r.commands.some((g) => g.regex.test(part.text));
  }
  const texts = [part.text];
  const slash = part.program.lastIndexOf('/');
  if (slash >= 0 && slash < part.program.length - 1) texts.push(part.text.slice(slash + 1));
  return r.commands.some((g) => texts.some((t) => g.regex.test(t)));
}

/**
 * Where a path is judged: an sftp operation, a legacy scp transfer (a file transfer, like sftp,
 * through an exec channel) or a shell redirection. A `channels: [sftp]` rule grants sftp and scp
 * transfers, not shell redirections; a `paths` rule that names channels holds where they say.
 */
type PathSite = 'sftp' | 'scp' | 'redirect';

function pathHit(r: CompiledRule, access: PathAccess, probe: Probe, site: PathSite): boolean {
  if (wholeChannel(r, 'sftp')) return site !== 'redirect' && (!r.pattern || r.pattern.test(probe.path));
  if (!r.paths) return false;
  if (r.channels) {
    const sftp = r.channels.has('sftp');
    const exec = r.channels.has('exec');
    if (site === 'sftp' ? !sftp : site === 'redirect' ? !exec : !sftp && !exec) return false;
  }
  const required = r.def.match.access;
  if (required !== undefined && required !== access) return false;
  if (r.pattern && !r.pattern.test(probe.path)) return false;
  if (!probe.under) return r.paths.some((g) => g.regex.test(probe.path));
  // names under the path are not known: allowing needs every name covered, denying any name hit
  const any = probe.under === 'any';
  return r.def.action === 'allow' ? r.paths.some((g) => coversAllUnder(g, probe.path, any)) : r.paths.some((g) => mayMatchUnder(g, probe.path));
}

/**
 * Does the glob match every name under dir? Tried on names made of wildcard characters, which
 * only wildcards match: "*" and "**" (a `?` alone takes one of them, not both), and deeper ones
 * when any depth is needed (only `**` crosses a slash).
 */
function coversAllUnder(g: PathGlob, dir: string, anyDepth: boolean): boolean {
  const names = anyDepth ? ['*', '**', '*/*', '*/*/*'] : ['*', '**'];
  return names.every((n) => g.regex.test(joinPath(dir, n)));
}

/** Could the glob match some path under dir? Judged on the glob's literal prefix, erring towards yes. */
function mayMatchUnder(g: PathGlob, dir: string): boolean {
  const under = joinPath(dir, '');
  // only "**" matches both absolute and relative paths; "*" and "?" never match a slash
  if (!g.glob.startsWith('**') && g.glob.startsWith('/') !== under.startsWith('/')) return false;
  return under.startsWith(g.prefix) || g.prefix.startsWith(under);
}

function joinPath(dir: string, name: string): string {
  if (dir === '.') return name;
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

/**
 * "." and ".." resolved, repeated and trailing slashes dropped. Relative paths stay relative;
 * one that climbs above its start is refused: where it lands depends on the login directory.
 */
export function normalizePath(path: string): { path: string } | { error: string } {
  if (path.includes('\0')) return { error: 'the path contains a NUL byte' };
  const absolute = path.startsWith('/');
  const segments: string[] = [];
  for (const s of path.split('/')) {
    if (s === '' || s === '.') continue;
    if (s !== '..') segments.push(s);
    else if (segments.length > 0) segments.pop();
    else if (!absolute) return { error: 'a relative path may not climb above the login directory (use an absolute path)' };
  }
  const joined = segments.join('/');
  return { path: absolute ? `/${joined}` : joined || '.' };
}

interface ScpTransfer {
  access: PathAccess;
  paths: string[];
  recursive: boolean;
  /** -d: DEST must be a directory */
  intoDirectory: boolean;
}

/** The remote side of a legacy scp (`scp [-vrpdq] -t|-f [--] PATH…`), or undefined for any other part. */
function scpTransfer(part: ShellPart): ScpTransfer | undefined {
  if (part.program.slice(part.program.lastIndexOf('/') + 1) !== 'scp') return undefined;
  let mode: 't' | 'f' | undefined;
  let recursive = false;
  let intoDirectory = false;
  let options = true;
  const paths: string[] = [];
  for (const a of part.args) {
    if (options && a === '--') options = false;
    else if (options && a.startsWith('-') && a.length > 1) {
      for (const c of a.slice(1)) {
        if (c === 't' || c === 'f') {
          if (mode && mode !== c) return undefined;
          mode = c;
        } else if (c === 'r') recursive = true;
        else if (c === 'd') intoDirectory = true;
        else if (!'pvq'.includes(c)) return undefined;
      }
    } else {
      // scp stops reading options at its first operand
      options = false;
      paths.push(a);
    }
  }
  if (!mode || paths.length === 0) return undefined;
  return { access: mode === 't' ? 'write' : 'read', paths, recursive, intoDirectory };
}

/** The path a redirection part writes or reads, normalised; undefined for other parts and for paths that cannot be matched. */
function redirection(part: ShellPart): (Probe & { access: PathAccess }) | undefined {
  const access = part.program === '<' ? 'read' : part.program === '>' || part.program === '>>' ? 'write' : undefined;
  if (!access || part.dynamic || part.args.length !== 1) return undefined;
  const normal = normalizePath(part.args[0]);
  return 'error' in normal ? undefined : { access, path: normal.path };
}

/**
 * Index of the part that decides: the first denied by a rule (the most telling), else the first
 * denied for want of a rule, else the first needing approval; -1 when everything is allowed.
 */
function mostDangerous(decisions: Decision[]): number {
  const ruled = decisions.findIndex((d) => d.action === 'deny' && d.rule !== undefined);
  if (ruled >= 0) return ruled;
  const denied = decisions.findIndex((d) => d.action === 'deny');
  return denied >= 0 ? denied : decisions.findIndex((d) => d.action === 'approve');
}

function ruleDecision(r: CompiledRule, subject: string): Decision {
  const { action, message, approvers, timeout } = r.def;
  const why = message ? `: ${message}` : '';
  const text =
    action === 'allow'
      ? message ?? 'allowed'
      : action === 'deny'
        ? `${subject} is denied by rule ${r.id}${why}`
        : `${subject} needs approval (rule ${r.id}${approvers ? `, approvers: ${approvers.join(', ')}` : ''})${why}`;
  return { action, rule: r.id, message: text, approvers, timeout };
}

function deny(message: string): Decision {
  return { action: 'deny', message };
}

function verb(access: PathAccess): string {
  return access === 'write' ? 'writing' : 'reading';
}

function describeProbe(access: PathAccess, probe: Probe): string {
  if (!probe.under) return `${verb(access)} ${quote(probe.path)}`;
  return `${verb(access)} ${probe.under === 'any' ? 'anything' : 'files'} under ${quote(probe.path)}`;
}

function quote(s: string): string {
  return JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED - 1)}…` : s);
}

function freeze(v: ExecVerdict): ExecVerdict {
  for (const p of v.parts) Object.freeze(p.args);
  v.parts.forEach(Object.freeze);
  Object.freeze(v.parts);
  Object.freeze(v.decision);
  if (v.refused) Object.freeze(v.refused);
  return Object.freeze(v);
}
