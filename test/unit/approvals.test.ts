/**
 * The approval service: a held command resolves on a decision by someone in an
 * approver group, on its timeout, or when its session ends; a time-window approval
 * grants that exact command again; a restart closes what was pending.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApprovalService } from '../../src/approvals/service.js';
import { ApprovalStore } from '../../src/approvals/store.js';

const ctx = { session: 's1', workload: 'report-bot', target: 'orders-db', protocol: 'postgres' };
const alice = { subject: 'alice', name: 'alice@example.com', groups: ['dba'] };
const mallory = { subject: 'mallory', groups: ['interns'] };

describe('ApprovalService', () => {
  let dir: string;
  let audit: { event: string; fields: Record<string, unknown> }[];
  const service = (now?: () => number) => new ApprovalService(new ApprovalStore(join(dir, 'approvals.jsonl')), { audit: (event, fields) => audit.push({ event, fields }) }, now);
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'interlock-approvals-'));
    audit = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('resolves an approved request and records who approved it', async () => {
    const s = service();
    const t = s.request(ctx, 'DELETE FROM orders WHERE id = 7', ['dba'], 'p#2');
    expect(s.list().map((r) => r.id)).toEqual([t.id]);
    s.approve(t.id, alice);
    await expect(t.outcome).resolves.toEqual({ approved: true, state: 'approved', by: 'alice@example.com' });
    expect(s.list()).toEqual([]);
    expect(audit.map((a) => a.event)).toEqual(['approval.requested', 'approval.decided']);
    expect(statSync(join(dir, 'approvals.jsonl')).mode & 0o777).toBe(0o600);
  });

  it('refuses an approver outside the groups, and a second decision', async () => {
    const s = service();
    const t = s.request(ctx, 'DELETE FROM orders', ['dba'], undefined);
    expect(() => s.approve(t.id, mallory)).toThrow(/not in an approver group .*dba.*interns/);
    s.reject(t.id, alice, 'not during business hours');
    await expect(t.outcome).resolves.toMatchObject({ approved: false, state: 'rejected', reason: 'not during business hours' });
    expect(() => s.approve(t.id, alice)).toThrow(/already rejected/);
    expect(() => s.approve('apr-nope', alice)).toThrow(/no approval request/);
  });

  it('times out, and a cancelled request (session gone) closes as expired', async () => {
    const s = service();
    const t = s.request(ctx, 'UPDATE x SET y = 1', ['dba'], undefined, 30);
    await expect(t.outcome).resolves.toMatchObject({ approved: false, state: 'timed out', reason: 'approval timed out' });
    const c = s.request(ctx, 'UPDATE x SET y = 2', ['dba'], undefined);
    c.cancel();
    await expect(c.outcome).resolves.toMatchObject({ approved: false, state: 'session ended' });
    expect(s.get(c.id)?.state).toBe('expired');
  });

  it('a window grants the exact command to the same workload and target, until it ends', () => {
    let now = 1_000_000;
    const s = service(() => now);
    const t = s.request(ctx, 'DELETE FROM orders WHERE id = 7', ['dba'], undefined);
    s.approve(t.id, alice, 10 * 60_000);
    expect(s.granted('report-bot', 'orders-db', 'DELETE FROM orders WHERE id = 7')).toBe(true);
    expect(s.granted('report-bot', 'orders-db', 'DELETE FROM orders WHERE id = 8')).toBe(false);
    expect(s.granted('other-bot', 'orders-db', 'DELETE FROM orders WHERE id = 7')).toBe(false);
    now += 11 * 60_000;
    expect(s.granted('report-bot', 'orders-db', 'DELETE FROM orders WHERE id = 7')).toBe(false);
  });

  it('after a restart, pending requests are expired ("session ended") and windows survive', () => {
    const s = service();
    const pending = s.request(ctx, 'DROP TABLE x', ['dba'], undefined);
    const windowed = s.request(ctx, 'DELETE FROM y', ['dba'], undefined);
    s.approve(windowed.id, alice, 60_000);
    const again = service();
    expect(again.get(pending.id)).toMatchObject({ state: 'expired', reason: 'expired, session ended (the daemon restarted)' });
    expect(again.granted('report-bot', 'orders-db', 'DELETE FROM y')).toBe(true);
    expect(readFileSync(join(dir, 'approvals.jsonl'), 'utf8').trim().split('\n').length).toBe(4); // two requests, one approval, one expiry
  });
});
