/**
 * The recording disk fills up (a 256 KiB tmpfs). In both configured behaviours
 * (recording.onBackpressure: end | block) no session may go on unrecorded: the one that
 * fills the disk is ended with a clear error and an audit event, one that starts on a
 * full disk runs nothing, every file left behind verifies, and once there is space
 * again sessions are served and recorded as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, rmdirSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bpfGate } from '../helpers/bpf-gate.js';
import { E2EEnv } from '../helpers/e2e-env.js';
import { cli, readAudit, waitForAudit } from '../helpers/daemon.js';
import { loadRecordingKey } from '../../src/recording/key.js';
import { readRecording, recordingFile } from '../../src/recording/store.js';

const enabled = bpfGate();

/** about 1 MB of rows, the last one marked: more than the whole disk */
const BIG_RESULT = "SELECT repeat('x', 1000) || '_' || g AS r FROM generate_series(1, 1000) g UNION ALL SELECT 'last_row_marker'";

describe.skipIf(!enabled).each([
  { mode: 'end', port: 25462 },
  { mode: 'block', port: 25472 },
])('recording onto a full disk (onBackpressure: $mode)', ({ mode, port }) => {
  const disk = enabled ? mkdtempSync('/tmp/interlock-disk-full-') : '';
  const filler = join(disk, 'filler');
  const env = new E2EEnv({
    name: `disk-full-${mode}`,
    proxyPort: port,
    pgHost: '127.0.0.13',
    recordingsDir: disk,
    rules: '      - { action: allow, match: { statements: [select] } }',
    // block: a small buffer, so the disk falling behind holds the session (then fills up)
    recording: `  flush: { ms: 50, bytes: 16384 }\n${mode === 'block' ? '  bufferBytes: 64KiB\n' : ''}  onBackpressure: ${mode}`,
  });
  const key = () => loadRecordingKey(env.recordingKey, { create: false });
  const free = () => {
    const s = statfsSync(disk);
    return s.bavail * s.bsize;
  };
  const sessionOf = async (pid: number) =>
    String((await waitForAudit(env.auditFile, (l) => l.event === 'session.start' && l.pid === pid)).session);

  beforeAll(async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', disk]);
    await env.start();
  });
  afterAll(async () => {
    await env.stop();
    execFileSync('umount', [disk]);
    rmdirSync(disk);
  });

  it('ends the session that fills the disk, runs nothing on a full one, serves again once there is space', { timeout: 60_000 }, async () => {
    // a small session fits, and is recorded whole
    const small = await env.psql("SELECT 'small_ok'");
    expect(small.stdout.trim()).toBe('small_ok');

    // a result larger than the block mode's buffer, on a disk with room: the disk falls
    // behind (with `end` and this buffer the session is ended), the session is held and goes on; all of it recorded
    const wide = await env.psql("SELECT repeat('y', 1000) || '_' || g FROM generate_series(1, 150) g UNION ALL SELECT 'wide_done'");
    expect(wide.code, wide.stderr).toBe(0);
    expect(wide.stdout).toContain('wide_done');
    const wideId = await sessionOf(wide.pid);
    await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === wideId);
    await new Promise((r) => setTimeout(r, 300));
    const wideRec = readRecording(env.recordingsDir, wideId, key());
    expect(wideRec).toMatchObject({ sealed: true, problems: [] });
    expect(wideRec.end?.rows).toBe(151);

    // leave a little room, then a result larger than the disk, and more statements after it
    writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 96 * 1024)));
    const big = await env.psql([BIG_RESULT, 'SELECT pg_sleep(1)', "SELECT 'after_big'"]);
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/FATAL: +interlock ended this session: its recording cannot be kept \(cannot write .*ENOSPC\)/);
    expect(big.stdout).not.toContain('after_big');
    const bigId = await sessionOf(big.pid);
    const bigEnd = await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === bigId);
    expect(String(bigEnd.reason)).toMatch(/ENOSPC/);
    await waitForAudit(env.auditFile, (l) => l.event === 'recording.failed' && l.session === bigId && /ENOSPC/.test(String(l.why)));
    // the server never got the statement after the failure: the session did not go on unrecorded
    expect(env.pg.log()).not.toMatch(/statement: SELECT 'after_big'/);

    // fill what cutting the torn chunk off gave back: a new session must not run its statement
    try {
      writeFileSync(join(disk, 'filler-2'), Buffer.alloc(free()));
    } catch {
      // full before the last byte: all the better
    }
    expect(free()).toBeLessThan(4096);
    const blind = await env.psql("SELECT 'while_full'");
    expect(blind.code).not.toBe(0);
    expect(blind.stdout).not.toContain('while_full');
    expect(blind.stderr).toMatch(/recording cannot be kept \(cannot write .*ENOSPC\)/);
    const blindId = await sessionOf(blind.pid);
    await waitForAudit(env.auditFile, (l) => l.event === 'recording.failed' && l.session === blindId);
    expect(env.pg.log()).not.toMatch(/statement: SELECT 'while_full'/);
    expect(existsSync(recordingFile(disk, blindId))).toBe(false); // nothing of it could be written: no empty shell

    // room again: served and recorded as ever
    rmSync(filler);
    rmSync(join(disk, 'filler-2'), { force: true });
    const again = await env.psql("SELECT 'space_again'");
    expect(again.stdout.trim()).toBe('space_again');
    const againId = await sessionOf(again.pid);
    await waitForAudit(env.auditFile, (l) => l.event === 'session.end' && l.session === againId);
    await new Promise((r) => setTimeout(r, 300));
    expect(readRecording(env.recordingsDir, againId, key())).toMatchObject({ sealed: true, problems: [] });

    // what the full disk left behind is incomplete, never corrupt
    const verify = cli(['verify', '--all', '--config', env.configFile]);
    expect(verify.stdout).toMatch(/0 failed verification/);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.stdout).toContain(`${bigId}: intact but incomplete`);
    expect(readAudit(env.auditFile).filter((l) => l.event === 'session.start')).toHaveLength(5);
  });
});
