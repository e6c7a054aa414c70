// Loopback OpenID Connect provider for the Hushchat sync-server tests.
//
// Runs the OpenID Certified `oidc-provider` package with:
//   * one public native client (no secret, PKCE required, loopback redirect URI),
//   * JWT access tokens for the resource OIDC_AUDIENCE carrying email/email_verified,
//   * signing keys read from OIDC_JWKS_FILE (the test rotates keys by restarting with a
//     new file: new key first, old key still published),
//   * a scripted login: /interaction/:uid signs in the account named by the authorization
//     request's login_hint and grants the requested scopes, with no HTML involved;
//   * the device authorization grant (RFC 8628), its user-code pages reduced to the bare
//     forms (hidden inputs a test can post back); the account is the device authorization
//     request's login_hint, as above.
// Environment: OIDC_PORT, OIDC_JWKS_FILE, OIDC_AUDIENCE, OIDC_CLIENT_ID; optional
// OIDC_ACCESS_TOKEN_TTL (seconds, default 300) and OIDC_ACCESS_TOKEN_TYP (the JWT typ
// header of access tokens; default oidc-provider's RFC 9068 "at+jwt"). Prints READY.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.env.OIDC_AUDIENCE ?? 'urn:hushchat:sync';
const clientId = process.env.OIDC_CLIENT_ID ?? 'hushchat-desktop';
const jwks = JSON.parse(readFileSync(process.env.OIDC_JWKS_FILE, 'utf8'));
const accessTokenTTL = Number(process.env.OIDC_ACCESS_TOKEN_TTL ?? 300);
const accessTokenTyp = process.env.OIDC_ACCESS_TOKEN_TYP;

const accounts = {
  alice: { email: 'alice@example.org', email_verified: true },
  bob: { email: 'bob@example.org', email_verified: true },
  mallory: { email: 'mallory@example.org', email_verified: false },
};

// The device flow's pages: a title and the provider's form, nothing loaded from elsewhere.
const bare = (title, form) => `<!DOCTYPE html><html><head><title>${title}</title></head>`
  + `<body><h1>${title}</h1>${form}</body></html>`;

const configuration = {
  clients: [{
    client_id: clientId,
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: [
      'authorization_code',
      'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code',
    ],
    response_types: ['code'],
  }],
  jwks,
  pkce: { required: () => true },
  cookies: { keys: ['hushchat-test-cookie-key-not-secret'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email', 'offline_access', 'sync'],
  // A different typ header, to test servers that require at+jwt.
  ...(accessTokenTyp ? {
    formats: {
      customizers: {
        jwt: async (_ctx, _token, jwt) => {
          jwt.header = { ...jwt.header, typ: accessTokenTyp };
        },
      },
    },
  } : {}),
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    deviceFlow: {
      enabled: true,
      userCodeInputSource: async (ctx, form) => { ctx.body = bare('Enter code', form); },
      userCodeConfirmSource: async (ctx, form) => { ctx.body = bare('Confirm', form); },
      successSource: async (ctx) => { ctx.body = bare('Signed in', ''); },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'sync',
        audience,
        accessTokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  findAccount: async (_ctx, id) => {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
  extraTokenClaims: async (ctx, token) => {
    const account = accounts[token.accountId];
    if (token.kind !== 'AccessToken' || !account) return undefined;
    // auth_time lets the server demand a fresh login (escrow recovery).
    const code = ctx.oidc.entities.AuthorizationCode;
    return { ...account, ...(code?.authTime ? { auth_time: code.authTime } : {}) };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { Session: 600, Interaction: 600, Grant: 600, AuthorizationCode: 60 },
};

const provider = new Provider(issuer, configuration);
const callback = provider.callback();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const accountId = details.params.login_hint;
  if (!accounts[accountId]) {
    res.statusCode = 400;
    res.end(`unknown login_hint ${accountId}`);
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope ?? 'openid'));
  grant.addOIDCClaims(['email', 'email_verified']);
  grant.addResourceScope(audience, 'sync');
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => {
  console.log('READY');
});
