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
  const log = pino({ level: process.env.INTERLOCK_LOG_LEVEL ?? 'info', base: { svc: 'interlockd' } }, pino.destination(2));
  const daemon = new Daemon(config, log);
  stopWithLauncher();
  await daemon.start();
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping; the redirect stays attached (agents are refused until restart)');
      daemon.stop().then(() => resolve(0), (e) => {
        log.error({ err: e }, 'stop failed');
        resolve(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
