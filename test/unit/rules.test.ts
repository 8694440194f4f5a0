import { beforeAll, describe, expect, it } from 'vitest';
import { initAnalysis } from '../../src/policy/analysis.js';
import { RuleSet } from '../../src/policy/rules.js';
import { sqlRules } from '../helpers/policies.js';

const ruleSet = (rules: string) => sqlRules(rules);

const decide = (rs: RuleSet, sql: string) => rs.decideText(sql).decision;

beforeAll(() => initAnalysis());

describe('RuleSet', () => {
  const rs = ruleSet(`
      - { action: deny, match: { functions: [pg_read_file, "lo_*", "dblink*"] }, message: dangerous }
      - { action: deny, match: { statements: [drop, truncate, alter] }, message: "no schema changes" }
      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }
      - { action: allow, match: { statements: [insert], relations: [public.notes] } }
      - { action: approve, match: { statements: [update, delete] }, approvers: [dba] }
      - { action: deny, match: { relations: ["billing.*"], access: write } }
      - { action: allow, match: { statements: [set, transaction] } }
      - { action: allow, match: { statements: [call], functions: [app.refresh_report] } }`);

  it('first match wins, and its id names policy and position', () => {
    expect(decide(rs, 'select * from customers')).toMatchObject({ action: 'allow', rule: 'p#3' });
    expect(decide(rs, 'select pg_read_file(\'/etc/passwd\') from customers')).toMatchObject({ action: 'deny', rule: 'p#1', message: 'dangerous' });
  });

  it('an allow rule must cover every relation: a join outside public is not allowed', () => {
    expect(decide(rs, 'select * from public.a join b using (id)').action).toBe('allow');
    const d = decide(rs, 'select * from public.a join private.secrets using (id)');
    expect(d.action).toBe('deny');
    expect(d.rule).toBeUndefined();
  });

  it('an allow rule must cover every kind: the most dangerous effect wins', () => {
    expect(decide(rs, 'with d as (delete from t returning *) select * from d')).toMatchObject({ action: 'approve', rule: 'p#5' });
    expect(decide(rs, 'explain analyze delete from t').action).toBe('approve');
    expect(decide(rs, 'explain delete from t').action).toBe('deny'); // explain itself is allowed by no rule
    expect(decide(rs, 'select * from t for update').action).toBe('approve');
  });

  it('access: read on an allow rule refuses a statement that writes', () => {
    expect(decide(rs, 'select * into public.copy from public.t').action).not.toBe('allow');
  });

  it('deny rules match on any hit, with access narrowing relations', () => {
    expect(decide(rs, 'insert into billing.invoices select * from public.t')).toMatchObject({ action: 'deny', rule: 'p#6' });
    expect(decide(rs, 'select lo_export(1, \'/tmp/x\')').rule).toBe('p#1');
    expect(decide(rs, 'select * from dblink_connect(\'x\')').rule).toBe('p#1');
  });

  it('opaque statements match only rules that name their kind', () => {
    expect(decide(rs, 'DO $$ BEGIN NULL; END $$')).toMatchObject({ action: 'deny', message: 'no rule allows this DO statement' });
    expect(decide(rs, 'call app.refresh_report()')).toMatchObject({ action: 'allow', rule: 'p#8' });
    expect(decide(rs, 'call app.drop_everything()').action).toBe('deny');
  });

  it('a multi-statement message is decided as a whole', () => {
    expect(decide(rs, 'select 1; drop table t')).toMatchObject({ action: 'deny', message: 'no schema changes' });
    expect(decide(rs, 'select 1; delete from t').action).toBe('approve');
    expect(decide(rs, 'begin; select 1; commit').action).toBe('allow');
  });

  it('unparsable SQL is denied with the parser\'s message; an empty query is allowed (the server answers it)', () => {
    expect(decide(rs, 'selec 1')).toMatchObject({ action: 'deny', message: 'statement could not be parsed: syntax error at or near "selec"' });
    expect(decide(rs, '   ').action).toBe('allow');
  });

  it('keeps search_path pinned: SET search_path and set_config() are refused whatever the rules say', () => {
    for (const sql of ['set search_path = private, public', 'SET LOCAL search_path TO x', "select set_config('search_path', 'x', false)"]) {
      expect(decide(rs, sql), sql).toMatchObject({ action: 'deny', message: expect.stringContaining('changing search_path is not allowed') });
    }
    expect(decide(rs, 'set work_mem = 1024').action).toBe('allow');
    expect(decide(rs, 'reset search_path').action).toBe('allow'); // back to the pinned value
  });

  it('remembers verdicts by text', () => {
    expect(rs.decideText('select 42')).toBe(rs.decideText('select 42'));
    expect(rs.decideText('select 42').kinds).toEqual(['select']);
  });

  it('with no rules, nothing is allowed', () => {
    expect(decide(ruleSet('      []'), 'select 1')).toMatchObject({ action: 'deny', message: 'no rule allows this SELECT statement' });
  });

  it('an unqualified relation counts as public.x for allow and as any schema for deny', () => {
    const r = ruleSet(`
      - { action: deny, match: { relations: [secret.vault] } }
      - { action: allow, match: { statements: [select], relations: ["public.*"] } }`);
    expect(decide(r, 'select * from vault').action).toBe('deny');
    expect(decide(r, 'select * from ledger').action).toBe('allow');
    expect(decide(r, 'select * from other.ledger').action).toBe('deny');
    // pg_catalog is searched first whatever the search_path: pg_authid is not public.pg_authid
    expect(decide(r, 'select * from pg_authid').action).toBe('deny');
    expect(decide(r, 'select * from pg_stat_activity').action).toBe('deny');
  });

  it('a pattern rule is the last resort on the statement text', () => {
    const r = ruleSet(`
      - { action: deny, match: { pattern: "(?:^|\\\\s)pg_sleep\\\\(" } }
      - { action: allow, match: { statements: [select] } }`);
    expect(decide(r, 'select pg_sleep(1)').action).toBe('deny');
    expect(decide(r, 'select 1').action).toBe('allow');
  });
});
