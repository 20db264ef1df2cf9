// sessions.binding jwt with the official SDK's OAuth flow end to end: an authorization server
// (the SDK's router) that issues JWT access tokens (ES256, jose) and refresh tokens, publishes
// its keys at a JWKS URL, and rotates them; three replicas of an OAuth-protected MCP server;
// two proxy replicas sharing Redis in front. A session follows its user across refresh-token
// grants through both proxies; no other identity and no forged token reaches it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import crypto from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createOAuthMetadata, mcpAuthMetadataRouter, mcpAuthRouter, getOAuthProtectedResourceMetadataUrl }
  from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { DemoInMemoryAuthProvider } from '@modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { freePort, metric, startProxy, startRedis } from './harness.mjs';

async function listen(app, host, port) {
  const server = app.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => { throw e; })]);
  return server;
}

// The demo provider, issuing JWTs: `sub` is the client id (each registered client is a user
// of its own), `aud` the resource, 10 minutes; refresh tokens that can be used again.
class JwtAuthProvider extends DemoInMemoryAuthProvider {
  constructor(validateResource, issuer) {
    super(validateResource);
    this.issuer = issuer;
    this.keys = [];  // newest first
    this.refresh = new Map();
  }
  async rotate() {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const kid = crypto.randomUUID();
    this.keys.unshift({ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
  }
  jwks() { return { keys: this.keys.map((k) => k.jwk) }; }
  async issue(clientId, resource, scopes) {
    const k = this.keys[0];
    const access = await new SignJWT({ scope: scopes.join(' '), client_id: clientId })
      .setProtectedHeader({ alg: 'ES256', kid: k.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer).setSubject(clientId).setAudience(resource).setIssuedAt().setExpirationTime('10m')
      .setJti(crypto.randomUUID()).sign(k.privateKey);
    const refresh = crypto.randomUUID();
    this.refresh.set(refresh, { clientId, resource, scopes });
    return { access_token: access, token_type: 'bearer', expires_in: 600, refresh_token: refresh, scope: scopes.join(' ') };
  }
  async exchangeAuthorizationCode(client, code) {
    const data = this.codes.get(code);
    if (!data || data.client.client_id !== client.client_id) throw new Error('Invalid authorization code');
    if (!this.validateResource(data.params.resource)) throw new Error('Invalid resource');
    this.codes.delete(code);
    return this.issue(client.client_id, data.params.resource.toString(), data.params.scopes || []);
  }
  async exchangeRefreshToken(client, refreshToken) {
    const data = this.refresh.get(refreshToken);
    if (!data || data.clientId !== client.client_id) throw new Error('Invalid refresh token');
    this.refresh.delete(refreshToken);
    this.grants = (this.grants ?? 0) + 1;
    return this.issue(client.client_id, data.resource, data.scopes);
  }
  async verifyAccessToken(token) {
    const { payload } = await jwtVerify(token, createLocalJWKSet(this.jwks()), { issuer: this.issuer });
    return { token, clientId: payload.sub, scopes: payload.scope ? payload.scope.split(' ') : [], expiresAt: payload.exp,
      resource: new URL(payload.aud) };
  }
}

async function startAuthorizationServer(resource) {
  const port = await freePort();
  const issuer = new URL(`http://127.0.0.1:${port}`);
  const provider = new JwtAuthProvider((r) => r?.toString() === resource(), issuer.href);
  await provider.rotate();
  const app = express();
  const jwks = { fetches: 0, up: true };
  app.get('/jwks', (req, res) => {
    if (!jwks.up) { res.status(503).end(); return; }
    jwks.fetches++;
    res.set('Cache-Control', 'max-age=300').json(provider.jwks());
  });
  app.use(mcpAuthRouter({ provider, issuerUrl: issuer, scopesSupported: ['mcp:tools'] }));
  const server = await listen(app, '127.0.0.1', port);
  return { issuer, provider, jwks, jwksUrl: `${issuer.origin}/jwks`,
    metadata: createOAuthMetadata({ provider, issuerUrl: issuer, scopesSupported: ['mcp:tools'] }),
    close: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)); } };
}

// Three replicas of the OAuth-protected MCP server on 127.0.1.N; `whoami` counts per session.
async function startResourceServers(authServer, publicUrl) {
  const servers = [];
  let port = 0;
  for (let ordinal = 0; ordinal < 3; ordinal++) {
    const transports = new Map();
    const app = express();
    app.get('/.well-known/oauth-protected-resource/mcp', (req, res, next) =>
      mcpAuthMetadataRouter({ oauthMetadata: authServer.metadata, resourceServerUrl: new URL(publicUrl()) })(req, res, next));
    app.use('/mcp', (req, res, next) => requireBearerAuth({ verifier: authServer.provider,
      resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(new URL(publicUrl())) })(req, res, next));
    app.use(express.json());
    app.all('/mcp', async (req, res) => {
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport && !sid && req.method === 'POST' && isInitializeRequest(req.body)) {
        const server = new McpServer({ name: `pod-${ordinal}`, version: '1.0.0' });
        let counter = 0;
        server.registerTool('whoami', { description: 'pod, caller, calls so far' }, async (extra) => ({
          content: [{ type: 'text', text: JSON.stringify({ pod: ordinal, sub: extra.authInfo?.clientId, counter: ++counter }) }],
        }));
        transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => crypto.randomUUID(),
          onsessioninitialized: (id) => transports.set(id, transport) });
        await server.connect(transport);
      }
      if (!transport) {
        res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
        return;
      }
      await transport.handleRequest(req, res, req.body);
    });
    servers.push(await listen(app, `127.0.1.${ordinal}`, port));
    port = servers[0].address().port;
  }
  return { port, close: () => Promise.all(servers.map((s) => { s.closeAllConnections(); return new Promise((r) => s.close(r)); })) };
}

class TestAuthProvider {
  constructor() { this.redirectUrl = 'http://127.0.0.1:1/callback'; }
  get clientMetadata() {
    return { client_name: 'jwt-binding-test', redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    const res = await fetch(url, { redirect: 'manual' });
    this.code = new URL(res.headers.get('location')).searchParams.get('code');
  }
}

const b64url = (s) => Buffer.from(s).toString('base64url');

describe('sessions bound to the verified JWT through two proxy replicas sharing Redis', () => {
  const ctx = {};
  before(async () => {
    ctx.auth = await startAuthorizationServer(() => ctx.mcpUrl);
    ctx.pods = await startResourceServers(ctx.auth, () => ctx.mcpUrl);
    ctx.redis = await startRedis();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jwt-binding-'));
    writeFileSync(path.join(dir, 'keys'), `${crypto.randomBytes(24).toString('hex')}\n`);
    // Both replicas accept the first one's URL as the audience: one public URL in front of them.
    const port = await freePort();
    ctx.mcpUrl = `http://127.0.0.1:${port}/mcp`;
    const args = ['--replicas', '3', '--backend-url-template', `http://127.0.1.{ordinal}:${ctx.pods.port}`,
      '--session-store', 'redis', '--redis-url', ctx.redis.url, '--session-binding', 'jwt',
      '--session-binding-secret-file', path.join(dir, 'keys'), '--jwks-url', ctx.auth.jwksUrl,
      '--jwt-issuer', ctx.auth.issuer.href, '--jwt-audience', ctx.mcpUrl, '--jwks-min-refresh', '1s'];
    ctx.proxies = [await startProxy(args), await startProxy(args)];
    // Requests to the public origin alternate between the replicas.
    let turn = 0;
    const origin = new URL(ctx.mcpUrl).origin;
    ctx.fetch = (url, init) => {
      const p = ctx.proxies[turn++ % 2];
      return fetch(String(url).replace(origin, p.url), init);
    };
  });
  after(async () => {
    for (const p of ctx.proxies ?? []) await p.stop();
    await ctx.pods?.close();
    await ctx.auth?.close();
    await ctx.redis?.stop();
  });

  async function login() {
    const provider = new TestAuthProvider();
    const first = new StreamableHTTPClientTransport(new URL(ctx.mcpUrl), { authProvider: provider, fetch: ctx.fetch });
    await assert.rejects(new Client({ name: 'jwt', version: '1' }).connect(first), UnauthorizedError);
    await first.finishAuth(provider.code);
    const client = new Client({ name: 'jwt', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(ctx.mcpUrl), { authProvider: provider, fetch: ctx.fetch });
    await client.connect(transport);
    const whoami = async () => JSON.parse((await client.callTool({ name: 'whoami', arguments: {} })).content[0].text);
    return { provider, client, transport, whoami };
  }
  const raw = (token, sid) => ctx.fetch(ctx.mcpUrl, { method: 'POST', headers: { 'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream', Authorization: `Bearer ${token}`, 'Mcp-Session-Id': sid,
    'MCP-Protocol-Version': '2025-11-25' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'whoami', arguments: {} } }) });
  const fetches = async () => {
    let n = 0;
    for (const p of ctx.proxies) n += metric(await p.metrics(), 'mcp_proxy_jwks_fetches_total{result="ok"}') ?? 0;
    return n;
  };

  test('three refresh-token grants, one key rotation, the JWKS endpoint stopped: one session, its counter going on', async () => {
    const alice = await login();
    const first = await alice.whoami();
    const seen = [first];
    const tokens = [alice.provider.tokens().access_token];
    for (let grant = 0; grant < 3; grant++) {
      if (grant === 1) {
        // The authorization server rotates its keys: each replica follows with one fetch.
        const before = await fetches();
        await ctx.auth.provider.rotate();
        assert.equal(await auth(alice.provider, { serverUrl: ctx.mcpUrl, fetchFn: ctx.fetch }), 'AUTHORIZED');
        tokens.push(alice.provider.tokens().access_token);
        seen.push(await alice.whoami(), await alice.whoami());
        assert.equal(await fetches(), before + 2, 'one refetch per replica for the new kid');
        continue;
      }
      assert.equal(await auth(alice.provider, { serverUrl: ctx.mcpUrl, fetchFn: ctx.fetch }), 'AUTHORIZED');
      tokens.push(alice.provider.tokens().access_token);
      seen.push(await alice.whoami());
    }
    assert.equal(ctx.auth.provider.grants, 3);
    assert.equal(new Set(tokens).size, 4, 'four different access tokens');
    // The JWKS endpoint down: the cached keys go on.
    ctx.auth.jwks.up = false;
    seen.push(await alice.whoami(), await alice.whoami());
    ctx.auth.jwks.up = true;
    assert.equal(new Set(seen.map((a) => a.pod)).size, 1, JSON.stringify(seen));
    assert.deepEqual(seen.map((a) => a.counter), seen.map((_, i) => i + 1), JSON.stringify(seen));
    await alice.transport.terminateSession();
    await alice.client.close();
  });

  test('another user\'s valid token and forged ones get the 404 of an unknown session; none reaches it', async () => {
    const alice = await login();
    const sid = alice.transport.sessionId;
    await alice.whoami();
    const bob = await login();
    const bobToken = bob.provider.tokens().access_token;
    const aliceToken = alice.provider.tokens().access_token;
    const [h, p] = aliceToken.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url'));
    const header = JSON.parse(Buffer.from(h, 'base64url'));
    const { privateKey: forgerKey } = await generateKeyPair('ES256');
    const sign = (c, hdr = header, key = forgerKey) => new SignJWT(c).setProtectedHeader(hdr).sign(key);
    const asKey = ctx.auth.provider.keys[0].privateKey;
    const pem = crypto.createPublicKey({ key: ctx.auth.provider.keys[0].jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const hsInput = `${b64url(JSON.stringify({ alg: 'HS256', kid: header.kid }))}.${p}`;
    const attacks = {
      'another user': bobToken,
      'right sub, bad signature': await sign(claims),
      expired: await sign({ ...claims, exp: Math.floor(Date.now() / 1000) - 600 }, header, asKey),
      'wrong aud': await sign({ ...claims, aud: 'http://127.0.0.1:1/mcp' }, header, asKey),
      'alg none': `${b64url(JSON.stringify({ alg: 'none', kid: header.kid }))}.${p}.`,
      'HS256 keyed with the public key': `${hsInput}.${crypto.createHmac('sha256', pem).update(hsInput).digest('base64url')}`,
    };
    for (const [what, token] of Object.entries(attacks)) {
      const res = await raw(token, sid);
      assert.equal(res.status, 404, what);
      assert.equal((await res.json()).error.code, -32001, what);
    }
    const after = await alice.whoami();
    assert.equal(after.counter, 2, 'no attack reached the session');
    let mismatches = 0;
    for (const px of ctx.proxies) mismatches += metric(await px.metrics(), 'mcp_proxy_session_binding_mismatches_total');
    assert.equal(mismatches, Object.keys(attacks).length);
    await bob.client.close();
    await alice.client.close();
  });
});
