/**
 * How a denied command is refused without the session losing step with the server:
 * the command is replaced by one that makes the server itself raise our error
 * (SQLSTATE 42501, our message). The server then does everything a real error does:
 * the ErrorResponse in the right place of a pipeline, skipping to Sync in the
 * extended protocol, failing an open transaction, the right ReadyForQuery status.
 */
import { randomBytes } from 'node:crypto';
import { serialize } from 'pg-protocol';

export const DENIED_SQLSTATE = '42501';

/** DO block raising `message`; dollar-quote tags chosen so no text can close them early. */
export function raiseSql(message: string, detail?: string): string {
  let tag = 'il';
  while (message.includes(`$${tag}$`) || detail?.includes(`$${tag}$`)) tag = `il${randomBytes(4).toString('hex')}`;
  const q = (s: string) => `$${tag}$${s}$${tag}$`;
  const outer = `${tag}x`;
  const detailPart = detail ? `, DETAIL = ${q(detail)}` : '';
  return `DO $${outer}$BEGIN RAISE EXCEPTION USING ERRCODE = '${DENIED_SQLSTATE}', MESSAGE = ${q(message)}${detailPart}; END$${outer}$`;
}

/** In place of a simple Query (or a FunctionCall, whose reply has the same shape). */
export function deniedQuery(message: string, detail?: string): Buffer {
  return serialize.query(raiseSql(message, detail));
}

/**
 * In place of a Parse: run the raising statement at once (unnamed), so the error
 * comes where the client expects Parse's answer and the server skips to Sync.
 */
export function deniedParse(message: string, detail?: string): Buffer {
  return Buffer.concat([serialize.parse({ text: raiseSql(message, detail) }), serialize.bind({}), serialize.execute({})]);
}
