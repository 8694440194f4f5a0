#!/usr/bin/env node
/** The `interlock` command. */
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/load.js';
import { runCommand } from './run.js';
import { detachCommand } from './detach.js';
import { doctorCommand } from './doctor.js';
import { statusCommand } from './status.js';

export const DEFAULT_CONFIG = '/etc/interlock/interlock.yaml';

const USAGE = `usage: interlock <command> [--config FILE]

  run      attach the redirect and serve agents (foreground; SIGTERM stops, redirect stays)
  status   what is attached, the targets, live sessions
  detach   remove the redirect: agents' connections go direct again
  doctor   check kernel, BPF, BTF, cgroup2, bpffs and privileges

  --config FILE   default ${DEFAULT_CONFIG}
`;

const commands: Record<string, (configFile: string, explicit: boolean) => Promise<number>> = {
  run: runCommand,
  status: statusCommand,
  detach: detachCommand,
  doctor: doctorCommand,
};

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  const name = positionals[0];
  if (values.help || !name) {
    process.stdout.write(USAGE);
    return name || values.help ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`interlock: unknown command "${name}"\n${USAGE}`);
    return 2;
  }
  return command(values.config ?? DEFAULT_CONFIG, values.config !== undefined);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof ConfigError) {
      process.stderr.write(`interlock: bad config: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`interlock: ${(e as Error).message}\n`);
      process.exitCode = 1;
    }
  },
);
