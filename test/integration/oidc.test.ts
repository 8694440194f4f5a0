/**
 * OIDC identities against a real OpenID Provider (oidc-provider on 127.0.0.9): the approvals
 * CLI's device-flow ID token and what the verifier refuses, and workload groups from
 * client-credentials tokens with their caching and fail-closed expiry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { decodeJwt, SignJWT } from 'jose';
import { deviceFlowIdToken, IdTokenVerifier, OidcError, WorkloadGroups } from '../../src/identity/oidc.js';
import { startIdp, type TestAccount, type TestIdp, type WorkloadClient } from '../helpers/oidc-idp.js';

const SCOPE = 'openid profile email groups';

describe('OIDC identities against a real IdP', () => {
  let idp: TestIdp;
  let aliceToken: string;

  beforeAll(async () => {
    idp = await startIdp({ host: '127.0.0.9', port: 0 });
    aliceToken = await deviceLogin('alice');
  });

  afterAll(async () => {
    await idp?.stop();
  });

  /** The CLI's device flow, with the human logging in at the IdP meanwhile. */
  async function deviceLogin(account: TestAccount, clientId: string = idp.cliClientId): Promise<string> {
    let login: Promise<void> = Promise.reject(new Error('the device flow showed no user code'));
    login.catch(() => {});
    let token: string;
    try {
      token = await deviceFlowIdToken({
        issuer: idp.issuer,
        clientId,
        scope: SCOPE,
        timeoutMs: 20_000,
        show: (verificationUri, userCode) => {
          expect(verificationUri).toBe(`${idp.issuer}/device`);
          login = idp.approveDevice(userCode, account);
          login.catch(() => {}); // surfaced below, after the flow ends
        },
      });
    } catch (err) {
      await login; // a failed login explains a failed flow better
      throw err;
    }
    await login;
    return token;
  }

  async function clientCredentialsToken(workload: WorkloadClient): Promise<string> {
    const response = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${workload.clientId}:${workload.clientSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { access_token: string }).access_token;
  }

  const verifier = (extra: { now?: () => number; workloadClientIds?: string[] } = {}) =>
    new IdTokenVerifier({ issuer: idp.issuer, audience: idp.cliClientId, workloadClientIds: [idp.ordersAgent.clientId, idp.batchAgent.clientId], ...extra });

  describe('IdTokenVerifier', () => {
    it("accepts alice's device-flow ID token, with her groups", async () => {
      const identity = await verifier().verify(aliceToken);
      expect(identity).toEqual({ subject: 'alice', name: 'Alice Admin', email: 'alice@example.test', groups: ['dba'] });
    });

    it("reports mallory's groups (the daemon refuses approvers outside the rule's groups)", async () => {
      const identity = await verifier().verify(await deviceLogin('mallory'));
      expect(identity.subject).toBe('mallory');
      expect(identity.groups).toEqual(['interns']);
    });

    it('rejects an expired token', async () => {
      const exp = decodeJwt(aliceToken).exp!;
      const later = verifier({ now: () => (exp + 120) * 1000 });
      await expect(later.verify(aliceToken)).rejects.toThrow(/^token expired/);
      await expect(later.verify(aliceToken)).rejects.toBeInstanceOf(OidcError);
    });

    it('rejects an ID token issued to another client', async () => {
      const otherToken = await deviceLogin('alice', idp.otherClientId);
      await expect(verifier().verify(otherToken)).rejects.toThrow(`wrong audience: token is for ${idp.otherClientId}, expected ${idp.cliClientId}`);
    });

    it('rejects a token signed by another key, whether its kid is the IdP key or unknown', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const claims = decodeJwt(aliceToken);
      for (const kid of [idp.signingKid, 'attacker-key']) {
        const forged = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', kid }).sign(privateKey);
        await expect(verifier().verify(forged)).rejects.toThrow(/^signed by an unknown key/);
      }
    });

    it('refuses a workload client-credentials token, listed as a workload or not', async () => {
      const token = await clientCredentialsToken(idp.ordersAgent);
      expect(decodeJwt(token)).toMatchObject({ sub: idp.ordersAgent.clientId, groups: ['reporting'] });
      await expect(verifier().verify(token)).rejects.toThrow(/client-credentials tokens cannot approve/);
      await expect(verifier({ workloadClientIds: [] }).verify(token)).rejects.toThrow(/client-credentials tokens cannot approve/);
    });

    it('refuses opaque tokens and non-loopback http issuers', async () => {
      await expect(verifier().verify(await clientCredentialsToken(idp.batchAgent))).rejects.toThrow(/not a signed JWT/);
      expect(() => new IdTokenVerifier({ issuer: 'http://idp.example.com', audience: 'x' })).toThrow(/must use https/);
      await expect(deviceFlowIdToken({ issuer: 'http://10.0.0.1', clientId: 'x', show: () => {} })).rejects.toThrow(/must use https/);
    });
  });

  describe('WorkloadGroups', () => {
    it('reads groups and roles from JWT access tokens and caches them until shortly before expiry', async () => {
      let clock = Date.now();
      const workload = new WorkloadGroups({
        issuer: idp.issuer, clientId: idp.ordersAgent.clientId, clientSecret: idp.ordersAgent.clientSecret,
        refreshBeforeMs: 30_000, now: () => clock,
      });
      expect(workload.cached()).toEqual([]);

      const before = idp.tokenRequests('client_credentials');
      expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
      expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
      expect(workload.cached()).toEqual(['reporting', 'orders-reader']);
      expect(idp.tokenRequests('client_credentials')).toBe(before + 1);

      clock += 250_000; // the token lives 300 s: not yet due
      await workload.groups();
      expect(idp.tokenRequests('client_credentials')).toBe(before + 1);

      clock += 25_000; // within 30 s of expiry: renewed
      expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
      expect(idp.tokenRequests('client_credentials')).toBe(before + 2);
    });

    it('reads groups of opaque access tokens by introspection', async () => {
      const workload = new WorkloadGroups({ issuer: idp.issuer, clientId: idp.batchAgent.clientId, clientSecret: idp.batchAgent.clientSecret });
      expect(await workload.groups()).toEqual(['batch']);
    });

    it('reports a wrong client secret and yields no groups', async () => {
      const failures: string[] = [];
      const workload = new WorkloadGroups({
        issuer: idp.issuer, clientId: idp.ordersAgent.clientId, clientSecret: 'wrong', onFailure: (why) => failures.push(why),
      });
      expect(await workload.groups()).toEqual([]);
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatch(/invalid_client/);
    });

    it('drops the groups when the token expires while the IdP is down, and reports it', async () => {
      let clock = Date.now();
      const failures: string[] = [];
      const workload = new WorkloadGroups({
        issuer: idp.issuer, clientId: idp.ordersAgent.clientId, clientSecret: idp.ordersAgent.clientSecret,
        refreshBeforeMs: 30_000, retryAfterMs: 5_000, now: () => clock, onFailure: (why) => failures.push(why),
      });
      expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
      await idp.setDown(true);
      try {
        clock += 280_000; // renewal due, token still valid: the failed renewal keeps the groups quietly
        expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
        expect(failures).toEqual([]);

        clock += 30_000; // expired
        expect(workload.cached()).toEqual([]);
        expect(await workload.groups()).toEqual([]);
        expect(workload.cached()).toEqual([]);
        expect(failures).toHaveLength(1);
        expect(failures[0]).toMatch(/no IdP groups for client orders-agent: .*ECONNREFUSED/);

        clock += 1_000; // within the retry interval: the IdP is not asked again
        expect(await workload.groups()).toEqual([]);
        expect(failures).toHaveLength(1);
      } finally {
        await idp.setDown(false);
      }
      clock += 5_000;
      expect(await workload.groups()).toEqual(['reporting', 'orders-reader']);
    });
  });
});
