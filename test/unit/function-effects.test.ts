/**
 * A SELECT that calls a function which may write is a write of its own kind
 * (function_write), by the catalog's volatility; a read-only allow does not cover it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { initAnalysis } from '../../src/policy/analysis.js';
import { catalogFunctionEffects, harmless, UNKNOWN_EFFECTS, type FunctionCatalog } from '../../src/policy/function-effects.js';
import { sqlRules } from '../helpers/policies.js';

const CATALOG: FunctionCatalog = {
  builtinFunctions: new Set(['upper', 'now', 'random', 'nextval', 'setval', 'lo_create', 'pg_advisory_lock', 'count', 'length', 'set_config', 'pg_stat_get_xact_numscans', 'txid_current']),
  otherFunctions: new Set(['bump', 'peek', 'length', 'sneak']),
  volatileBuiltins: new Set(['random', 'nextval', 'setval', 'lo_create', 'pg_advisory_lock', 'set_config', 'pg_stat_get_xact_numscans']),
  volatileOthers: new Set(['bump', 'length']),
  viewDependencies: new Map([
    ['public.bumping', { functions: [['public', 'sneak']], relations: ['public.flags'] }],
    ['public.allowed_bumping', { functions: [['public', 'bump']], relations: ['public.flags'] }],
    ['public.via_bumping', { functions: [], relations: ['public.bumping'] }],
    ['public.plain', { functions: [['pg_catalog', 'upper']], relations: ['public.flags'] }],
  ]),
};
const effects = catalogFunctionEffects(CATALOG);

const readOnly = sqlRules([
  '      - { action: allow, match: { statements: [select], relations: ["public.*"], access: read } }',
  '      - { action: allow, match: { statements: [set, transaction] } }',
  '      - { action: allow, match: { statements: [select, function_write], functions: [bump, count] } }',
].join('\n'), 'analysts');
const decide = (sql: string) => readOnly.decideText(sql, undefined, effects);

beforeAll(() => initAnalysis());

describe('function effects from the catalog', () => {
  it('volatile built-ins write unless they are on the harmless list; stable and immutable ones read', () => {
    expect(effects.writes(undefined, 'nextval')).toBe(true);
    expect(effects.writes('pg_catalog', 'setval')).toBe(true);
    expect(effects.writes(undefined, 'random')).toBe(false);
    expect(effects.writes(undefined, 'pg_stat_get_xact_numscans')).toBe(false);
    expect(effects.writes(undefined, 'upper')).toBe(false);
    expect(harmless('set_config')).toBe(true);
  });

  it('STABLE built-ins that assign a transaction id write', () => {
    expect(effects.writes(undefined, 'txid_current')).toBe(true);
  });

  it('a function outside pg_catalog may write whatever its volatility (a STABLE wrapper may call nextval); so may a shadowed or unknown name', () => {
    expect(effects.writes(undefined, 'bump')).toBe(true);
    expect(effects.writes('public', 'peek')).toBe(true);
    expect(effects.writes(undefined, 'length')).toBe(true); // pg_catalog's is immutable, public's volatile
    expect(effects.writes('pg_catalog', 'length')).toBe(false);
    expect(effects.writes(undefined, 'made_later')).toBe(true);
    expect(effects.writes('pg_catalog', 'no_such_builtin')).toBe(true);
  });

  it('without a catalog every call but the harmless built-ins writes', () => {
    expect(UNKNOWN_EFFECTS.writes(undefined, 'upper')).toBe(true);
    expect(UNKNOWN_EFFECTS.writes(undefined, 'now')).toBe(true);
    expect(UNKNOWN_EFFECTS.writes(undefined, 'random')).toBe(false);
    expect(UNKNOWN_EFFECTS.writes('public', 'random')).toBe(true);
  });

  it('a catalog read without volatility knows nothing', () => {
    expect(catalogFunctionEffects({ builtinFunctions: new Set(['upper']), otherFunctions: new Set() })).toBe(UNKNOWN_EFFECTS);
  });
});

describe('a read-only policy refuses a SELECT that may write, naming the function', () => {
  it.each([
    ["select setval('s', 999)", 'setval()'],
    ["select nextval('s')", 'nextval()'],
    ['select lo_create(0)', 'lo_create()'],
    ['select pg_advisory_lock(1)', 'pg_advisory_lock()'],
    ['select 1 from flags where made_later() > 0', 'made_later()'],
    ['select (select nextval($1)) from flags', 'nextval()'],
  ])('%s', (sql, fn) => {
    const v = decide(sql);
    expect(v.decision.action).toBe('deny');
    expect(v.kinds).toContain('function_write');
    expect(v.decision.message).toContain(fn);
    expect(v.auditJson).toContain(fn);
  });

  it('reads stay reads, and a rule may allow a volatile function by name', () => {
    for (const sql of ['select upper(name), now(), random() from flags', 'select * from plain', 'select count(*) from flags', 'select 1']) {
      expect(decide(sql).decision.action, sql).toBe('allow');
    }
    expect(decide('select bump()').decision).toMatchObject({ action: 'allow', rule: 'analysts#3' });
    expect(decide('select bump(), nextval($1)').decision.action).toBe('deny');
  });

  it('reading a view that calls a function which may write is a write, through other views too', () => {
    for (const sql of ['select * from bumping', 'select 1 from via_bumping', 'select * from public.bumping']) {
      const v = decide(sql);
      expect(v.decision.action, sql).toBe('deny');
      expect(v.decision.message).toMatch(/public\.sneak\(\) \(reading view (public\.)?(via_)?bumping\)/);
    }
    // the function counts as called: a rule allowing it by name covers the view too
    expect(decide('select * from allowed_bumping').decision).toMatchObject({ action: 'allow', rule: 'analysts#3' });
  });

  it('set_config is a SET of its own, not a function write', () => {
    const v = decide("select pg_catalog.set_config('application_name', 'x', false)");
    expect(v.kinds).not.toContain('function_write');
    expect(v.decision.action).toBe('allow');
  });

  it('without effects (no catalog judged) calls are decided as before', () => {
    expect(readOnly.decideText("select nextval('s')").decision.action).toBe('allow');
  });
});

describe('views from the catalog rows, by their parsed definitions', () => {
  it('a view that calls a writing built-in (no pg_depend row: built-ins are pinned) makes reading it a write', async () => {
    const { parseLineageRows } = await import('../../src/protocols/postgres/catalog-lineage.js');
    const { dataRow } = await import('../helpers/fake-postgres.js');
    const row = (...fields: string[]) => dataRow(fields).subarray(5);
    const catalog = parseLineageRows([
      row('fn', '', '', ['1vnextval', '1iupper', '0vbump'].join('\x1f')),
      row('v', 'public', 'ticker', " SELECT nextval('s'::regclass) AS n;"),
      row('v', 'public', 'shout', ' SELECT upper(flags.name) AS u FROM flags;'),
      row('m', 'public', 'snapshot', " SELECT nextval('s'::regclass) AS n;"),
    ], new Map());
    const e = catalogFunctionEffects(catalog);
    expect(e.readWrites('public', 'ticker')).toBe('nextval');
    expect(e.readWrites(undefined, 'ticker')).toBe('nextval');
    expect(e.readWrites('public', 'shout')).toBeUndefined();
    expect(e.readWrites('public', 'snapshot')).toBeUndefined(); // a materialized view does not run its definition when read
    expect(e.writes(undefined, 'bump')).toBe(true);
    expect(e.writes(undefined, 'upper')).toBe(false);
    expect(readOnly.decideText('select * from ticker', undefined, e).decision.message).toContain('nextval() (reading view ticker)');
  });
});
