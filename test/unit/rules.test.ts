import { beforeAll, describe, expect, it } from 'vitest';
import { initAnalysis } from '../../src/policy/analysis.js';
import { RuleSet } from '../../src/policy/rules.js';
import { pathsInEffect } from '../../src/policy/search-path.js';
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

  it('lets search_path change by a literal SET or a standalone set_config(), and refuses what it could not follow', () => {
    for (const sql of ['set search_path = private, public', 'SET LOCAL search_path TO x', "select pg_catalog.set_config('search_path', 'x', false)", 'reset search_path']) {
      expect(decide(rs, sql).action, sql).toBe('allow');
    }
    for (const [sql, message] of [
      ["select set_config('search_path', $1, false)", 'needs a string literal value'],
      ["select set_config('search_path', 'x' || 'y', false)", 'needs a string literal value'],
      ["select set_config('search_path', (select 'x'), false)", 'needs a string literal value'],
      ["select set_config('search_path', 'x', false) from customers", 'as a statement of its own'],
      ["select set_config('search_path', 'x', false) where false", 'as a statement of its own'],
      ["select 1, set_config('search_path', 'x', false)", 'as a statement of its own'],
      ['select set_config(name, setting, false) from customers', 'not a literal'],
      ["select set_config('search_path', 'a,,b', false)", 'not a valid search_path'],
      ['create function f() returns int language sql set search_path = x as $$ select 1 $$', 'statement of its own'],
    ]) {
      expect(decide(rs, sql!), sql).toMatchObject({ action: 'deny', message: expect.stringContaining(message!) });
    }
    expect(decide(rs, 'set work_mem = 1024').action).toBe('allow');
    // set_config() of another setting is a SET: a select-only policy does not cover it
    expect(rs.decideText("select set_config('work_mem', '1MB', false)").kinds).toEqual(['set']);
    expect(rs.decideText("select set_config('work_mem', '1MB', false) from customers").kinds).toEqual(['set', 'select']);
    expect(decide(ruleSet("      - { action: allow, match: { statements: [select] } }"), "select set_config('work_mem', '1MB', false)").action).toBe('deny');
  });

  it('reads unqualified names under the search_paths it is given, and under the path a statement before it set', () => {
    const r = ruleSet(`
      - { action: allow, match: { statements: [select], relations: ["private.*"], functions: ["pg_catalog.*", "private.*"] } }
      - { action: allow, match: { statements: [set] } }`);
    const priv = pathsInEffect([['private']]);
    expect(decide(r, 'select * from secrets').action).toBe('deny'); // public.secrets
    expect(r.decideText('select * from secrets', priv).decision.action).toBe('allow');
    expect(r.decideText('select now() from secrets', priv).decision.action).toBe('allow');
    expect(r.decideText('select * from public.secrets', priv).decision.action).toBe('deny');
    // every path that may be in effect: an allow rule must cover them all
    expect(r.decideText('select * from secrets', pathsInEffect([['private'], ['public']])).decision.action).toBe('deny');
    // "$user" may be any schema
    expect(r.decideText('select * from secrets', pathsInEffect([['$user', 'private']])).decision.action).toBe('deny');
    // the query's own SET comes first
    expect(decide(r, 'set search_path = private; select * from secrets').action).toBe('allow');
    expect(decide(r, "select pg_catalog.set_config('search_path', 'private', false); select * from secrets").action).toBe('allow');
    expect(r.decideText('set search_path = public; select * from secrets', priv).decision.action).toBe('deny');
    // a transaction's end may return to an earlier path
    const inTransaction = pathsInEffect([['private']], [['public']]);
    expect(r.decideText('select * from secrets', inTransaction).decision.action).toBe('allow');
    expect(r.decideText('rollback; select * from secrets', inTransaction).decision.action).toBe('deny');
    // an unqualified set_config() is pg_catalog's only while pg_catalog is searched first
    expect(r.decideText("select set_config('search_path', 'private', false)", pathsInEffect([['private', 'pg_catalog']])).decision)
      .toMatchObject({ action: 'deny', message: expect.stringContaining('pg_catalog.set_config') });
    expect(r.decideText("select pg_catalog.set_config('search_path', 'private', false)", pathsInEffect([['private', 'pg_catalog']])).decision.action).toBe('allow');
  });

  it('keeps a verdict per search_path: the same text is judged again under another path', () => {
    const r = ruleSet('      - { action: allow, match: { statements: [select], relations: ["public.*"] } }');
    expect(r.decideText('select * from t where id = 1').decision.action).toBe('allow');
    expect(r.decideText('select * from t where id = 2', pathsInEffect([['private']])).decision.action).toBe('deny');
    expect(r.decideText('select * from t where id = 3').decision.action).toBe('allow');
    // set_config()'s literals are never shaped away
    const s = ruleSet(`
      - { action: allow, match: { statements: [select], relations: ["private.*"] } }
      - { action: allow, match: { statements: [set] } }`);
    expect(decide(s, "select pg_catalog.set_config('search_path', 'private', false); select * from secrets").action).toBe('allow');
    expect(decide(s, "select pg_catalog.set_config('search_path', 'public', false); select * from secrets").action).toBe('deny');
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
