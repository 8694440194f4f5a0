import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  AuthError,
  ScramSha256Client,
  UpstreamAuthenticator,
  md5Password,
  saslPrep,
} from '../../src/protocols/postgres/auth.js';

/** Payload of an upstream Authentication ('R') message. */
function R(code: number, rest: Buffer | string = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32BE(code, 0);
  return Buffer.concat([head, Buffer.from(rest)]);
}

/** Checks the 'p' frame header and returns its body. */
function pBody(msg: Buffer | undefined): Buffer {
  expect(msg).toBeDefined();
  expect(String.fromCharCode(msg![0])).toBe('p');
  expect(msg!.readInt32BE(1)).toBe(msg!.length - 1);
  return msg!.subarray(5);
}

const md5hex = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

describe('RFC 7677 SCRAM-SHA-256 test vector', () => {
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';

  it('produces the expected client messages and accepts the server signature', () => {
    const c = new ScramSha256Client('pencil', { username: 'user', nonce: 'rOprNGfwEbeRWgbNEkqO' });
    expect(c.clientFirstMessage).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    expect(c.clientFinal(serverFirst)).toBe(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    expect(() => c.verifyServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).not.toThrow();
  });

  it('rejects a wrong server signature', () => {
    const c = new ScramSha256Client('pencil', { username: 'user', nonce: 'rOprNGfwEbeRWgbNEkqO' });
    c.clientFinal(serverFirst);
    expect(() => c.verifyServerFinal('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).toThrow(/not who it claims/);
    expect(() => c.verifyServerFinal('v=AAAA')).toThrow(AuthError);
    expect(() => c.verifyServerFinal('e=invalid-proof')).toThrow(/invalid-proof/);
  });

  it('rejects server-first messages that do not extend our nonce or are malformed', () => {
    const c = () => new ScramSha256Client('pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO' });
    expect(() => c().clientFinal('r=someoneElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/nonce/);
    expect(() => c().clientFinal('r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/nonce/);
    expect(() => c().clientFinal('r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0')).toThrow(AuthError);
    expect(() => c().clientFinal('r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999')).toThrow(AuthError);
    expect(() => c().clientFinal('r=rOprNGfwEbeRWgbNEkqOx,i=4096')).toThrow(AuthError);
    expect(() => c().clientFinal('m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/extension/);
    expect(() => c().clientFinal('garbage')).toThrow(AuthError);
  });

  it('escapes "," and "=" in the SCRAM username', () => {
    expect(new ScramSha256Client('p', { username: 'a,b=c', nonce: 'n' }).clientFirstMessage).toBe('n,,n=a=2Cb=3Dc,r=n');
  });
});

/** A minimal SCRAM-SHA-256 server written straight from RFC 5802, independent of auth.ts. */
function fakeScramServer(password: string, clientFirstBare: string, salt: Buffer, iterations: number) {
  const clientNonce = /(?:^|,)r=([^,]*)/.exec(clientFirstBare)![1];
  const nonce = clientNonce + 'SERVERNONCE';
  const serverFirst = `r=${nonce},s=${salt.toString('base64')},i=${iterations}`;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const hmac = (k: Buffer, d: string) => createHmac('sha256', k).update(d).digest();
  return {
    serverFirst,
    /** checks the proof and returns server-final */
    final(clientFinal: string): string {
      const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
      const proof = Buffer.from(clientFinal.slice(clientFinal.lastIndexOf(',p=') + 3), 'base64');
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
      const storedKey = createHash('sha256').update(hmac(salted, 'Client Key')).digest();
      const sig = hmac(storedKey, authMessage);
      const clientKey = Buffer.from(proof.map((b, i) => b ^ sig[i]));
      const ok = timingSafeEqual(createHash('sha256').update(clientKey).digest(), storedKey);
      expect(withoutProof).toBe(`c=biws,r=${nonce}`);
      if (!ok) return 'e=invalid-proof';
      return `v=${hmac(hmac(salted, 'Server Key'), authMessage).toString('base64')}`;
    },
  };
}

/** Drives the authenticator through a SCRAM exchange; returns it and the final server message. */
function scramExchange(password: string, serverPassword = password) {
  const a = new UpstreamAuthenticator('app', password, { clientNonce: 'fixedClientNonce' });
  const first = a.respond(R(10, 'SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0'));
  expect(first.done).toBe(false);
  const body = pBody(first.reply);
  expect(body.subarray(0, 14).toString()).toBe('SCRAM-SHA-256\0');
  expect(body.readInt32BE(14)).toBe(body.length - 18);
  const clientFirst = body.subarray(18).toString();
  // PostgreSQL ignores the SCRAM username, so we send it empty
  expect(clientFirst).toBe('n,,n=,r=fixedClientNonce');
  const server = fakeScramServer(serverPassword, clientFirst.slice(3), Buffer.from('0123456789abcdef'), 4096);
  const second = a.respond(R(11, server.serverFirst));
  const serverFinal = server.final(pBody(second.reply).toString());
  return { a, serverFinal };
}

describe('UpstreamAuthenticator', () => {
  it('completes SCRAM-SHA-256 against an independent server implementation', () => {
    const { a, serverFinal } = scramExchange('s3cret-pass');
    expect(serverFinal.startsWith('v=')).toBe(true);
    expect(a.respond(R(12, serverFinal))).toEqual({ done: false });
    expect(a.respond(R(0))).toEqual({ done: true });
  });

  it('rejects a server that cannot produce the right signature', () => {
    // An impostor that does not know the password: it cannot compute ServerSignature.
    const { a } = scramExchange('s3cret-pass', 'other');
    expect(() => a.respond(R(12, 'v=' + Buffer.alloc(32, 7).toString('base64')))).toThrow(/not who it claims/);
  });

  it('rejects AuthenticationOk that skips SASLFinal', () => {
    const { a } = scramExchange('s3cret-pass');
    expect(() => a.respond(R(0))).toThrow(/before completing SCRAM/);
  });

  it('rejects out-of-order SASL messages', () => {
    const a = new UpstreamAuthenticator('app', 'pw');
    expect(() => a.respond(R(11, 'r=x,s=eA==,i=1'))).toThrow(AuthError);
    expect(() => a.respond(R(12, 'v=x'))).toThrow(AuthError);
  });

  it('refuses channel-binding-only and unknown SASL mechanisms', () => {
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(10, 'SCRAM-SHA-256-PLUS\0\0'))).toThrow(/SCRAM-SHA-256-PLUS/);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(10, 'OAUTHBEARER\0\0'))).toThrow(/OAUTHBEARER/);
  });

  it('answers MD5 the documented way', () => {
    const salt = Buffer.from([0x01, 0xff, 0x00, 0x7f]);
    const expected = 'md5' + md5hex(Buffer.concat([Buffer.from(md5hex('hunter2' + 'alice')), salt]));
    expect(md5Password('alice', 'hunter2', salt)).toBe(expected);
    const a = new UpstreamAuthenticator('alice', 'hunter2');
    const step = a.respond(R(5, salt));
    expect(step.done).toBe(false);
    expect(pBody(step.reply).toString()).toBe(expected + '\0');
    expect(a.respond(R(0))).toEqual({ done: true });
  });

  it('known MD5 value', () => {
    // md5 of ("md5" stored hash of user "postgres", password "postgres") salted with 0x00000000
    const stored = md5hex('postgrespostgres');
    expect(stored).toBe('3175bce1d3201d16594cebf9d7eb3f9d');
    expect(md5Password('postgres', 'postgres', Buffer.alloc(4))).toBe('md5' + md5hex(Buffer.concat([Buffer.from(stored), Buffer.alloc(4)])));
  });

  it('answers cleartext password requests', () => {
    const step = new UpstreamAuthenticator('u', 'pw').respond(R(3));
    expect(pBody(step.reply).toString()).toBe('pw\0');
  });

  it('accepts trust (AuthenticationOk straight away) and nothing after it', () => {
    const a = new UpstreamAuthenticator('u', undefined);
    expect(a.respond(R(0))).toEqual({ done: true });
    expect(() => a.respond(R(0))).toThrow(AuthError);
  });

  it('says clearly when a password is needed but none is configured', () => {
    for (const req of [R(3), R(5, Buffer.alloc(4)), R(10, 'SCRAM-SHA-256\0\0')]) {
      expect(() => new UpstreamAuthenticator('u', undefined).respond(req)).toThrow(/none configured/);
      expect(() => new UpstreamAuthenticator('u', '').respond(req)).toThrow(/none configured/);
    }
  });

  it('names unsupported methods', () => {
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(7))).toThrow(/GSSAPI/);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(9))).toThrow(/SSPI/);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(2))).toThrow(/Kerberos V5/);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(42))).toThrow(/code 42/);
  });

  it('rejects malformed messages', () => {
    expect(() => new UpstreamAuthenticator('u', 'p').respond(Buffer.alloc(2))).toThrow(AuthError);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(5, Buffer.alloc(3)))).toThrow(AuthError);
    expect(() => new UpstreamAuthenticator('u', 'p').respond(R(10, 'SCRAM-SHA-256'))).toThrow(AuthError);
  });
});

describe('saslPrep', () => {
  it('leaves ASCII alone and normalises like RFC 4013', () => {
    expect(saslPrep('plain ASCII \x01 pw')).toBe('plain ASCII \x01 pw');
    expect(saslPrep('I\u00adX')).toBe('IX'); // soft hyphen mapped to nothing
    expect(saslPrep('a\u00a0b')).toBe('a b'); // non-ASCII space
    expect(saslPrep('\u2168')).toBe('IX'); // NFKC
    expect(saslPrep('ｐäss')).toBe('päss');
  });

  it('falls back to the raw password when the prepared one is prohibited', () => {
    expect(saslPrep('\u00e9\u0007')).toBe('\u00e9\u0007'); // control character
    expect(saslPrep('\u00e9\ue000')).toBe('\u00e9\ue000'); // private use
  });
});
