/**
 * `interlock policy check --workload W --target T [--database D] [--offline] [--json] "SQL"`:
 * what interlock does with a SQL text for a workload on a PostgreSQL target, for people
 * writing policies. The policies are the ones the daemon would pick for that workload; the
 * catalog is read from the live target with the vaulted credential when column rules need
 * it (and it can be reached), as a session reads it at login.
 *
 * Exit status: 0 allowed, 3 refused (a rule, no rule, or column masking), 4 held for
 * approval, 2 usage or config error.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import type { InterlockConfig, PostgresTargetDef, WorkloadDef } from '../config/types.js';
import { compileEnforcement, maskingRuleNames } from '../daemon/enforcement.js';
import { formatEndpoint } from '../interception/layout.js';
import { policiesFor } from '../policy/access.js';
import { initAnalysis } from '../policy/analysis.js';
import { fetchCatalog } from '../protocols/postgres/catalog-fetch.js';
import type { CommandContext } from './main.js';
import { checkReport, type CatalogOutcome } from './policy-report.js';
import { renderReport } from './policy-report-text.js';
import { UsageError } from './usage-error.js';

export const CHECK_EXIT = { allow: 0, deny: 3, approve: 4 } as const;

export async function policyCommand(ctx: CommandContext): Promise<number> {
  const [sub, ...args] = ctx.positionals;
  if (sub !== 'check') throw new UsageError('policy needs check --workload W --target T "SQL"');
  if (args.length !== 1) throw new UsageError('policy check needs the SQL text as one argument ("-" reads it from standard input)');
  const sql = args[0] === '-' ? readFileSync(0, 'utf8') : args[0]!;
  const config = loadConfig(ctx.configFile);
  const workload = pickWorkload(config, ctx.values.workload);
  const target = pickTarget(config, ctx.values.target);
  const database = databaseOf(target, ctx.values.database);

  // the workload's configured groups; groups its IdP adds at run time cannot be known here
  const policies = policiesFor(config.policies, { workload: workload.name, groups: workload.groups, uid: -1 }, target.name);
  await initAnalysis();
  // hashed values are never shown here: any key will do
  const enforcement = compileEnforcement(policies, randomBytes(32));
  // as a session: the catalog is read for column rules and for the policy's judgement of function calls
  const catalog: CatalogOutcome = !enforcement.masker.hasColumnRules && !enforcement.judge.judgesFunctions
    ? { notNeeded: true }
    : ctx.values.offline === true
      ? { missing: '--offline' }
      : await readCatalog(target, database, config.limits.upstreamConnectTimeoutMs);

  const report = checkReport(sql, {
    workload: workload.name, target: target.name, address: formatEndpoint(target.address.host, target.address.port), policies: policies.map((p) => p.name),
    enforcement, maskingRuleNames: maskingRuleNames(policies), catalog, approvals: config.approvals !== undefined,
    notes: workload.oidc ? [`groups from ${workload.name}'s identity provider are not included: only its configured groups (${workload.groups.join(', ') || 'none'}) pick policies here`] : [],
  });
  process.stdout.write(ctx.values.json === true ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
  return CHECK_EXIT[report.decision.action];
}

async function readCatalog(target: PostgresTargetDef, database: string, timeoutMs: number): Promise<CatalogOutcome> {
  const { host, port } = target.upstream;
  const where = `${target.name} (${host}:${port}, database ${database})`;
  try {
    return { catalog: await fetchCatalog(target, { database, timeoutMs }), from: where };
  } catch (e) {
    return { missing: `cannot read it from ${where}: ${(e as Error).message}` };
  }
}

function pickWorkload(config: InterlockConfig, name: unknown): WorkloadDef {
  const w = typeof name === 'string' ? config.workloads.find((x) => x.name === name) : undefined;
  if (!w) throw new UsageError(`policy check needs --workload NAME, one of: ${config.workloads.map((x) => x.name).join(', ') || '(no workloads in the config)'}`);
  return w;
}

function pickTarget(config: InterlockConfig, name: unknown): PostgresTargetDef {
  const pg = config.targets.filter((t): t is PostgresTargetDef => t.protocol === 'postgres');
  const t = typeof name === 'string' ? pg.find((x) => x.name === name) : undefined;
  if (!t) throw new UsageError(`policy check needs --target NAME of a PostgreSQL target, one of: ${pg.map((x) => x.name).join(', ') || '(none in the config)'}`);
  return t;
}

/** The database a session would read: the one the target serves, else the one asked for, else the user's. */
function databaseOf(target: PostgresTargetDef, asked: unknown): string {
  const served = target.upstream.database;
  if (typeof asked === 'string' && served !== undefined && asked !== served) {
    throw new UsageError(`target ${target.name} serves database "${served}" only`);
  }
  return served ?? (typeof asked === 'string' ? asked : target.upstream.user);
}
