/**
 * Which search_path is in effect in one session, followed from the statements the session
 * lets through and the server's ReadyForQuery, so that policy reads unqualified names as
 * the server will. Never more certain than it can be: it keeps every path that may be in
 * effect (the policy then judges under all of them), and narrows to one only when the
 * server is idle, everything sent has been answered without an error, and a replay of the
 * statements says which path that leaves.
 *
 *   simple Query     its SET / RESET / set_config() / transaction statements are followed
 *   extended Parse   may run at any later time: only a reset to the login path is allowed,
 *                    and that path then stays possible for the rest of the session
 *   prepared         PostgreSQL reads a prepared statement again under the path in effect
 *   statements       when it runs: a path change is refused unless every prepared statement
 *                    (by name; the unnamed one for Parse-level changes) was judged under it
 *
 * Changes it cannot see (a function that calls set_config() in its body) are a documented limit.
 */
import type { QueryVerdict } from '../../policy/rules.js';
import {
  LOGIN_PATHS, LOGIN_SEARCH_PATH, formatSearchPath, pathsInEffect, pathsPerStatement, samePath,
  type PathEffect, type PathsInEffect, type SearchPath,
} from '../../policy/search-path.js';
import { Backend, Frontend } from './message-types.js';

/** The session as a replay of its statements says it is, assuming every one of them succeeds. */
interface Replay {
  session: SearchPath;
  /** a SET LOCAL in effect until the transaction ends */
  local?: SearchPath;
  inBlock: boolean;
  /** the session's path when the transaction began (a rollback returns to it) */
  atBegin: SearchPath;
  savepoints: { name: string; session: SearchPath; local?: SearchPath }[];
}

/** Sync ends an extended-protocol batch, answered by one ReadyForQuery */
const SYNC = 0x53; // 'S'
const READY_IDLE = 0x49; // 'I'
const READY_IN_TRANSACTION = 0x54; // 'T'

/** the replay's stand-in for a path it does not know (compared by identity) */
const UNKNOWN: SearchPath = Object.freeze(['\0unknown']);

const PREPARED_REFUSAL = 'search_path cannot change here: this session holds prepared statements that were judged under another search_path, ' +
  'and PostgreSQL would read them again under the new one (reconnect to change it)';

export class SessionSearchPath {
  /** may be in effect for the next statement */
  private current: readonly SearchPath[] = [LOGIN_SEARCH_PATH];
  /** may be in effect once the open transaction ends or rolls back (includes current) */
  private fallback: readonly SearchPath[] = [LOGIN_SEARCH_PATH];
  /** a prepared statement may switch to these at any time */
  private sticky: readonly SearchPath[] = [];
  /** a prepared statement may begin or end a transaction at any time, unseen by the replay */
  private unseenTransactions = false;
  /** undefined once an error, or anything not replayed, makes the replay unreliable */
  private replay?: Replay = fresh(LOGIN_SEARCH_PATH);
  /** messages sent that the server has yet to answer with ReadyForQuery */
  private unanswered = 0;
  /** the last ReadyForQuery's transaction status */
  private lastStatus = READY_IDLE;
  /** the paths every named prepared statement was judged under; undefined: there are none */
  private namedPin?: Set<string>;
  /** the path set last folded into namedPin: the same set again changes nothing (the per-Parse common case) */
  private namedPinFrom?: readonly SearchPath[];
  /** the paths the unnamed statement was judged under, which a simple Query drops */
  private unnamedPin?: readonly SearchPath[];
  private simple: PathsInEffect = LOGIN_PATHS;
  private extended: PathsInEffect = LOGIN_PATHS;

  /** The paths to judge a statement under: a Parse's may run later, after the transaction ends. */
  pathsFor(protocol: 'simple' | 'extended'): PathsInEffect {
    return protocol === 'simple' ? this.simple : this.extended;
  }

  /** Every path a statement of this message may run under (for naming the table a COPY reads). */
  pathsDuring(verdict: QueryVerdict, protocol: 'simple' | 'extended'): readonly SearchPath[] {
    const base = this.pathsFor(protocol).fallback;
    if (!verdict.pathEffects) return base; // the per-statement common case: nothing to add, nothing allocated
    const set = verdict.pathEffects.flat().flatMap((e) => (e.kind === 'set' ? [e.path] : []));
    return set.length ? pathsInEffect([...base, ...set]).current : base;
  }

  /** A client message: those the server answers with ReadyForQuery are counted; a Query drops the unnamed statement. */
  clientMessage(type: number): void {
    if (type === Frontend.Query || type === SYNC || type === Frontend.FunctionCall) this.unanswered++;
    if (type === Frontend.Query) this.unnamedPin = undefined;
  }

  /**
   * A statement the policy lets through is about to be sent: follow what it does to the path.
   * Returns why it must be refused instead (then nothing is followed).
   */
  admit(verdict: QueryVerdict, protocol: 'simple' | 'extended', statementName?: string): string | undefined {
    return protocol === 'simple' ? this.admitQuery(verdict) : this.admitParse(verdict, statementName);
  }

  /** A ReadyForQuery or ErrorResponse from the server. */
  serverMessage(type: number, payload: Buffer): void {
    if (type === Backend.ErrorResponse) this.serverError();
    else if (type === Backend.ReadyForQuery && payload.length > 0) this.serverReady(payload[0]!);
  }

  /** ReadyForQuery: when everything sent is answered, what the server's state tells. */
  serverReady(status: number): void {
    if (this.unanswered > 0) this.unanswered--;
    if (this.unanswered > 0) return;
    this.lastStatus = status;
    const r = this.replay;
    if (status === READY_IDLE) {
      if (r && !r.inBlock && r.session !== UNKNOWN && !this.unseenTransactions) {
        // the per-statement common case: idle on the one path already in effect, nothing to recompute
        if (this.sticky.length === 0 && this.current.length === 1 && this.fallback.length === 1 && this.current[0] === r.session && this.fallback[0] === r.session) return;
        this.current = this.fallback = [r.session];
      } else {
        // the transaction ended, somehow: to any path it may have left
        this.current = this.fallback = pathsInEffect(this.current, this.fallback).fallback;
        this.replay = this.current.length === 1 ? fresh(this.current[0]!) : undefined;
      }
    } else if (status === READY_IN_TRANSACTION && r?.inBlock && (r.local ?? r.session) !== UNKNOWN && !this.unseenTransactions) {
      this.current = [r.local ?? r.session];
    } else {
      this.replay = undefined; // failed transaction, or a block the replay did not see begin
    }
    this.update();
  }

  /** Some statement failed: which of those sent ran is no longer known. */
  serverError(): void {
    this.replay = undefined;
  }

  private admitQuery(verdict: QueryVerdict): string | undefined {
    const effects = verdict.pathEffects;
    if (!effects) return undefined; // the common case: nothing to follow
    const { during, after } = pathsPerStatement(this.simple, effects);
    let pin = this.namedPin;
    for (let i = 0; i < effects.length; i++) {
      for (const e of effects[i]!) {
        if (e.kind === 'set' && pin && !pin.has(formatSearchPath(e.path))) return PREPARED_REFUSAL;
        if (e.kind === 'prepare' && e.unqualified) pin = intersect(pin, during[i]!.fallback); // as the policy judged it
      }
    }
    this.namedPin = pin;
    // it may fail part way: then the path is what it was (a failed transaction ends in a seen ROLLBACK)
    this.current = pathsInEffect([...this.current, ...after.current]).current;
    this.fallback = pathsInEffect([...this.fallback, ...after.fallback]).current;
    // after an error, the server idle and nothing else pending: a SET that succeeds tells the path again
    if (!this.replay && this.unanswered === 1 && this.lastStatus === READY_IDLE) this.replay = fresh(UNKNOWN);
    if (this.replay) replayQuery(this.replay, effects);
    this.update();
    return undefined;
  }

  private admitParse(verdict: QueryVerdict, name: string | undefined): string | undefined {
    const effects = (verdict.pathEffects ?? []).flat();
    const judged = this.extended.fallback;
    if (effects.length) {
      if (effects.some((e) => e.kind === 'set' && !samePath(e.path, LOGIN_SEARCH_PATH))) {
        return 'search_path can only be changed by a simple query through interlock (a prepared change could run at any later time)';
      }
      if (effects.some((e) => e.kind === 'set')) {
        const login = formatSearchPath(LOGIN_SEARCH_PATH);
        if ((this.namedPin && !this.namedPin.has(login)) || (this.unnamedPin && !this.unnamedPin.some((p) => samePath(p, LOGIN_SEARCH_PATH)))) return PREPARED_REFUSAL;
        this.sticky = [LOGIN_SEARCH_PATH];
      }
      if (effects.some((e) => e.kind !== 'set' && e.kind !== 'prepare')) this.unseenTransactions = true;
      this.replay = undefined; // it runs when it is executed, which is not seen here
      this.update();
    }
    if (!name) this.unnamedPin = verdict.pathDependent ? judged : undefined;
    else if (verdict.pathDependent && judged !== this.namedPinFrom) {
      this.namedPin = intersect(this.namedPin, judged);
      this.namedPinFrom = judged;
    }
    return undefined;
  }

  private update(): void {
    const current = this.unseenTransactions ? [...this.current, ...this.fallback] : this.current;
    this.simple = pathsInEffect([...current, ...this.sticky], [...this.fallback, ...this.sticky]);
    if (this.simple.key === '') {
      this.simple = LOGIN_PATHS;
      this.extended = LOGIN_PATHS;
    } else {
      this.extended = pathsInEffect(this.simple.fallback, this.simple.fallback);
    }
  }
}

function fresh(path: SearchPath): Replay {
  return { session: path, inBlock: false, atBegin: path, savepoints: [] };
}

function intersect(pin: Set<string> | undefined, paths: readonly SearchPath[]): Set<string> {
  const keys = paths.map(formatSearchPath);
  return new Set(pin ? keys.filter((k) => pin.has(k)) : keys);
}

/**
 * One simple Query, as the server runs it when every statement succeeds. Several statements
 * outside a transaction block run as one implicit transaction: SET LOCAL lasts to its end,
 * a BEGIN in it makes it an explicit block, a COMMIT ends it and the rest starts another.
 */
function replayQuery(r: Replay, effects: readonly (readonly PathEffect[])[]): void {
  const several = effects.length > 1;
  let implicit = several && !r.inBlock;
  if (implicit) r.atBegin = r.session;
  for (const e of effects.flat()) {
    switch (e.kind) {
      case 'set':
        if (!e.local) {
          r.session = e.path;
          r.local = undefined;
        } else if (r.inBlock || implicit) r.local = e.path;
        break;
      case 'begin':
        if (!r.inBlock) {
          if (!implicit) r.atBegin = r.session;
          r.inBlock = true;
          implicit = false;
          r.savepoints = [];
        }
        break;
      case 'end':
        if (!r.inBlock && !implicit) break; // outside a transaction: a warning, nothing else
        if (e.rollback) r.session = r.atBegin;
        r.local = undefined;
        r.savepoints = [];
        r.inBlock = e.chain;
        r.atBegin = r.session;
        implicit = several && !r.inBlock;
        break;
      case 'savepoint':
        r.savepoints.push({ name: e.name, session: r.session, local: r.local });
        break;
      case 'release':
      case 'rollback_to': {
        const at = r.savepoints.map((s) => s.name).lastIndexOf(e.name);
        if (at < 0) break; // the server refuses it: the error makes the replay unreliable
        if (e.kind === 'release') r.savepoints.length = at;
        else {
          r.session = r.savepoints[at]!.session;
          r.local = r.savepoints[at]!.local;
          r.savepoints.length = at + 1;
        }
        break;
      }
    }
  }
  if (!r.inBlock) r.local = undefined; // the implicit transaction, if any, is over
}
