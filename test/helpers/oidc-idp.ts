/**
 * A real OpenID Provider for tests: oidc-provider 9 on a loopback address (plain http,
 * in-memory storage), with
 *  - the device authorization grant, for the approvals CLI (public client `interlock-cli`)
 *    and for a second public client (`other-cli`) whose tokens have another audience;
 *  - the client-credentials grant for two confidential workload clients:
 *      `orders-agent` gets JWT access tokens (groups [reporting], roles [orders-reader]),
 *      `batch-agent` gets opaque access tokens, read by introspection (groups [batch]);
 *  - accounts alice (groups [dba]) and mallory (groups [interns]), with passwords, whose
 *    ID tokens carry `groups` when the `groups` scope is requested.
 *
 * How groups get into client-credentials tokens: resource indicators (RFC 8707) are on and
 * `defaultResource` gives `orders-agent` the resource `urn:interlock:workloads`, whose
 * resource-server info says `accessTokenFormat: 'jwt'`; `extraTokenClaims` adds the
 * client's `groups` and `roles` to every ClientCredentials token (they land in the JWT's
 * payload, or in the introspection response of an opaque token). `conformIdTokenClaims:
 * false` lets scope-granted claims (groups, name, email) into the ID token even though an
 * access token is issued alongside it.
 *
 * Logins are completed by `approveDevice`, which drives the real pages with fetch and a
 * cookie jar: the user-code form (with its xsrf token), the confirmation form, then this
 * helper's own login and consent pages (the provider's interaction API), checking the
 * account's password.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Provider, errors } from 'oidc-provider';

export type TestAccount = 'alice' | 'mallory';

export interface WorkloadClient {
  clientId: string;
  clientSecret: string;
  groups: string[];
  roles: string[];
  format: 'jwt' | 'opaque';
}

export interface TestIdp {
  issuer: string;
  /** the approvals CLI's public client */
  cliClientId: 'interlock-cli';
  /** another public device-flow client: its ID tokens are for another audience */
  otherClientId: 'other-cli';
  /** JWT access tokens */
  ordersAgent: WorkloadClient;
  /** opaque access tokens, groups by introspection */
  batchAgent: WorkloadClient;
  /** the key id the provider signs with */
  signingKid: string;
  /** completes the device login for userCode as that account, through the provider's pages */
  approveDevice(userCode: string, account: TestAccount): Promise<void>;
  /** token requests that reached a grant (success or error) so far, all or those of one grant type */
  tokenRequests(grantType?: string): number;
  /** true: the listener is closed and connections refused; false: it listens again */
  setDown(down: boolean): Promise<void>;
  stop(): Promise<void>;
}

const WORKLOAD_RESOURCE = 'urn:interlock:workloads';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const ACCOUNTS: Record<TestAccount, { password: string; name: string; email: string; groups: string[] }> = {
  alice: { password: 'alice-password', name: 'Alice Admin', email: 'alice@example.test', groups: ['dba'] },
  mallory: { password: 'mallory-password', name: 'Mallory Intern', email: 'mallory@example.test', groups: ['interns'] },
};

export async function startIdp(opts: { host: '127.0.0.9'; port: number; workloadTokenTtlSec?: number }): Promise<TestIdp> {
  const ordersAgent: WorkloadClient = {
    clientId: 'orders-agent', clientSecret: randomBytes(24).toString('base64url'),
    groups: ['reporting'], roles: ['orders-reader'], format: 'jwt',
  };
  const batchAgent: WorkloadClient = {
    clientId: 'batch-agent', clientSecret: randomBytes(24).toString('base64url'),
    groups: ['batch'], roles: [], format: 'opaque',
  };
  const workloads = new Map([ordersAgent, batchAgent].map((w) => [w.clientId, w]));

  const counts = new Map<string, number>();
  let provider: Provider | undefined;
  const server = createServer((req, res) => {
    if (!provider) return void res.writeHead(503).end();
    if (req.url?.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
      return;
    }
    provider.callback()(req, res);
  });
  const listen = (port: number) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  await listen(opts.port);
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://${opts.host}:${port}`;

  const signingKid = 'idp-rs256';
  const signingJwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: signingKid, use: 'sig', alg: 'RS256' };

  provider = new Provider(issuer, {
    clients: [
      ...['interlock-cli', 'other-cli'].map((client_id) => ({
        client_id,
        token_endpoint_auth_method: 'none',
        grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      })),
      ...[...workloads.values()].map((w) => ({
        client_id: w.clientId,
        client_secret: w.clientSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      })),
    ],
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email'], groups: ['groups'] },
    conformIdTokenClaims: false,
    async findAccount(_ctx: unknown, sub: string) {
      if (!Object.hasOwn(ACCOUNTS, sub)) return undefined;
      const account = ACCOUNTS[sub as TestAccount];
      return { accountId: sub, claims: async () => ({ sub, name: account.name, email: account.email, groups: account.groups }) };
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: page('Enter code', 'op.deviceInputForm'),
        userCodeConfirmSource: page('Confirm device', 'op.deviceConfirmForm'),
        successSource: async (ctx: { body: string }) => { ctx.body = '<!DOCTYPE html><title>Signed in</title><p>Sign-in complete.</p>'; },
      },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // a workload may introspect only its own tokens
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, client: { clientId: string }, oneOf?: string[]) =>
          workloads.get(client.clientId)?.format === 'jwt' ? WORKLOAD_RESOURCE : oneOf,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (resource !== WORKLOAD_RESOURCE) throw new errors.InvalidTarget();
          return { scope: '', audience: WORKLOAD_RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: opts.workloadTokenTtlSec ?? 300 };
        },
      },
    },
    async extraTokenClaims(_ctx: unknown, token: { kind: string; clientId: string }) {
      const workload = token.kind === 'ClientCredentials' ? workloads.get(token.clientId) : undefined;
      return workload ? { groups: workload.groups, roles: workload.roles } : undefined;
    },
    ttl: {
      AccessToken: 600, ClientCredentials: opts.workloadTokenTtlSec ?? 300, DeviceCode: 600, IdToken: 600,
      Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 3600,
    },
  });
  // RFC 8628 lets the server set the polling interval; 1 s (instead of the default 5) keeps tests quick
  provider.use(async (ctx: { path: string; body?: unknown }, next: () => Promise<void>) => {
    await next();
    if (ctx.path === '/device/auth' && ctx.body && typeof ctx.body === 'object' && 'device_code' in ctx.body) {
      (ctx.body as Record<string, unknown>).interval = 1;
    }
  });
  for (const event of ['grant.success', 'grant.error']) {
    provider.on(event, (ctx: { oidc?: { params?: { grant_type?: unknown } } }) => {
      const grantType = String(ctx.oidc?.params?.grant_type ?? 'unknown');
      counts.set(grantType, (counts.get(grantType) ?? 0) + 1);
    });
  }

  let down = false;
  return {
    issuer,
    cliClientId: 'interlock-cli',
    otherClientId: 'other-cli',
    ordersAgent,
    batchAgent,
    signingKid,
    approveDevice: (userCode, account) => approveDevice(issuer, userCode, account),
    tokenRequests: (grantType) => grantType === undefined
      ? [...counts.values()].reduce((a, b) => a + b, 0)
      : counts.get(grantType) ?? 0,
    async setDown(wantDown) {
      if (wantDown === down) return;
      down = wantDown;
      if (wantDown) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      } else {
        await listen(port);
      }
    },
    async stop() {
      if (down) return;
      down = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** A minimal page around the provider's own form (which carries the xsrf token). */
function page(title: string, formId: string) {
  return async (ctx: { body: string }, form: string) => {
    ctx.body = `<!DOCTYPE html><title>${title}</title>${form}<button type="submit" form="${formId}">Continue</button>`;
  };
}

// ---------------------------------------------------------------------------------------------
// Login and consent pages, through the provider's interaction API

interface InteractionDetails {
  uid: string;
  prompt: { name: string; details: { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> } };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  grantId?: string;
}

async function interaction(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://idp');
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res) as InteractionDetails;
  if (details.uid !== uid) throw new Error('interaction mismatch');

  if (req.method === 'GET' && action === undefined) {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(details.prompt.name === 'login'
      ? `<!DOCTYPE html><title>Log in</title><form method="post" action="/interaction/${uid}/login">
          <input name="login"><input name="password" type="password"><button>Log in</button></form>`
      : `<!DOCTYPE html><title>Consent</title><form method="post" action="/interaction/${uid}/confirm">
          <button>Allow</button></form>`);
    return;
  }
  if (req.method !== 'POST') throw new Error(`unexpected ${req.method} ${url.pathname}`);
  const form = new URLSearchParams(await readBody(req));

  if (action === 'login' && details.prompt.name === 'login') {
    const login = form.get('login') ?? '';
    if (!Object.hasOwn(ACCOUNTS, login) || form.get('password') !== ACCOUNTS[login as TestAccount].password) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('wrong login or password');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm' && details.prompt.name === 'consent') {
    const accountId = details.session?.accountId;
    if (!accountId) throw new Error('consent without a login');
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
    if (!grant) throw new Error('grant not found');
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unexpected ${action} during the ${details.prompt.name} prompt`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// A user's browser: fetch with a cookie jar, following redirects by hand

class Browser {
  private readonly cookies = new Map<string, { value: string; path: string }>();

  constructor(private readonly origin: string) {}

  /** Requests `path`, following redirects; returns the final page. */
  async request(path: string, form?: Record<string, string>): Promise<{ url: string; status: number; html: string }> {
    let url = new URL(path, this.origin);
    let init: RequestInit = form
      ? { method: 'POST', body: new URLSearchParams(form), headers: { 'content-type': 'application/x-www-form-urlencoded' } }
      : { method: 'GET' };
    for (let hops = 0; hops < 20; hops++) {
      if (url.origin !== this.origin) throw new Error(`redirected off the IdP: ${url.href}`);
      const response = await fetch(url, { ...init, redirect: 'manual', headers: { ...init.headers as Record<string, string>, cookie: this.cookieHeader(url.pathname) } });
      this.store(response.headers.getSetCookie());
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.arrayBuffer();
        url = new URL(location, url);
        init = { method: 'GET' };
        continue;
      }
      return { url: url.href, status: response.status, html: await response.text() };
    }
    throw new Error('too many redirects');
  }

  private cookieHeader(path: string): string {
    return [...this.cookies.entries()]
      .filter(([, c]) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map(([key, c]) => `${key.slice(0, key.indexOf(' '))}=${c.value}`)
      .join('; ');
  }

  private store(setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair, ...attributes] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key, val = ''] = attribute.split('=');
        if (key.toLowerCase() === 'path') path = val || '/';
        if (key.toLowerCase() === 'expires' && Date.parse(val) <= Date.now()) expired = true;
        if (key.toLowerCase() === 'max-age' && Number(val) <= 0) expired = true;
      }
      const key = `${name} ${path}`;
      if (expired || value === '') this.cookies.delete(key);
      else this.cookies.set(key, { value, path });
    }
  }
}

/** The form with this id (or the only one): its action and its named inputs' values. */
function readForm(html: string, id?: string): { action: string; fields: Record<string, string> } {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)];
  const match = id ? forms.find((f) => f[1].includes(`id="${id}"`)) : forms[0];
  if (!match) throw new Error(`no form ${id ?? ''} on the page:\n${html.slice(0, 2000)}`);
  const action = /action="([^"]*)"/.exec(match[1])?.[1];
  if (!action) throw new Error('form without an action');
  const fields: Record<string, string> = {};
  for (const input of match[2].matchAll(/<input\b([^>]*)>/g)) {
    const name = /name="([^"]*)"/.exec(input[1])?.[1];
    if (name) fields[name] = /value="([^"]*)"/.exec(input[1])?.[1] ?? '';
  }
  return { action, fields };
}

async function approveDevice(issuer: string, userCode: string, account: TestAccount): Promise<void> {
  const browser = new Browser(new URL(issuer).origin);
  const expectPage = (page: { status: number; html: string; url: string }, what: string) => {
    if (page.status !== 200) throw new Error(`${what}: HTTP ${page.status} at ${page.url}\n${page.html.slice(0, 1000)}`);
    return page;
  };

  const entry = expectPage(await browser.request('/device'), 'user code page');
  const codeForm = readForm(entry.html, 'op.deviceInputForm');
  const confirmPage = expectPage(await browser.request(codeForm.action, { ...codeForm.fields, user_code: userCode }), 'confirmation page');
  const confirmForm = readForm(confirmPage.html, 'op.deviceConfirmForm');
  let page = expectPage(await browser.request(confirmForm.action, confirmForm.fields), 'login page');

  const { password } = ACCOUNTS[account];
  for (let step = 0; step < 4 && new URL(page.url).pathname.startsWith('/interaction/'); step++) {
    const form = readForm(page.html);
    const fields = form.action.endsWith('/login') ? { login: account, password } : {};
    page = expectPage(await browser.request(form.action, fields), `interaction ${form.action}`);
  }
  if (!/Sign-in complete/.test(page.html)) throw new Error(`device login did not complete:\n${page.html.slice(0, 1000)}`);
}
