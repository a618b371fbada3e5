// A real OpenID Provider for Portcullis's OAuth2 end-to-end tests: oidc-provider on
// loopback, configured from one JSON document (the testbed's `Idp::start` writes it).
//
//   node idp.mjs [PORT]            PORT (default 0: any free port) or $IDP_PORT
//   $IDP_CONFIG                    the JSON below (or a file: $IDP_CONFIG_FILE)
//
// {
//   "clients": [ { "client_id": "portcullis", "client_secret": "s3cret",
//                  "redirect_uris": ["http://127.0.0.1:PORT/.portcullis/oauth2/redirection-endpoint"],
//                  "post_logout_redirect_uris": ["http://127.0.0.1:PORT/"],
//                  "token_endpoint_auth_method": "client_secret_basic" | "client_secret_post"
//                    | "private_key_jwt" (with "jwks": the client's public JWK Set) | "client_secret_jwt",
//                  "token_endpoint_auth_signing_alg": "RS256" (optional),
//                  "grant_types": ["authorization_code", "refresh_token"] | ["client_credentials"],
//                  "access_ttl": 5, "id_token_ttl": 60, "large_tokens": true } ],
//   "access_ttl": 3600, "id_token_ttl": 3600, "refresh_ttl": 86400,
//   "large_tokens": false,      // a `groups` claim (~6 KB) in every client's ID token and userinfo
//   "skip_consent": false,      // grant the requested scopes at login, no consent page
//   "scopes": ["api:read"]      // extra scopes (client_credentials)
// }
//
// Login: the built-in development pages (`features.devInteractions`): any login and
// password; the login becomes `sub`. Test tooling can drive them with plain HTTP (GET
// the form, POST `prompt=login&login=alice&password=x`, then `prompt=consent`).
// PKCE (S256) is required, refresh tokens are always issued to clients allowed the
// `refresh_token` grant (no `offline_access` needed), RP-initiated logout is on (its
// confirmation page submits itself), and `client_credentials` is enabled. Claims are
// strict (oidc-provider's default `conformIdTokenClaims`, OpenID Connect Core 5.4): in
// the code flow the ID token carries `sub` (and `groups` for `large_tokens` clients,
// as Azure AD and Okta put groups there), while the `profile` and `email` claims come
// only from the UserInfo endpoint.
//
// Prints `IDP READY http://127.0.0.1:PORT` once listening; logs each request to
// stderr as `IDP <method> <path> -> <status>` (token requests add `auth=basic` or
// `auth=body`). Ends on SIGTERM/SIGINT, or when stdin closes if
// $IDP_EXIT_ON_STDIN_EOF is set (so a crashed test leaves no IdP behind).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const cfgText = process.env.IDP_CONFIG_FILE
  ? readFileSync(process.env.IDP_CONFIG_FILE, 'utf8')
  : (process.env.IDP_CONFIG || '{}');
const cfg = JSON.parse(cfgText);
const port = Number(process.argv[2] ?? process.env.IDP_PORT ?? 0);

const clientsById = new Map();
const clients = (cfg.clients ?? []).map((c) => {
  const out = {
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: c.grant_types ?? ['authorization_code', 'refresh_token'],
    redirect_uris: c.redirect_uris ?? [],
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  };
  out.response_types = out.grant_types.includes('authorization_code') ? ['code'] : [];
  if (c.scope) out.scope = c.scope;
  // private_key_jwt (RFC 7523, OIDC Core §9): the client's public keys.
  if (c.jwks) out.jwks = c.jwks;
  if (c.token_endpoint_auth_signing_alg) out.token_endpoint_auth_signing_alg = c.token_endpoint_auth_signing_alg;
  clientsById.set(c.client_id, c);
  return out;
});

const clientOpt = (client, key, fallback) => {
  const c = client && clientsById.get(client.clientId);
  if (c && c[key] !== undefined) return c[key];
  if (cfg[key] !== undefined) return cfg[key];
  return fallback;
};

// ~6 KB of group names: an ID token well over 4 KiB, so session cookies must be chunked.
const GROUPS = Array.from({ length: 48 }, (_, i) => `group-${i}-${'x'.repeat(120)}`);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-rs256', use: 'sig', alg: 'RS256' };

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  const issuer = `http://127.0.0.1:${bound}`;

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'profile', 'email', ...(cfg.scopes ?? ['api:read'])],
    claims: {
      // `groups` rides on `openid`: it reaches the ID token in strict mode too.
      openid: ['sub', 'groups'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          const claims = {
            sub,
            name: `Test User ${sub}`,
            preferred_username: sub,
            email: `${sub}@example.test`,
            email_verified: true,
          };
          if (clientOpt(ctx.oidc?.client, 'large_tokens', false)) claims.groups = GROUPS;
          return claims;
        },
      };
    },
    pkce: { required: () => true },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    ttl: {
      AccessToken: (ctx, token, client) => clientOpt(client, 'access_ttl', 3600),
      ClientCredentials: (ctx, token, client) => clientOpt(client, 'access_ttl', 3600),
      IdToken: (ctx, token, client) => clientOpt(client, 'id_token_ttl', 3600),
      RefreshToken: (ctx, token, client) => clientOpt(client, 'refresh_ttl', 86400),
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 86400,
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (!cfg.skip_consent) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
      grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'groups', 'email', 'email_verified']);
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The confirmation page answers "yes" by itself (a browser submits it; plain
        // HTTP clients post the form's hidden fields).
        async logoutSource(ctx, form) {
          const yes = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
          ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Logout Request</title></head>
<body><h1>Signing out of ${ctx.host}</h1>${yes}
<script>document.forms[0].submit()</script></body></html>`;
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>Signed out</h1></body></html>';
        },
      },
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>IdP error</title></head><body><h1>IdP error</h1><pre id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</pre></body></html>`;
    },
  });

  // Test-only helpers, outside oidc-provider's routes.
  const callback = provider.callback();
  server.on('request', (req, res) => {
    // Token requests are logged with how the client authenticated (`auth=basic` or
    // `auth=body`), and oidc-provider's leniency is taken back: a client registered
    // for client_secret_post that sends HTTP Basic is refused.
    const basic = /^basic /i.test(req.headers.authorization ?? '');
    const isToken = req.method === 'POST' && req.url.split('?')[0] === '/token';
    const basicId = basic
      ? decodeURIComponent(Buffer.from(req.headers.authorization.slice(6).trim(), 'base64').toString().split(':')[0] ?? '')
      : '';
    const tag = isToken ? ` auth=${basic ? `basic client=${basicId}` : 'body'}` : '';
    res.on('finish', () => process.stderr.write(`IDP ${req.method} ${req.url} -> ${res.statusCode}${tag}\n`));
    if (isToken && basic) {
      const decoded = Buffer.from(req.headers.authorization.slice(6).trim(), 'base64').toString();
      const id = decodeURIComponent(decoded.split(':')[0] ?? '');
      if (clientsById.get(id)?.token_endpoint_auth_method === 'client_secret_post') {
        res.writeHead(401, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: 'invalid_client', error_description: 'this client authenticates with client_secret_post' }));
        return;
      }
    }
    if (req.url === '/_test/health') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    callback(req, res);
  });
  provider.on('server_error', (ctx, err) => process.stderr.write(`IDP server_error: ${err?.stack ?? err}\n`));

  process.stdout.write(`IDP READY ${issuer}\n`);
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.IDP_EXIT_ON_STDIN_EOF) {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
