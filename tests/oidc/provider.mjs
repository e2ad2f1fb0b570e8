// A real OpenID Connect provider (oidc-provider, OpenID Certified) for SecondLook's sign-in tests.
//
//   node provider.mjs config.json        (tests/oidc_support.py writes the file and starts this)
//
// config.json: { port, issuer, client: {client_id, client_secret, redirect_uris}, id_token_ttl,
//                users: [{username, password, sub, name, roles?}] }
// Its own login form (/interaction/<uid>) checks the password: devInteractions accept anything. The first-party
// client never sees a consent prompt (loadExistingGrant grants openid email profile roles). Claims go into the ID
// token (conformIdTokenClaims: false) because Streamlit's st.user shows the ID token's claims.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const GRANTED = 'openid email profile roles';
const users = new Map(cfg.users.map((u) => [u.username.toLowerCase(), u]));
const bySub = new Map(cfg.users.map((u) => [u.sub, u]));

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function account(user) {
  return {
    accountId: user.sub,
    async claims() {
      const out = { sub: user.sub, email: user.username, email_verified: true, name: user.name };
      if (Array.isArray(user.roles)) out.roles = user.roles; // a user without roles has no roles claim at all
      return out;
    },
  };
}

// Streamlit asks for prompt=select_account: a requestable prompt so the request is accepted; our form resolves it.
const policy = interactionPolicy.base();
policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }));

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(cfg.issuer, {
  clients: [{
    client_id: cfg.client.client_id,
    client_secret: cfg.client.client_secret,
    redirect_uris: cfg.client.redirect_uris,
    post_logout_redirect_uris: cfg.client.redirect_uris, // Streamlit's logout returns to its /oauth2callback
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], roles: ['roles'] },
  scopes: ['openid', 'email', 'profile', 'roles'],
  conformIdTokenClaims: false,
  pkce: { required: () => false }, // accepted when sent (Streamlit sends S256), not demanded
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true, logoutSource } },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => (bySub.has(sub) ? account(bySub.get(sub)) : undefined),
  loadExistingGrant,
  cookies: { keys: [crypto.randomBytes(32).toString('hex')], long: { httpOnly: true, sameSite: 'lax' } },
  jwks: { keys: [{ ...signingKey, kid: 'test-key', alg: 'RS256', use: 'sig' }] },
  ttl: { IdToken: Number(cfg.id_token_ttl) || 3600, AccessToken: 3600, AuthorizationCode: 60, Interaction: 600,
    Session: 3600, Grant: 3600 },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p id="error">${esc(out.error)}: ${esc(out.error_description || '')}</p>`);
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

async function loadExistingGrant(ctx) {
  const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  const found = grantId && await ctx.oidc.provider.Grant.find(grantId);
  if (found) return found;
  if (ctx.oidc.client.clientId !== cfg.client.client_id || !ctx.oidc.session.accountId) return undefined;
  const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
  grant.addOIDCScope(GRANTED);
  await grant.save();
  return grant;
}

// Sign-out confirms itself: the tests (and users of a test provider) have nothing to decide there.
async function logoutSource(ctx, form) {
  ctx.body = page('Signing out', `${form}<p>Signing out…</p><script>
    const f = document.getElementById('op.logoutForm'); const i = document.createElement('input');
    i.type = 'hidden'; i.name = 'logout'; i.value = 'yes'; f.appendChild(i); f.submit();</script>`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function loginForm(uid, email = '', error = '') {
  return page('Test identity provider', `
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  ${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
  <label>E-mail <input name="login" type="email" value="${esc(email)}" required autofocus></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Sign in</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

function sameSecret(a, b) {
  const x = crypto.createHash('sha256').update(String(a)).digest();
  const y = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(x, y);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (!['login', 'select_account'].includes(details.prompt.name)) {
    return send(res, 400, page('Sign-in error', `<p id="error">unexpected prompt ${esc(details.prompt.name)}</p>`));
  }
  if (req.method === 'GET') return send(res, 200, loginForm(details.uid, details.params.login_hint));
  const form = await readForm(req);
  const email = (form.get('login') || '').trim();
  const user = users.get(email.toLowerCase());
  if (!user || !sameSecret(form.get('password') || '', user.password)) {
    return send(res, 401, loginForm(details.uid, email, 'Wrong e-mail or password.'));
  }
  return provider.interactionFinished(req, res, { login: { accountId: user.sub }, select_account: {} },
    { mergeWithLastSubmission: false });
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  const path = new URL(req.url, cfg.issuer).pathname;
  const ours = (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(path))
    || (req.method === 'POST' && /^\/interaction\/[^/]+\/login$/.test(path));
  if (!ours) return handle(req, res);
  return interaction(req, res).catch((err) => {
    console.error('interaction', err);
    if (!res.headersSent) send(res, err.statusCode || 400, page('Sign-in error', `<p id="error">${esc(err.message)}</p>`));
  });
});
server.listen(cfg.port, '127.0.0.1', () => console.log(`oidc provider ${cfg.issuer} listening on 127.0.0.1:${cfg.port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0)); // browsers keep connections open
