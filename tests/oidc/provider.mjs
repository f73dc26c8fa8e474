// A real OpenID Provider for the single sign-on tests: oidc-provider (OpenID Certified), with
// test accounts and an interaction step that signs in the `login_hint` account and grants the
// requested scopes at once (no login form), so a test can walk the browser's redirects.
//
// Usage: node provider.mjs   (prints "listening <port>" once it serves)
// Environment: EPOP_OIDC_MODULES (the node_modules holding oidc-provider), EPOP_OIDC_REDIRECT
// (the redirect URI both clients register).
//
// Clients: `epop` (secret `epop-secret`), and `epop-expiring`, whose ID tokens live one second
// and whose token responses are held two seconds, so they arrive expired.
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.EPOP_OIDC_MODULES;
const { default: Provider } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href
);
const redirect = process.env.EPOP_OIDC_REDIRECT;

const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Able', groups: ['staff'] },
  boss: { email: 'boss@example.com', email_verified: true, name: 'Big Boss', groups: ['staff', 'epop-admins'] },
  newbie: { email: 'newbie@example.com', email_verified: true, name: 'New Bie', groups: [] },
  sneaky: { email: 'victim@example.com', email_verified: false, name: 'Not Verified', groups: [] },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    { client_id: 'epop', client_secret: 'epop-secret', redirect_uris: [redirect] },
    { client_id: 'epop-expiring', client_secret: 'epop-secret', redirect_uris: [redirect] },
  ],
  cookies: { keys: ['epop-test-cookie-key'] },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // The requested claims go into the ID token, where EPOP reads them.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  ttl: {
    Interaction: 600,
    Grant: 600,
    Session: 600,
    IdToken: (ctx, token, client) => (client.clientId === 'epop-expiring' ? 1 : 3600),
  },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
});

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const accountId = details.params.login_hint;
    if (!accounts[accountId]) {
      ctx.status = 400;
      ctx.body = `unknown login_hint ${accountId}`;
      return;
    }
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    const to = await provider.interactionResult(
      ctx.req,
      ctx.res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.oidc?.client?.clientId === 'epop-expiring') {
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
});

server.on('request', provider.callback());
console.log(`listening ${port}`);
