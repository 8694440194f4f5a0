/**
 * OIDC identities: the human who approves a held command, and the groups a workload gets
 * from its IdP client.
 *
 * - IdTokenVerifier: accepts only a human's ID token issued to the approvals CLI.
 * - deviceFlowIdToken: the CLI side, the device authorization grant (RFC 8628).
 * - WorkloadGroups: groups/roles claims of a workload's client-credentials token, cached
 *   until shortly before expiry and dropped (fail closed) once the token expires and the
 *   IdP cannot issue a new one.
 *
 * Issuers must be https; plain http is accepted only for a literal loopback address
 * (127.0.0.0/8, ::1), which the tests use.
 */
import { isIP } from 'node:net';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as jose, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type ProtectedHeaderParameters } from 'jose';
import * as client from 'openid-client';

export class OidcError extends Error {
  override name = 'OidcError';
}

export interface HumanIdentity {
  subject: string;
  name?: string;
  email?: string;
  groups: string[];
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** Signature algorithms an approval token may use: asymmetric only (never HS*, never none). */
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const DEFAULT_FETCH_TIMEOUT_MS = 10_000;

function isLoopbackAddress(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1');
  switch (isIP(host)) {
    case 4: return host.startsWith('127.');
    case 6: return host === '::1' || /^::ffff:127\./i.test(host);
    default: return false;
  }
}

/** An IdP URL, refusing plain http anywhere but on a loopback address. */
function secureUrl(value: string, what = 'issuer'): { url: URL; insecure: boolean } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OidcError(`${what} is not a URL: ${value}`);
  }
  if (url.protocol === 'https:') return { url, insecure: false };
  if (url.protocol === 'http:' && isLoopbackAddress(url.hostname)) return { url, insecure: true };
  throw new OidcError(`${what} must use https (plain http only on a loopback address): ${value}`);
}

/** openid-client discovery (OIDC: {issuer}/.well-known/openid-configuration, issuer must match). */
async function discover(issuer: string, clientId: string, secret: string | undefined, auth: client.ClientAuth, timeoutMs: number): Promise<client.Configuration> {
  const { url, insecure } = secureUrl(issuer);
  try {
    return await client.discovery(url, clientId, secret, auth, {
      execute: insecure ? [client.allowInsecureRequests] : [],
      timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
    });
  } catch (err) {
    throw new OidcError(`cannot discover issuer ${issuer}: ${describe(err)}`);
  }
}

/** A readable reason from fetch, oauth and jose errors (fetch hides the socket error in `cause`). */
function describe(err: unknown): string {
  if (err instanceof client.ResponseBodyError) return oauthError(err.error, err.error_description);
  if (err instanceof client.WWWAuthenticateChallengeError) {
    // e.g. a rejected client secret on client_secret_basic answers 401 with a Basic challenge
    const challenge = err.cause[0]?.parameters;
    return challenge?.error ? oauthError(challenge.error, challenge.error_description) : `${err.message} (HTTP ${err.status})`;
  }
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail && !err.message.includes(detail) ? `${err.message} (${detail})` : err.message;
}

function oauthError(error: string, description?: string): string {
  return description ? `${error}: ${description}` : error;
}

/**
 * A claim's string values: an array of strings or a single string. The exact claim name is
 * looked up first (names may contain dots, e.g. namespaced URLs); failing that, a dotted
 * name is followed as a path (e.g. `realm_access.roles`).
 */
export function claimStrings(claims: Record<string, unknown>, name: string): string[] {
  let value: unknown = claims[name];
  if (value === undefined && name.includes('.')) {
    value = name.split('.').reduce<unknown>((node, key) =>
      node !== null && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>)[key] : undefined, claims);
  }
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v !== '');
  return [];
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

// ---------------------------------------------------------------------------------------------
// Verifying an approver's ID token

export interface IdTokenVerifierOptions {
  issuer: string;
  /** the approvals CLI's client id: the ID token's audience */
  audience: string;
  /** default 'groups' */
  groupsClaim?: string;
  /** client ids of workloads' IdP clients: tokens by or about them are refused outright */
  workloadClientIds?: string[];
  /** discovery and JWKS requests; default 10 s */
  fetchTimeoutMs?: number;
  /** allowed skew for exp/nbf; default 30 s */
  clockToleranceSec?: number;
  /** the clock, in ms since the epoch; default Date.now */
  now?: () => number;
}

/**
 * Verifies that a token is an ID token for a human, issued by `issuer` to the approvals CLI.
 *
 * The checks, in order (everything after the signature is read from the verified payload):
 *  1. compact JWS (three parts): opaque and encrypted tokens are refused;
 *  2. signature against the issuer's JWKS (jwks_uri from discovery), asymmetric algorithms only;
 *  3. `iss` equals the issuer; `exp` and `iat` present; `exp`/`nbf` hold within the tolerance;
 *  4. not a workload's token: `sub`, `azp`, `client_id`, `appid` (Entra) or `cid` (Okta) is
 *     one of workloadClientIds, or the subject is the client itself (`sub` equals
 *     `client_id`/`azp`/`appid`/`cid`, as in client-credentials tokens), or Entra's
 *     `idtyp: app` → "client-credentials tokens cannot approve";
 *  5. not an access token or other JWT: header `typ` absent or `JWT` (refuses `at+jwt`,
 *     `logout+jwt`…), no `client_id`, `scope` or `scp` claim (RFC 9068 access-token claims),
 *     `token_use` (Cognito) absent or `id`, payload `typ` (Keycloak) absent or `ID`, no
 *     `events` claim (logout and security event tokens);
 *  6. `sub` present;
 *  7. `aud` contains the CLI's client id; `azp`, when present, is that client id, and is
 *     required when there are several audiences (OIDC Core 3.1.3.7).
 */
export class IdTokenVerifier {
  private readonly groupsClaim: string;
  private readonly workloadClientIds: Set<string>;
  private readonly fetchTimeoutMs: number;
  private readonly clockToleranceSec: number;
  private readonly now: () => number;
  private keySet?: Promise<JWTVerifyGetKey>;

  constructor(private readonly opts: IdTokenVerifierOptions) {
    secureUrl(opts.issuer);
    this.groupsClaim = opts.groupsClaim ?? 'groups';
    this.workloadClientIds = new Set(opts.workloadClientIds ?? []);
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    this.clockToleranceSec = opts.clockToleranceSec ?? 30;
    this.now = opts.now ?? Date.now;
  }

  async verify(token: string): Promise<HumanIdentity> {
    if (typeof token !== 'string' || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token.trim())) {
      throw new OidcError('not a signed JWT: opaque and encrypted tokens cannot approve');
    }
    token = token.trim();
    const keys = await this.keys();
    let payload: JWTPayload;
    let header: ProtectedHeaderParameters;
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(token, keys, {
        issuer: this.opts.issuer,
        algorithms: ASYMMETRIC_ALGORITHMS,
        clockTolerance: this.clockToleranceSec,
        currentDate: new Date(this.now()),
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (err) {
      throw this.explain(err, token);
    }
    this.refuseWorkloadToken(payload);
    refuseOtherTokenKinds(header, payload);
    const subject = optionalString(payload.sub);
    if (!subject) throw new OidcError('token has no subject (sub): not a person');
    this.checkAudience(payload);
    return {
      subject,
      name: optionalString(payload.name) ?? optionalString(payload.preferred_username),
      email: optionalString(payload.email),
      groups: claimStrings(payload, this.groupsClaim),
    };
  }

  /** The issuer's key set; discovery runs once, and again only after a failure. */
  private keys(): Promise<JWTVerifyGetKey> {
    if (!this.keySet) {
      const keySet = (async () => {
        const config = await discover(this.opts.issuer, this.opts.audience, undefined, client.None(), this.fetchTimeoutMs);
        const jwksUri = config.serverMetadata().jwks_uri;
        if (!jwksUri) throw new OidcError(`issuer ${this.opts.issuer} publishes no jwks_uri`);
        const { url } = secureUrl(jwksUri, 'jwks_uri');
        // jose caches the keys and refetches (at most every 30 s) when a token names an unknown kid
        return createRemoteJWKSet(url, { timeoutDuration: this.fetchTimeoutMs });
      })();
      keySet.catch(() => { if (this.keySet === keySet) this.keySet = undefined; });
      this.keySet = keySet;
    }
    return this.keySet;
  }

  private refuseWorkloadToken(payload: JWTPayload): void {
    const sub = optionalString(payload.sub);
    const clients = [payload.azp, payload.client_id, payload.appid, payload.cid]
      .map(optionalString).filter((id): id is string => id !== undefined);
    const isWorkload = [sub, ...clients].some((id) => id !== undefined && this.workloadClientIds.has(id));
    const aboutAClient = sub !== undefined && clients.includes(sub);
    if (isWorkload || aboutAClient || payload.idtyp === 'app') {
      throw new OidcError(`client-credentials tokens cannot approve (subject ${sub ?? '(none)'} is a client, not a person)`);
    }
  }

  private checkAudience(payload: JWTPayload): void {
    const audiences = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
    const expected = this.opts.audience;
    if (!audiences.includes(expected)) {
      throw new OidcError(`wrong audience: token is for ${audiences.join(', ') || '(none)'}, expected ${expected}`);
    }
    const azp = payload.azp;
    if (azp !== undefined && azp !== expected) {
      throw new OidcError(`wrong audience: token was issued to ${String(azp)} (azp), expected ${expected}`);
    }
    if (audiences.length > 1 && azp === undefined) {
      throw new OidcError(`wrong audience: several audiences (${audiences.join(', ')}) and no azp`);
    }
  }

  private explain(err: unknown, token: string): OidcError {
    if (err instanceof OidcError) return err;
    if (err instanceof jose.JWTExpired) {
      const exp = typeof err.payload.exp === 'number' ? ` at ${new Date(err.payload.exp * 1000).toISOString()}` : '';
      return new OidcError(`token expired${exp}`);
    }
    if (err instanceof jose.JWTClaimValidationFailed) {
      if (err.claim === 'iss') return new OidcError(`wrong issuer: token is from ${String(err.payload.iss)}, expected ${this.opts.issuer}`);
      if (err.claim === 'nbf') return new OidcError('token not yet valid (nbf)');
      if (err.reason === 'missing') return new OidcError(`not an ID token: the ${err.claim} claim is missing`);
      return new OidcError(`invalid ${err.claim} claim: ${err.message}`);
    }
    const kid = safeKid(token);
    if (err instanceof jose.JWKSNoMatchingKey) {
      return new OidcError(`signed by an unknown key: the issuer publishes no key ${kid ? `with kid ${kid}` : 'matching the token'}`);
    }
    if (err instanceof jose.JWSSignatureVerificationFailed) {
      return new OidcError(`signed by an unknown key: the signature does not verify with the issuer's key${kid ? ` ${kid}` : ''}`);
    }
    if (err instanceof jose.JOSEAlgNotAllowed) return new OidcError(`signed with a disallowed algorithm: ${err.message}`);
    if (err instanceof jose.JWSInvalid || err instanceof jose.JWTInvalid) return new OidcError(`malformed token: ${err.message}`);
    if (err instanceof jose.JWKSTimeout || err instanceof jose.JWKSInvalid || err instanceof TypeError) {
      return new OidcError(`cannot fetch the signing keys of ${this.opts.issuer}: ${describe(err)}`);
    }
    return new OidcError(`token rejected: ${describe(err)}`);
  }
}

function safeKid(token: string): string | undefined {
  try {
    return decodeProtectedHeader(token).kid;
  } catch {
    return undefined;
  }
}

/** Refuses access tokens, logout tokens and other JWTs an IdP signs with the same keys. */
function refuseOtherTokenKinds(header: ProtectedHeaderParameters, payload: JWTPayload): void {
  const typ = header.typ?.toLowerCase().replace(/^application\//, '');
  if (typ === 'at+jwt') throw new OidcError('access tokens cannot approve: an ID token is required (typ at+jwt)');
  if (typ !== undefined && typ !== 'jwt') throw new OidcError(`not an ID token (typ ${header.typ})`);
  for (const claim of ['client_id', 'scope', 'scp']) {
    if (claim in payload) throw new OidcError(`access tokens cannot approve: an ID token is required (it carries ${claim})`);
  }
  if (payload.token_use !== undefined && payload.token_use !== 'id') {
    throw new OidcError(`access tokens cannot approve: an ID token is required (token_use ${String(payload.token_use)})`);
  }
  if (payload.typ !== undefined && payload.typ !== 'ID') throw new OidcError(`not an ID token (typ claim ${String(payload.typ)})`);
  if ('events' in payload) throw new OidcError('not an ID token (it is a logout or security event token)');
}

// ---------------------------------------------------------------------------------------------
// The approvals CLI: an ID token through the device authorization grant

export interface DeviceFlowOptions {
  issuer: string;
  /** the approvals CLI's public client id */
  clientId: string;
  /** default 'openid profile email'; add the IdP's groups scope if it has one */
  scope?: string;
  /** tells the human where to log in; `complete` is the URL with the code filled in, if offered */
  show: (verificationUri: string, userCode: string, complete?: string) => void;
  /** default: the device code's lifetime */
  timeoutMs?: number;
}

export async function deviceFlowIdToken(opts: DeviceFlowOptions): Promise<string> {
  const config = await discover(opts.issuer, opts.clientId, undefined, client.None(), DEFAULT_FETCH_TIMEOUT_MS);
  let authorization: Awaited<ReturnType<typeof client.initiateDeviceAuthorization>>;
  try {
    authorization = await client.initiateDeviceAuthorization(config, { scope: opts.scope ?? 'openid profile email' });
  } catch (err) {
    throw new OidcError(`device authorization refused by ${opts.issuer}: ${describe(err)}`);
  }
  opts.show(authorization.verification_uri, authorization.user_code, authorization.verification_uri_complete);

  const timeoutMs = opts.timeoutMs ?? authorization.expires_in * 1000;
  const signal = AbortSignal.timeout(timeoutMs);
  let tokens: Awaited<ReturnType<typeof client.pollDeviceAuthorizationGrant>>;
  try {
    tokens = await client.pollDeviceAuthorizationGrant(config, authorization, undefined, { signal });
  } catch (err) {
    if (signal.aborted) throw new OidcError(`device login timed out after ${Math.round(timeoutMs / 1000)} s`);
    if (err instanceof client.ResponseBodyError && err.error === 'access_denied') throw new OidcError('device login was refused');
    if (err instanceof client.ResponseBodyError && err.error === 'expired_token') throw new OidcError('device code expired before the login completed');
    throw new OidcError(`device login failed: ${describe(err)}`);
  }
  if (!tokens.id_token) throw new OidcError(`${opts.issuer} returned no ID token (is "openid" in the scope?)`);
  return tokens.id_token;
}

// ---------------------------------------------------------------------------------------------
// A workload's groups from its client-credentials token

export interface WorkloadGroupsOptions {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** default 'groups' */
  groupsClaim?: string;
  /** default 'roles' */
  rolesClaim?: string;
  /** token request parameters some IdPs need (e.g. Entra's `api://…/.default`, RFC 8707 resource) */
  scope?: string;
  resource?: string;
  /** default client_secret_basic, which every OAuth server must support */
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  /** renew this long before expiry; default 60 s (capped at half the token's lifetime) */
  refreshBeforeMs?: number;
  /** after a failed request, wait this long before asking the IdP again; default 5 s */
  retryAfterMs?: number;
  /** called when the IdP-derived groups are unavailable: no valid token and a new one could not be obtained */
  onFailure?: (why: string) => void;
  /** the clock, in ms since the epoch; default Date.now */
  now?: () => number;
  fetchTimeoutMs?: number;
}

interface HeldToken {
  groups: string[];
  expiresAt: number;
  renewAt: number;
}

/** Without any expiry information a token's groups are kept this long. */
const UNDATED_TOKEN_MS = 60_000;

/**
 * The groups and roles in a workload's client-credentials access token.
 *
 * Supported tokens: JWT access tokens (claims decoded from the token as received from the
 * token endpoint: it came straight from the IdP over an authenticated request, so its
 * signature is not re-checked; `iss`, when present, must be the issuer), and opaque
 * tokens when the IdP offers token introspection (RFC 7662), read from the introspection
 * response. Userinfo is not used: a client-credentials token has no end-user.
 */
export class WorkloadGroups {
  private readonly now: () => number;
  private readonly refreshBeforeMs: number;
  private readonly retryAfterMs: number;
  private held?: HeldToken;
  private inflight?: Promise<string[]>;
  private lastFailureAt?: number;
  private config?: Promise<client.Configuration>;

  constructor(private readonly opts: WorkloadGroupsOptions) {
    secureUrl(opts.issuer);
    this.now = opts.now ?? Date.now;
    this.refreshBeforeMs = opts.refreshBeforeMs ?? 60_000;
    this.retryAfterMs = opts.retryAfterMs ?? 5_000;
  }

  /** The groups of the current token, [] when there is none or it has expired. Never asks the IdP. */
  cached(): string[] {
    return this.held && this.now() < this.held.expiresAt ? [...this.held.groups] : [];
  }

  /** The groups, renewing the token when it is due; [] (and onFailure) when the IdP cannot provide them. */
  async groups(): Promise<string[]> {
    const now = this.now();
    if (this.held && now < this.held.renewAt) return [...this.held.groups];
    if (this.lastFailureAt !== undefined && now - this.lastFailureAt < this.retryAfterMs) return this.cached();
    this.inflight ??= this.renew().finally(() => { this.inflight = undefined; });
    return this.inflight;
  }

  private async renew(): Promise<string[]> {
    const requestedAt = this.now();
    try {
      this.held = await this.requestToken(requestedAt);
      this.lastFailureAt = undefined;
      return [...this.held.groups];
    } catch (err) {
      this.lastFailureAt = this.now();
      const still = this.held && this.now() < this.held.expiresAt;
      // a renewal ahead of expiry may fail quietly: the current token is still good
      if (!still) {
        this.held = undefined;
        this.opts.onFailure?.(`no IdP groups for client ${this.opts.clientId}: ${describe(err)}`);
      }
      return this.cached();
    }
  }

  /** Discovery runs once, and again only after a failure. */
  private configuration(): Promise<client.Configuration> {
    if (!this.config) {
      const auth = this.opts.authMethod === 'client_secret_post'
        ? client.ClientSecretPost(this.opts.clientSecret)
        : client.ClientSecretBasic(this.opts.clientSecret);
      const config = discover(this.opts.issuer, this.opts.clientId, this.opts.clientSecret, auth, this.opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS);
      config.catch(() => { if (this.config === config) this.config = undefined; });
      this.config = config;
    }
    return this.config;
  }

  private async requestToken(requestedAt: number): Promise<HeldToken> {
    const config = await this.configuration();
    const parameters: Record<string, string> = {};
    if (this.opts.scope) parameters.scope = this.opts.scope;
    if (this.opts.resource) parameters.resource = this.opts.resource;
    let response: Awaited<ReturnType<typeof client.clientCredentialsGrant>>;
    try {
      response = await client.clientCredentialsGrant(config, parameters);
    } catch (err) {
      throw new OidcError(`client-credentials grant failed: ${describe(err)}`);
    }
    const claims = await this.tokenClaims(config, response.access_token);
    const groups = [...new Set([
      ...claimStrings(claims, this.opts.groupsClaim ?? 'groups'),
      ...claimStrings(claims, this.opts.rolesClaim ?? 'roles'),
    ])];

    // expires_in is relative, so it is measured on our clock from the moment we asked (immune
    // to clock skew with the IdP); the absolute exp claim is the fallback
    const expiresAt = typeof response.expires_in === 'number' ? requestedAt + response.expires_in * 1000
      : typeof claims.exp === 'number' ? claims.exp * 1000
      : requestedAt + UNDATED_TOKEN_MS;
    if (expiresAt <= this.now()) throw new OidcError('the IdP issued an already expired token');
    const lifetime = expiresAt - requestedAt;
    const renewAt = expiresAt - Math.min(this.refreshBeforeMs, lifetime / 2);
    return { groups, expiresAt, renewAt };
  }

  private async tokenClaims(config: client.Configuration, accessToken: string): Promise<Record<string, unknown>> {
    const parts = accessToken.split('.').length;
    if (parts === 5) throw new OidcError('encrypted (JWE) access tokens are not supported');
    if (parts === 3) {
      let claims: JWTPayload;
      try {
        claims = decodeJwt(accessToken);
      } catch (err) {
        throw new OidcError(`malformed access token: ${describe(err)}`);
      }
      if (claims.iss !== undefined && claims.iss !== this.opts.issuer) {
        throw new OidcError(`access token from issuer ${claims.iss}, expected ${this.opts.issuer}`);
      }
      return claims;
    }
    if (!config.serverMetadata().introspection_endpoint) {
      throw new OidcError('the access token is opaque and the IdP offers no introspection endpoint');
    }
    let introspection: Awaited<ReturnType<typeof client.tokenIntrospection>>;
    try {
      introspection = await client.tokenIntrospection(config, accessToken);
    } catch (err) {
      throw new OidcError(`token introspection failed: ${describe(err)}`);
    }
    if (!introspection.active) throw new OidcError('the IdP reports the new access token inactive');
    return introspection;
  }
}
