/**
 * Playback of an SSH terminal recording: what the agent's terminal showed, at the pace it
 * showed it (or faster). The caller supplies the output and, for tests, the clock.
 */
import type { DataEvent, Recording } from '../events.js';

export interface TerminalPlaybackOptions {
  /** 2 plays twice as fast; default 1 */
  speed?: number;
  /** no waits at all */
  instant?: boolean;
  write: (text: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * The longest single pause. An agent's session can sit idle for minutes between commands;
 * replaying that silence shows nothing, so each gap is cut to this after the speed is applied.
 */
export const MAX_PLAYBACK_WAIT_MS = 5000;

export async function playTerminal(rec: Recording, opts: TerminalPlaybackOptions): Promise<void> {
  requireSsh(rec, 'terminal playback');
  const speed = opts.speed ?? 1;
  if (!(speed > 0) || !Number.isFinite(speed)) throw new RangeError(`playback speed must be a positive number, not ${speed}`);
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const decoders = new TerminalDecoders();
  let clock = 0;
  for (const event of rec.events) {
    if (event.k !== 'out') continue;
    if (!opts.instant) {
      const wait = Math.min((event.t - clock) / speed, MAX_PLAYBACK_WAIT_MS);
      if (wait > 0) await sleep(wait);
    }
    clock = event.t;
    const text = decoders.text(event);
    if (text) opts.write(text);
  }
  const rest = decoders.flush();
  if (rest) opts.write(rest);
}

/**
 * UTF-8 text per channel and direction. A character can be split across two events, so
 * each stream keeps its own decoder state rather than decoding events one by one.
 */
export class TerminalDecoders {
  private readonly decoders = new Map<string, TextDecoder>();

  text(event: DataEvent): string {
    const key = `${event.k}:${event.ch ?? 0}`;
    let decoder = this.decoders.get(key);
    if (!decoder) this.decoders.set(key, (decoder = new TextDecoder('utf-8')));
    return decoder.decode(event.b, { stream: true });
  }

  /** whatever incomplete characters are left at the end, as replacement characters */
  flush(): string {
    let out = '';
    for (const d of this.decoders.values()) out += d.decode();
    return out;
  }
}

/** Terminal playback and asciicast only make sense for SSH sessions. */
export function requireSsh(rec: Recording, what: string): void {
  const protocol = rec.start?.protocol;
  if (protocol !== 'ssh') {
    throw new Error(`${what} needs an SSH recording; session ${rec.id} is ${protocol ? `a ${protocol} session` : 'of unknown protocol (its start event is missing)'}`);
  }
}
