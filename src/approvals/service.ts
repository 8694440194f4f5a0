/**
 * Just-in-time approval of single commands. A session asks for one, holds that command
 * and waits; a human in one of the rule's approver groups approves or rejects it (the
 * control socket checks who they are); otherwise it times out. An approval is bound to
 * the exact command text, session, workload and target, and may also grant that exact
 * command to that workload on that target for a time window.
 */
import { randomBytes } from 'node:crypto';
import { ApprovalStore, type ApprovalRequest } from './store.js';
import type { Webhooks } from './webhooks.js';

export interface Outcome {
  approved: boolean;
  /** 'approved' | 'rejected' | 'timed out' | 'session ended' */
  state: string;
  by?: string;
  reason?: string;
}

export interface HoldContext {
  session: string;
  workload: string;
  target: string;
  protocol: string;
}

export interface Ticket {
  id: string;
  outcome: Promise<Outcome>;
  /** the session went away: the request closes as expired */
  cancel(): void;
}

export interface Approver {
  subject: string;
  name?: string;
  groups: string[];
}

export class ApprovalError extends Error {}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const MAX_WINDOW_MS = 24 * 3_600_000;

export class ApprovalService {
  private readonly requests = new Map<string, ApprovalRequest>();
  private readonly waiting = new Map<string, { resolve: (o: Outcome) => void; timer: NodeJS.Timeout }>();
  /** "workload\ntarget\ncommand" → until (epoch ms) */
  private readonly windows = new Map<string, number>();

  constructor(
    private readonly store: ApprovalStore,
    private readonly hooks: {
      audit(event: 'approval.requested' | 'approval.decided', fields: Record<string, unknown>): void;
      webhooks?: Webhooks;
      link?: string;
    },
    private readonly now: () => number = Date.now,
  ) {
    // requests a previous daemon held died with their sessions
    for (const r of store.load()) {
      if (r.state === 'pending') {
        const closed: ApprovalRequest = { ...r, state: 'expired', reason: 'expired, session ended (the daemon restarted)', decidedAt: new Date(this.now()).toISOString() };
        store.save(closed);
        this.requests.set(r.id, closed);
      } else this.requests.set(r.id, r);
      const w = this.requests.get(r.id)!;
      if (w.state === 'approved' && w.windowUntil && Date.parse(w.windowUntil) > this.now()) this.windows.set(windowKey(w), Date.parse(w.windowUntil));
    }
  }

  /** An earlier approval's time window covers this exact command for this workload and target. */
  granted(workload: string, target: string, command: string): boolean {
    const key = `${workload}\n${target}\n${command}`;
    const until = this.windows.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.windows.delete(key);
    return false;
  }

  /** Holds `command` for approval by one of `approvers`; resolves on a decision or the timeout. */
  request(ctx: HoldContext, command: string, approvers: string[], rule: string | undefined, timeoutMs = DEFAULT_TIMEOUT_MS): Ticket {
    const id = `apr-${randomBytes(5).toString('hex')}`;
    const created = this.now();
    const r: ApprovalRequest = {
      id, createdAt: new Date(created).toISOString(), ...ctx, command, rule, approvers,
      expiresAt: new Date(created + timeoutMs).toISOString(), state: 'pending',
    };
    this.requests.set(id, r);
    this.store.save(r);
    const outcome = new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => this.close(id, { state: 'expired', reason: 'approval timed out' }, { approved: false, state: 'timed out', reason: 'approval timed out' }), timeoutMs);
      timer.unref();
      this.waiting.set(id, { resolve, timer });
    });
    this.hooks.audit('approval.requested', { approval: id, session: ctx.session, workload: ctx.workload, target: ctx.target, command, rule, approvers, expiresAt: r.expiresAt });
    this.hooks.webhooks?.notify({
      id, command, workload: ctx.workload, target: ctx.target,
      text: `interlock: ${ctx.workload} waits for approval on ${ctx.target} (${approvers.join(', ') || 'any approver'}): \`interlock approvals approve ${id}\``,
      link: this.hooks.link ? `${this.hooks.link.replace(/\/$/, '')}/${id}` : undefined,
    });
    return {
      id,
      outcome,
      cancel: () => this.close(id, { state: 'expired', reason: 'expired, session ended' }, { approved: false, state: 'session ended' }),
    };
  }

  list(opts: { all?: boolean } = {}): ApprovalRequest[] {
    return [...this.requests.values()].filter((r) => opts.all || r.state === 'pending');
  }

  get(id: string): ApprovalRequest | undefined {
    return this.requests.get(id);
  }

  approve(id: string, who: Approver, windowMs?: number): ApprovalRequest {
    const r = this.pendingFor(id, who);
    if (windowMs !== undefined && !(windowMs > 0 && windowMs <= MAX_WINDOW_MS)) throw new ApprovalError(`a window must be between 1s and 24h`);
    const windowUntil = windowMs ? new Date(this.now() + windowMs).toISOString() : undefined;
    const closed = this.close(id, { state: 'approved', decidedBy: who.name ?? who.subject, windowUntil }, { approved: true, state: 'approved', by: who.name ?? who.subject });
    if (windowUntil) this.windows.set(windowKey(r), Date.parse(windowUntil));
    return closed!;
  }

  reject(id: string, who: Approver, reason: string): ApprovalRequest {
    this.pendingFor(id, who);
    return this.close(id, { state: 'rejected', decidedBy: who.name ?? who.subject, reason }, { approved: false, state: 'rejected', by: who.name ?? who.subject, reason })!;
  }

  /** A pending request this approver may decide. */
  private pendingFor(id: string, who: Approver): ApprovalRequest {
    const r = this.requests.get(id);
    if (!r) throw new ApprovalError(`no approval request ${id}`);
    if (r.state !== 'pending') throw new ApprovalError(`request ${id} is already ${r.state}`);
    if (r.approvers.length && !who.groups.some((g) => r.approvers.includes(g))) {
      throw new ApprovalError(`${who.name ?? who.subject} is not in an approver group of ${id} (${r.approvers.join(', ')}); their groups: ${who.groups.join(', ') || 'none'}`);
    }
    return r;
  }

  private close(id: string, change: Partial<ApprovalRequest>, outcome: Outcome): ApprovalRequest | undefined {
    const r = this.requests.get(id);
    const w = this.waiting.get(id);
    if (!r || r.state !== 'pending') return r;
    const closed: ApprovalRequest = { ...r, ...change, decidedAt: new Date(this.now()).toISOString() };
    this.requests.set(id, closed);
    this.store.save(closed);
    if (w) {
      clearTimeout(w.timer);
      this.waiting.delete(id);
      w.resolve(outcome);
    }
    this.hooks.audit('approval.decided', { approval: id, session: r.session, workload: r.workload, target: r.target, command: r.command, state: closed.state, by: closed.decidedBy, reason: closed.reason, windowUntil: closed.windowUntil });
    return closed;
  }
}

function windowKey(r: { workload: string; target: string; command: string }): string {
  return `${r.workload}\n${r.target}\n${r.command}`;
}
