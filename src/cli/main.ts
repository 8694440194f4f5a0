#!/usr/bin/env node
/** The `interlock` command. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../config/load.js';
import { runCommand } from './run.js';
import { detachCommand } from './detach.js';
import { doctorCommand } from './doctor.js';
import { statusCommand } from './status.js';
import { sshKnownHostsCommand } from './ssh-known-hosts.js';
import { kubeconfigCommand } from './kubeconfig.js';
import { UsageError } from './usage-error.js';

export const DEFAULT_CONFIG = '/etc/interlock/interlock.yaml';

const USAGE = `usage: interlock <command> [options] [--config FILE]

  run       attach the redirect and serve agents (foreground; SIGTERM stops, redirect stays)
  status    what is attached, the targets, live sessions
  detach    remove the redirect: agents' connections go direct again
  doctor    check kernel, BPF, BTF, cgroup2, bpffs and privileges
  ssh-known-hosts   the known_hosts lines agents need to trust the node for SSH targets
  kubeconfig --target NAME   a credential-free kubeconfig for agents that trusts the node CA

  sessions list [--workload W] [--target T] [--since 24h]   recorded sessions
  sessions show ID                                         one session: who, what, decisions
  replay ID [--speed N | --instant]                        what the agent did and saw
  verify ID | --all                                        check recordings' hash chain and HMACs
  export ID --format jsonl|asciicast                       a recording in a standard format
  review [--since 30d] [--format md|html]                  access review with a suggested policy

  policy check --workload W --target T [--database D] [--offline] [--json] "SQL"
                                                           what interlock does with SQL: kinds, rule, lineage, masking
                                                           (exit 0 allowed, 3 refused, 4 held for approval)

  approvals list | show ID                                 held commands (needs your OIDC login)
  approvals approve ID [--window 30m] | reject ID --reason R   decide one (device flow, or --token-file)

  --config FILE   default ${DEFAULT_CONFIG}
`;

/** What a command gets: its config file (and whether it was named) and its own parsed options. */
export interface CommandContext {
  configFile: string;
  explicit: boolean;
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

interface Command {
  options?: ParseArgsConfig['options'];
  run(ctx: CommandContext): Promise<number>;
}

const configOnly = (fn: (configFile: string, explicit: boolean) => Promise<number>): Command => ({
  run: (ctx) => fn(ctx.configFile, ctx.explicit),
});

const commands: Record<string, Command> = {
  run: configOnly(runCommand),
  status: configOnly(statusCommand),
  detach: configOnly(detachCommand),
  doctor: configOnly(doctorCommand),
  'ssh-known-hosts': configOnly(sshKnownHostsCommand),
  kubeconfig: { options: { target: { type: 'string' } }, run: kubeconfigCommand },
  approvals: {
    options: { window: { type: 'string' }, reason: { type: 'string' }, 'token-file': { type: 'string' }, all: { type: 'boolean' } },
    run: async (ctx) => (await import('./approvals.js')).approvalsCommand(ctx),
  },
  policy: {
    options: { workload: { type: 'string' }, target: { type: 'string' }, database: { type: 'string' }, offline: { type: 'boolean' }, json: { type: 'boolean' } },
    run: async (ctx) => (await import('./policy-check.js')).policyCommand(ctx),
  },
  sessions: { options: { workload: { type: 'string' }, target: { type: 'string' }, since: { type: 'string' } }, run: recordings('sessionsCommand') },
  replay: { options: { speed: { type: 'string' }, instant: { type: 'boolean' } }, run: recordings('replayCommand') },
  verify: { options: { all: { type: 'boolean' } }, run: recordings('verifyCommand') },
  export: { options: { format: { type: 'string' } }, run: recordings('exportCommand') },
  review: { options: { since: { type: 'string' }, format: { type: 'string' } }, run: recordings('reviewCommand') },
};

/** The recording readers load on use: the daemon never needs them. */
function recordings(name: keyof typeof import('./recordings.js')): Command['run'] {
  return async (ctx) => ((await import('./recordings.js'))[name] as (c: CommandContext) => Promise<number>)(ctx);
}

async function main(argv: string[]): Promise<number> {
  const name = argv[0]?.startsWith('-') ? undefined : argv[0];
  const command = name ? commands[name] : undefined;
  if (!name || !command) {
    const help = argv.includes('--help') || argv.includes('-h');
    if (name) process.stderr.write(`interlock: unknown command "${name}"\n`);
    (help && !name ? process.stdout : process.stderr).write(USAGE);
    return help && !name ? 0 : 2;
  }
  const { values, positionals } = parseArgs({
    args: argv.slice(1),
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, ...command.options },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const configFile = (values.config as string | undefined) ?? DEFAULT_CONFIG;
  return command.run({ configFile, explicit: values.config !== undefined, values: values as CommandContext['values'], positionals });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ConfigError) {
      process.stderr.write(`interlock: bad config: ${e.message}\n`);
      process.exitCode = 2;
    } else if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`interlock: ${(e as Error).message}\n${USAGE}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`interlock: ${(e as Error).message}\n`);
      process.exitCode = 1;
    }
  },
);
