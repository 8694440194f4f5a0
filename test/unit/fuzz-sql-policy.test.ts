/**
 * Fuzzing SQL analysis and the statement rules: random text and grammar-ish SQL.
 * See test/helpers/fuzz.ts for run counts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { analyzeQuery, initAnalysis } from '../../src/policy/analysis.js';
import { fuzz, FUZZ_TEST_TIMEOUT_MS } from '../helpers/fuzz.js';
import { sqlRules } from '../helpers/policies.js';

const ruleSet = (rules: string) => sqlRules(rules);

/** Reads are fine, plans too; every write waits for a human or is refused. */
const RULES = `
      - { action: deny, match: { functions: [pg_read_file, "lo_*"] } }
      - { action: allow, match: { statements: [select, explain, transaction, set], relations: ["public.*"], access: read } }
      - { action: approve, match: { statements: [update, delete] }, approvers: [dba] }`;

// ---------------------------------------------------------------------------------------------
// grammar-ish SQL: statements from fragments, literals of every shape, joined into messages

const ident = fc.constantFrom('t', 'public.t', 'secret.x', '"Q"', 'pg_class', 'users');
const literal = fc.oneof(
  fc.integer().map(String),
  fc.constantFrom('0', '1', '1.5', '1e3', '.5', '0x1F', '1_000', "'a'", "''", "'it''s'", "E'\\x41'", '$1', '$$x$$', 'true', 'null', "'on'", "'off'"),
  fc.string({ maxLength: 6 }).map((s) => `'${s.replaceAll("'", "''")}'`),
);
const expr = fc.oneof(literal, ident, fc.tuple(fc.constantFrom('pg_read_file', 'lo_import', 'now', 'upper'), literal).map(([f, a]) => `${f}(${a})`));
const select = fc.tuple(expr, ident, expr).map(([e, t, w]) => `select ${e} from ${t} where x = ${w}`);
const write = fc.oneof(
  fc.tuple(ident, expr).map(([t, e]) => `insert into ${t} values (${e})`),
  fc.tuple(ident, expr).map(([t, e]) => `update ${t} set a = ${e}`),
  ident.map((t) => `delete from ${t}`),
  ident.map((t) => `drop table ${t}`),
);
// option values of every form: EXPLAIN runs its statement only when ANALYZE reads as true
const explainOption = fc.tuple(fc.constantFrom('analyze', 'analyze', 'verbose'), fc.constantFrom('', ' 1', ' 0', ' 2', ' true', ' false', " 'on'", " 'off'", ' off'));
const explain = fc.tuple(fc.array(explainOption, { maxLength: 2 }), fc.oneof(select, write)).map(([opts, s]) => (opts.length ? `explain (${opts.map(([o, v]) => o + v).join(', ')}) ${s}` : `explain ${s}`));
const statement = fc.oneof(
  select,
  write,
  { weight: 2, arbitrary: explain },
  fc.constantFrom('begin', 'commit', 'set search_path = x', "set statement_timeout = '1s'", 'show all', "copy t to program 'id'", 'do $$ begin end $$'),
  fc.tuple(expr, select).map(([e, s]) => `with w as (${s}) select ${e} from w`),
);
const noise = fc.constantFrom(' ', '\n', '; ', ' -- c\n', ' /* c */ ', '(', ')', "'", '"', '$', '\\', '\0');
const message = fc.array(statement, { minLength: 1, maxLength: 4, size: 'medium' }).map((stmts) => stmts.join('; '));
/** a message with one character of noise somewhere: quotes, comments, separators cut into it */
const spiced = fc.tuple(message, fc.nat(), noise).map(([sql, at, c]) => sql.slice(0, at % (sql.length + 1)) + c + sql.slice(at % (sql.length + 1)));
const anySql = fc.oneof(
  { weight: 4, arbitrary: message },
  { weight: 2, arbitrary: spiced },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

beforeAll(() => initAnalysis());

describe('SQL policy, fuzzed', () => {
  it('any text: a decision among allow/deny/approve, never a throw; unparsable text is denied', () => {
    const rs = ruleSet(RULES);
    fc.assert(
      fc.property(anySql, (sql) => {
        const v = rs.decideText(sql);
        expect(['allow', 'deny', 'approve']).toContain(v.decision.action);
        expect(typeof v.decision.message).toBe('string');
        const q = analyzeQuery(sql);
        if (q.error) {
          expect(q.statements).toEqual([]);
          expect(rs.decideQuery(q).decision.action).toBe('deny');
        } else {
          for (const s of q.statements) expect(s.kinds.length).toBeGreaterThan(0);
        }
      }),
      fuzz(800),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('the shape cache decides as the exact text would', () => {
    // decideText analyses a literal-free shape so that repeated statements cost a lookup;
    // no literal may change what the statement is allowed to do (a parse error's message may
    // quote the shaped text: only the action and the deciding rule are compared)
    fc.assert(
      fc.property(anySql, (sql) => {
        const rs = ruleSet(RULES);
        const { action, rule } = rs.decideQuery(analyzeQuery(sql)).decision;
        const cached = rs.decideText(sql).decision;
        expect([cached.action, cached.rule]).toEqual([action, rule]);
      }),
      fuzz(1500),
    );
  }, FUZZ_TEST_TIMEOUT_MS);

  it('a verdict does not depend on what was decided before (cache and parser state)', () => {
    fc.assert(
      fc.property(anySql, fc.array(anySql, { maxLength: 4 }), (sql, before) => {
        const fresh = ruleSet(RULES).decideText(sql).decision;
        const warm = ruleSet(RULES);
        for (const other of before) warm.decideText(other);
        expect(warm.decideText(sql).decision).toEqual(fresh);
      }),
      fuzz(300),
    );
  }, FUZZ_TEST_TIMEOUT_MS);
});
