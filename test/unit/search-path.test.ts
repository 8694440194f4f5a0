import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeQuery, initAnalysis } from '../../src/policy/analysis.js';
import {
  ANY_SCHEMA, LOGIN_PATHS, functionSchemas, parseSearchPath, pathsInEffect, relationSchemas, resolveRelation, type SearchPath,
} from '../../src/policy/search-path.js';
import { SessionSearchPath } from '../../src/protocols/postgres/search-path-state.js';
import type { RuleSet } from '../../src/policy/rules.js';
import { sqlRules } from '../helpers/policies.js';

beforeAll(() => initAnalysis());

describe('parseSearchPath', () => {
  it('splits as PostgreSQL does: commas, blanks, quotes, folding', () => {
    expect(parseSearchPath('')).toEqual([]);
    expect(parseSearchPath('  ')).toEqual([]);
    expect(parseSearchPath(' public , "$user",PRIVATE')).toEqual(['public', '$user', 'private']);
    expect(parseSearchPath('"My Schema", "a""b", pg_temp')).toEqual(['My Schema', 'a"b', 'pg_temp']);
    expect(parseSearchPath('""')).toEqual(['']);
    expect(parseSearchPath('x'.repeat(70))).toEqual(['x'.repeat(63)]);
    expect(parseSearchPath('"' + 'é'.repeat(40) + '"')).toEqual(['é'.repeat(31)]); // 63 bytes, cut between characters
  });

  it('rejects what the server rejects', () => {
    for (const bad of ['a,,b', 'a,', ',a', '"open', 'a b', 'a "b"']) expect(parseSearchPath(bad), bad).toBeUndefined();
  });
});

describe('where an unqualified name may resolve', () => {
  it('relations: pg_catalog first unless listed; pg_* names in pg_catalog; pg_temp adds nothing', () => {
    expect(relationSchemas(['public'], 'orders')).toEqual(['public']);
    expect(relationSchemas(['public'], 'pg_class')).toEqual(['pg_catalog']);
    expect(relationSchemas([], 'orders')).toEqual(['pg_catalog']);
    expect(relationSchemas(['a', 'b'], 'orders')).toEqual(['a', 'b']);
    expect(relationSchemas(['a', 'pg_catalog', 'b'], 'pg_class')).toEqual(['a', 'pg_catalog']);
    expect(relationSchemas(['pg_temp', 'a'], 'orders')).toEqual(['a']);
    expect(relationSchemas(['$user', 'public'], 'orders')).toEqual([ANY_SCHEMA, 'public']);
  });

  it('functions: every schema of the path, pg_catalog included', () => {
    expect(functionSchemas(['public'])).toEqual(['pg_catalog', 'public']);
    expect(functionSchemas([])).toEqual(['pg_catalog']);
    expect(functionSchemas(['a', 'pg_catalog'])).toEqual(['a', 'pg_catalog']);
  });

  it('a COPY table: the first schema holding it, the same under every possible path', () => {
    const tables = new Set(['public.customers', 'private.customers', 'private.secrets']);
    const has = (q: string) => tables.has(q);
    expect(resolveRelation([['public']], 'customers', has)).toBe('public.customers');
    expect(resolveRelation([['private', 'public']], 'customers', has)).toBe('private.customers');
    expect(resolveRelation([['public'], ['private']], 'customers', has)).toBeUndefined();
    expect(resolveRelation([['public']], 'later', has)).toBe('public.later'); // not in the catalog: the only candidate
    expect(resolveRelation([['a', 'b']], 'later', has)).toBeUndefined();
    expect(resolveRelation([['$user', 'private']], 'secrets', has)).toBeUndefined();
  });

  it('the login path alone is keyed by nothing', () => {
    expect(pathsInEffect([['public']]).key).toBe('');
    expect(pathsInEffect([['public']], [['x']]).key).not.toBe('');
    expect(LOGIN_PATHS.key).toBe('');
  });
});

describe('what statements do to search_path', () => {
  const effects = (sql: string) => analyzeQuery(sql).statements.map((s) => s.pathEffects);
  it('SET, SET LOCAL, RESET, DEFAULT, RESET ALL, DISCARD ALL, set_config()', () => {
    expect(effects("set search_path = a, \"B\", 'c d', 1")).toEqual([[{ kind: 'set', path: ['a', 'B', 'c d', '1'], local: false }]]);
    expect(effects('SET SESSION search_path TO x')).toEqual([[{ kind: 'set', path: ['x'], local: false }]]);
    expect(effects('set local search_path = x')).toEqual([[{ kind: 'set', path: ['x'], local: true }]]);
    for (const sql of ['reset search_path', 'set search_path to default', 'reset all', 'discard all']) {
      expect(effects(sql), sql).toEqual([[{ kind: 'set', path: ['public'], local: false }]]);
    }
    expect(effects("SELECT pg_catalog.set_config('search_path', '', false)")).toEqual([[{ kind: 'set', path: [], local: false }]]);
    expect(effects("select SET_CONFIG('search_path', 'a, \"$user\"', 'on')")).toEqual([[{ kind: 'set', path: ['a', '$user'], local: true }]]);
    expect(effects('begin; commit and chain; rollback; savepoint s; rollback to s; release s')).toEqual([
      [{ kind: 'begin' }], [{ kind: 'end', rollback: false, chain: true }], [{ kind: 'end', rollback: true, chain: false }],
      [{ kind: 'savepoint', name: 's' }], [{ kind: 'rollback_to', name: 's' }], [{ kind: 'release', name: 's' }],
    ]);
    expect(effects('prepare p as select * from t')).toEqual([[{ kind: 'prepare', unqualified: true }]]);
    expect(effects('select 1; set work_mem = 1')).toEqual([[], []]);
  });

  it("pg_dump's read of one setting by name is a SET of that setting, not of search_path", () => {
    const [s] = analyzeQuery("SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'").statements;
    expect(s).toMatchObject({ settings: ['restrict_nonsystem_relation_kind'], pathEffects: [], assumesCatalogFirst: true, kinds: ['set', 'select'] });
    expect(s!.pathRefusal).toBeUndefined();
    const [sp] = analyzeQuery("SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'search_path'").statements;
    expect(sp!.pathRefusal).toContain('as a statement of its own');
    const [other] = analyzeQuery("SELECT set_config(name, 'x', false) FROM pg_settings WHERE name <> 'work_mem'").statements;
    expect(other!.pathRefusal).toContain('not a literal');
  });
});

/** A session's path state, driven as the session drives it: each query judged, sent, answered. */
class Driver {
  readonly state = new SessionSearchPath();
  constructor(private readonly rules: RuleSet) {}

  /** Runs a simple Query; returns its verdict's action (or the state's refusal) */
  query(sql: string, answer: { status?: 'I' | 'T' | 'E'; error?: boolean } = {}): string {
    this.state.clientMessage(0x51);
    const v = this.rules.decideText(sql, this.state.pathsFor('simple'));
    const refusal = v.decision.action === 'deny' ? undefined : this.state.admit(v, 'simple');
    if (answer.error || refusal || v.decision.action === 'deny') this.state.serverMessage(0x45, Buffer.alloc(0));
    this.state.serverMessage(0x5a, Buffer.from(answer.status ?? 'I'));
    return refusal ? `refused: ${refusal}` : v.decision.action;
  }

  parse(sql: string, name?: string): string {
    const v = this.rules.decideText(sql, this.state.pathsFor('extended'));
    const refusal = v.decision.action === 'deny' ? undefined : this.state.admit(v, 'extended', name);
    return refusal ? `refused: ${refusal}` : v.decision.action;
  }

  get paths(): readonly SearchPath[] {
    return this.state.pathsFor('simple').current;
  }
}

describe('SessionSearchPath', () => {
  const rules = () => sqlRules(`
      - { action: allow, match: { statements: [select], relations: ["private.*"] } }
      - { action: allow, match: { statements: [set, transaction, other] } }
      - { action: allow, match: { statements: [select], relations: ["public.*"], functions: [] } }`);

  it('follows a SET once the server is idle again; RESET and DISCARD ALL go back to the login path', () => {
    const d = new Driver(rules());
    expect(d.paths).toEqual([['public']]);
    d.query('set search_path = private');
    expect(d.paths).toEqual([['private']]);
    d.query('reset search_path');
    expect(d.paths).toEqual([['public']]);
    d.query("select pg_catalog.set_config('search_path', 'private', false)");
    d.query('discard all');
    expect(d.paths).toEqual([['public']]);
    expect(d.state.pathsFor('simple')).toBe(LOGIN_PATHS); // back to the cheap key
  });

  it('keeps both paths while a failed SET may or may not have taken effect', () => {
    const d = new Driver(rules());
    d.query('set search_path = private', { error: true });
    expect(new Set(d.paths)).toEqual(new Set([['public'], ['private']]));
    // a later SET that surely ran settles it
    d.query('set search_path = private');
    expect(d.paths).toEqual([['private']]);
  });

  it('ROLLBACK undoes a SET made in the transaction; SET LOCAL lasts until the transaction ends', () => {
    const d = new Driver(rules());
    d.query('begin', { status: 'T' });
    d.query('set search_path = private', { status: 'T' });
    expect(d.paths).toEqual([['private']]);
    // inside the transaction, a rollback in the same query returns to the path before it
    expect(d.state.pathsFor('simple').fallback).toContainEqual(['public']);
    d.query('rollback');
    expect(d.paths).toEqual([['public']]);

    d.query('begin; set local search_path = private', { status: 'T' });
    expect(d.paths).toEqual([['private']]);
    d.query('commit');
    expect(d.paths).toEqual([['public']]);

    d.query('set local search_path = private'); // outside a transaction: no effect
    expect(d.paths).toEqual([['public']]);
    d.query('begin; set search_path = private; commit');
    expect(d.paths).toEqual([['private']]);
  });

  it('a failed transaction may have left any path it passed through', () => {
    const d = new Driver(rules());
    d.query('begin', { status: 'T' });
    d.query('set search_path = private', { status: 'T' });
    d.query('select 1/0', { status: 'E', error: true });
    d.query('rollback');
    expect(new Set(d.paths)).toEqual(new Set([['public'], ['private']]));
    expect(d.query('select * from secrets')).toBe('deny'); // public.secrets and private.secrets: no rule covers both
  });

  it('judges pipelined queries under every path, and settles only when all are answered', () => {
    const d = new Driver(rules());
    const s = d.state;
    s.clientMessage(0x51);
    s.admit(rules().decideText('set search_path = private', s.pathsFor('simple')), 'simple');
    s.clientMessage(0x51); // a second query sent before the first is answered
    expect(new Set(s.pathsFor('simple').current)).toEqual(new Set([['public'], ['private']]));
    s.serverMessage(0x5a, Buffer.from('I'));
    expect(s.pathsFor('simple').current.length).toBe(2);
    s.serverMessage(0x5a, Buffer.from('I'));
    expect(s.pathsFor('simple').current).toEqual([['private']]);
  });

  it('refuses a path change while a prepared statement judged under another path exists', () => {
    const d = new Driver(rules());
    expect(d.query('prepare q as select * from secrets')).toBe('allow');
    expect(d.query('set search_path = private')).toContain('refused: search_path cannot change here');
    expect(d.paths).toEqual([['public']]);
    expect(d.query('set search_path = public')).toBe('allow'); // the path it was judged under
    const e = new Driver(rules());
    expect(e.parse('select * from secrets', 'named')).toBe('allow');
    expect(e.query('set search_path = private')).toContain('refused');
    // fully qualified statements do not hold the path
    const f = new Driver(rules());
    f.query('prepare q as select * from public.secrets');
    expect(f.query('set search_path = private')).toBe('allow');
  });

  it('extended protocol: a path change is refused, a reset keeps the login path possible for good', () => {
    const d = new Driver(rules());
    expect(d.parse('set search_path = private')).toContain('refused: search_path can only be changed by a simple query');
    d.query('set search_path = private');
    expect(d.parse('reset all', 'r')).toBe('allow');
    d.query('select 1');
    expect(new Set(d.paths)).toEqual(new Set([['public'], ['private']]));
  });
});
