/** `interlock run`: the daemon in the foreground. */
import pino from 'pino';
import { loadConfig } from '../config/load.js';
import { constants } from 'node:os';
import { Daemon } from '../daemon/daemon.js';
import { addon } from '../interception/addon.js';

/**
 * A foreground daemon stops (cleanly, redirect kept) when whatever launched it dies:
 * no orphaned proxy keeps serving unsupervised. Under systemd the launcher is PID 1.
 */
function stopWithLauncher(): void {
  const launcher = process.ppid;
  addon().setParentDeathSignal(constants.signals.SIGTERM);
  if (process.ppid !== launcher) process.kill(process.pid, 'SIGTERM'); // it died before we asked
}

export async function runCommand(configFile: string): Promise<number> {
  const config = loadConfig(configFile);
  const log = pino({ level: process.env.INTERLOCK_LOG_LEVEL ?? 'info', base: { svc: 'interlockd' } }, pino.destination({ dest: 2, sync: true }));
  const daemon = new Daemon(config, log);
  stopWithLauncher();
  try {
    await daemon.start();
  } catch (e) {
    // close whatever listeners came up, or they keep a failed daemon alive
    await daemon.stop(0).catch(() => undefined);
    throw e;
  }
  return new Promise(() => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping; the redirect stays attached (agents are refused until restart)');
      // exit, not drain: a half-closed socket of a finished session must not keep us up
      daemon.stop().then(() => process.exit(0), (e) => {
        log.error({ err: e }, 'stop failed');
        process.exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
