/**
 * Client side of PostgreSQL authentication toward the upstream server: pure (no I/O), fed the
 * payload of each upstream Authentication ('R') message, returns the bytes to send back.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readCString } from './backend.js';

export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthError';
  }
}

export interface AuthStep {
  /** a complete frontend message to send upstream, if any */
  reply?: Buffer;
  /** true once upstream sent AuthenticationOk */
  done: boolean;
}

const AUTH_OK = 0;
const AUTH_CLEARTEXT = 3;
const AUTH_MD5 = 5;
const AUTH_SASL = 10;
const AUTH_SASL_CONTINUE = 11;
const AUTH_SASL_FINAL = 12;
const UNSUPPORTED: Record<number, string> = {
  2: 'Kerberos V5',
  6: 'SCM credential',
  7: 'GSSAPI',
  8: 'GSSAPI',
  9: 'SSPI',
};

type State = 'start' | 'password-sent' | 'scram-first-sent' | 'scram-final-sent' | 'scram-verified' | 'done';

export class UpstreamAuthenticator {
  private state: State = 'start';
  private scram?: ScramSha256Client;

  /** clientNonce is for tests only; by default a fresh random nonce is used. */
  constructor(
    private readonly user: string,
    private readonly password: string | undefined,
    private readonly opts: { clientNonce?: string } = {},
  ) {}

  respond(payload: Buffer): AuthStep {
    if (payload.length < 4) throw new AuthError('truncated authentication message from upstream');
    const code = payload.readInt32BE(0);
    switch (code) {
      case AUTH_OK:
        // After SCRAM started, Ok is only acceptable once the server proved it knows the
        // password (SASLFinal); otherwise an impostor could skip that step.
        if (this.state !== 'start' && this.state !== 'password-sent' && this.state !== 'scram-verified') {
          throw new AuthError(`upstream sent AuthenticationOk ${this.state === 'done' ? 'twice' : 'before completing SCRAM authentication'}`);
        }
        this.state = 'done';
        return { done: true };
      case AUTH_CLEARTEXT:
        this.expect('start', 'cleartext password');
        this.state = 'password-sent';
        return { reply: cstringMessage(this.requirePassword('cleartext password')), done: false };
      case AUTH_MD5: {
        this.expect('start', 'MD5 password');
        if (payload.length !== 8) throw new AuthError('malformed AuthenticationMD5Password from upstream');
        const password = this.requirePassword('MD5 password');
        this.state = 'password-sent';
        return { reply: cstringMessage(md5Password(this.user, password, payload.subarray(4, 8))), done: false };
      }
      case AUTH_SASL: {
        this.expect('start', 'SASL');
        const mechanisms = readMechanisms(payload);
        if (!mechanisms.includes('SCRAM-SHA-256')) {
          const which = mechanisms.includes('SCRAM-SHA-256-PLUS')
            ? 'only SCRAM-SHA-256-PLUS (channel binding), which Interlock does not support'
            : `unsupported SASL mechanisms: ${mechanisms.join(', ') || '(none)'}`;
          throw new AuthError(`upstream offered ${which}`);
        }
        const password = this.requirePassword('SCRAM-SHA-256');
        this.scram = new ScramSha256Client(password, { nonce: this.opts.clientNonce });
        this.state = 'scram-first-sent';
        return { reply: saslInitialResponse('SCRAM-SHA-256', this.scram.clientFirstMessage), done: false };
      }
      case AUTH_SASL_CONTINUE: {
        this.expect('scram-first-sent', 'SASLContinue');
        const clientFinal = this.scram!.clientFinal(payload.toString('utf8', 4));
        this.state = 'scram-final-sent';
        return { reply: pMessage(Buffer.from(clientFinal)), done: false };
      }
      case AUTH_SASL_FINAL:
        this.expect('scram-final-sent', 'SASLFinal');
        this.scram!.verifyServerFinal(payload.toString('utf8', 4));
        this.state = 'scram-verified';
        return { done: false };
      default: {
        const name = UNSUPPORTED[code] ?? `unknown (code ${code})`;
        throw new AuthError(`upstream requires ${name} authentication, which Interlock does not support`);
      }
    }
  }

  private expect(state: State, what: string): void {
    if (this.state !== state) throw new AuthError(`unexpected ${what} request from upstream during authentication`);
  }

  private requirePassword(method: string): string {
    // Like libpq, an empty password counts as none.
    if (!this.password) {
      throw new AuthError(`upstream asked for a password (${method}) but the target has none configured`);
    }
    return this.password;
  }
}

/** "md5" + md5(md5(password + user) + salt), hex digests, as PasswordMessage expects. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password).update(user).digest('hex');
  return 'md5' + createHash('md5').update(inner).update(salt).digest('hex');
}

const GS2_HEADER = 'n,,'; // no channel binding, no authzid
const CHANNEL_BINDING = Buffer.from(GS2_HEADER).toString('base64'); // "biws"
/** A hostile server could ask for billions of iterations to stall the (synchronous) proxy. */
const MAX_ITERATIONS = 1_000_000;

/** SCRAM-SHA-256 client (RFC 5802 / RFC 7677), without channel binding. */
export class ScramSha256Client {
  readonly clientFirstMessage: string;
  private readonly nonce: string;
  private readonly clientFirstBare: string;
  private serverSignature?: Buffer;

  /**
   * username defaults to empty: PostgreSQL ignores it and uses the startup user. Both options
   * exist so tests can reproduce the RFC 7677 vector.
   */
  constructor(
    private readonly password: string,
    opts: { username?: string; nonce?: string } = {},
  ) {
    this.nonce = opts.nonce ?? randomBytes(18).toString('base64');
    const username = (opts.username ?? '').replaceAll('=', '=3D').replaceAll(',', '=2C');
    this.clientFirstBare = `n=${username},r=${this.nonce}`;
    this.clientFirstMessage = GS2_HEADER + this.clientFirstBare;
  }

  /** Takes server-first-message, returns client-final-message (with the proof). */
  clientFinal(serverFirst: string): string {
    const attrs = scramAttributes(serverFirst);
    if (attrs.m !== undefined) throw new AuthError('upstream SCRAM requires an unsupported extension');
    const { r: nonce, s: saltB64, i: iterText } = attrs;
    if (!nonce || !nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) {
      throw new AuthError('upstream SCRAM nonce does not extend the client nonce');
    }
    const salt = Buffer.from(saltB64 ?? '', 'base64');
    const iterations = Number(iterText);
    if (salt.length === 0 || !/^[1-9][0-9]*$/.test(iterText ?? '') || iterations > MAX_ITERATIONS) {
      throw new AuthError('malformed or excessive SCRAM salt/iteration count from upstream');
    }
    const salted = saltedPassword(this.password, salt, iterations);
    const clientKey = hmac(salted, 'Client Key');
    const withoutProof = `c=${CHANNEL_BINDING},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(createHash('sha256').update(clientKey).digest(), authMessage);
    for (let i = 0; i < clientKey.length; i++) clientKey[i] ^= signature[i]; // clientKey becomes the proof
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${clientKey.toString('base64')}`;
  }

  /** Throws unless server-final-message proves the server knows the password. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = scramAttributes(serverFinal);
    if (attrs.e !== undefined) throw new AuthError(`upstream SCRAM authentication failed: ${attrs.e}`);
    if (!this.serverSignature) throw new AuthError('SCRAM server-final before client-final');
    const got = Buffer.from(attrs.v ?? '', 'base64');
    if (got.length !== this.serverSignature.length || !timingSafeEqual(got, this.serverSignature)) {
      throw new AuthError('upstream SCRAM server signature is wrong: the server is not who it claims to be');
    }
  }
}

function scramAttributes(message: string): Record<string, string | undefined> {
  const attrs: Record<string, string | undefined> = {};
  for (const part of message.split(',')) {
    if (!/^[a-zA-Z]=/.test(part)) throw new AuthError('malformed SCRAM message from upstream');
    attrs[part[0]] ??= part.slice(2);
  }
  return attrs;
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * PBKDF2 is deliberately slow (~ms at PostgreSQL's 4096 iterations) and blocks the event loop, so
 * results are memoised: a role's salt and iteration count don't change between logins.
 */
const saltedCache = new Map<string, Buffer>();
function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  const key = createHash('sha256').update(password).update('\0').update(salt).update(`\0${iterations}`).digest('base64');
  let salted = saltedCache.get(key);
  if (!salted) {
    salted = pbkdf2Sync(saslPrep(password), salt, iterations, 32, 'sha256');
    if (saltedCache.size >= 64) saltedCache.delete(saltedCache.keys().next().value!);
    saltedCache.set(key, salted);
  }
  return salted;
}

/**
 * SASLprep (RFC 4013) as PostgreSQL applies it: ASCII passwords are used as-is; otherwise map
 * non-ASCII spaces to ' ', drop "mapped to nothing" characters, NFKC-normalise; if the result
 * holds a prohibited character the server falls back to the raw password, and so do we.
 * Limit: the unassigned-code-point (Unicode 3.2) and bidi checks are not done, so a password
 * that fails only those on the server side (e.g. containing emoji and characters NFKC changes)
 * will not authenticate.
 */
export function saslPrep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const mapped = password
    .replace(/[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g, ' ')
    .replace(/[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g, '')
    .normalize('NFKC');
  return mapped === '' || [...mapped].some(isProhibited) ? password : mapped;
}

/** RFC 3454 tables C.2-C.9 (C.1 spaces were mapped away above). */
function isProhibited(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  return (
    PROHIBITED_BMP.test(ch) ||
    (cp & 0xfffe) === 0xfffe || // non-characters in every plane
    (cp >= 0x1d173 && cp <= 0x1d17a) ||
    cp === 0xe0001 ||
    (cp >= 0xe0020 && cp <= 0xe007f) ||
    cp >= 0xf0000 // private use planes
  );
}
const PROHIBITED_BMP =
  /^[\x00-\x1f\x7f-\x9f\u0340\u0341\u06dd\u070f\u180e\u200e\u200f\u2028-\u202e\u2060-\u2063\u206a-\u206f\u2ff0-\u2ffb\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufff9-\ufffd]$/u;

function readMechanisms(payload: Buffer): string[] {
  const mechanisms: string[] = [];
  let off = 4;
  try {
    while (off < payload.length && payload[off] !== 0) {
      const [name, next] = readCString(payload, off);
      mechanisms.push(name);
      off = next;
    }
  } catch {
    throw new AuthError('malformed AuthenticationSASL from upstream');
  }
  return mechanisms;
}

/** PasswordMessage: 'p' + NUL-terminated string. */
function cstringMessage(s: string): Buffer {
  if (s.includes('\0')) throw new AuthError('password contains a NUL byte, which the protocol cannot carry');
  return pMessage(Buffer.from(s + '\0'));
}

/** SASLInitialResponse: 'p' + mechanism + int32 length + data. */
function saslInitialResponse(mechanism: string, data: string): Buffer {
  const mech = Buffer.from(mechanism + '\0');
  const body = Buffer.from(data);
  const len = Buffer.allocUnsafe(4);
  len.writeInt32BE(body.length, 0);
  return pMessage(Buffer.concat([mech, len, body]));
}

/** 'p' frame around a body (PasswordMessage, SASLInitialResponse and SASLResponse share it). */
function pMessage(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0x70; // 'p'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
