// OAuth-protected MCP servers behind the proxy, with the official SDK on both sides.
//
// The resource server (three replicas behind the proxy) publishes its protected-resource
// metadata (RFC 9728) and answers 401 with a WWW-Authenticate that points at it; the
// client finds the authorization server from there, registers, is authorized and gets a
// token for the resource; every later request carries it. The client checks that the
// metadata's `resource` is the URL it connected to, so the resource server must know its
// public URL: either configured (the SDK's way, shown first) or built per request from
// X-Forwarded-Host/-Proto, which reach the pod only from a hop the proxy trusts
// (`trust_forwarded_headers`).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import express from 'express';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createOAuthMetadata, mcpAuthMetadataRouter, mcpAuthRouter, getOAuthProtectedResourceMetadataUrl }
  from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { DemoInMemoryAuthProvider } from '@modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { freePort, metric, startProxy, startRedis } from './harness.mjs';
import { execFileSync } from 'node:child_process';

let initializeCount = 0;

async function listen(app, host, port) {
  const server = app.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => { throw e; })]);
  return server;
}

// The authorization server: the SDK's router over its in-memory demo provider, which
// issues a token only for `resource` (the audience check of RFC 8707).
async function startAuthorizationServer(resource) {
  const port = await freePort();
  const issuer = new URL(`http://127.0.0.1:${port}`);
  // `resource()`: the proxy's URL, known once the proxy runs.
  const provider = new DemoInMemoryAuthProvider((r) => r?.toString() === resource());
  const app = express();
  app.use(mcpAuthRouter({ provider, issuerUrl: issuer, scopesSupported: ['mcp:tools'] }));
  const server = await listen(app, '127.0.0.1', port);
  return { issuer, provider, metadata: createOAuthMetadata({ provider, issuerUrl: issuer, scopesSupported: ['mcp:tools'] }),
    close: () => new Promise((r) => server.close(r)) };
}

// Three replicas of an OAuth-protected MCP server on 127.0.1.N, one port for all (pod 0's,
// chosen by the kernel; the whole set again if another test holds it on 127.0.1.1 or .2).
// `publicUrl(req)` is the URL the server believes clients use for /mcp.
async function startResourceServers(auth, publicUrl) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startResourceServersOn(auth, publicUrl);
    } catch (e) {
      if (e.code !== 'EADDRINUSE' || attempt >= 10) throw e;
    }
  }
}

async function startResourceServersOn(auth, publicUrl) {
  const servers = [];
  const tables = [];
  let port = 0;
  const closeAll = () => Promise.all(servers.map((s) => { s.closeAllConnections(); return new Promise((r) => s.close(r)); }));
  for (let ordinal = 0; ordinal < 3; ordinal++) {
    const transports = new Map();
    tables.push(transports);
    const app = express();
    // Metadata and the 401's pointer, built per request from what the server believes its URL is.
    app.get('/.well-known/oauth-protected-resource/mcp', (req, res, next) =>
      mcpAuthMetadataRouter({ oauthMetadata: auth.metadata, resourceServerUrl: new URL(publicUrl(req)) })(req, res, next));
    app.use('/mcp', (req, res, next) => requireBearerAuth({
      verifier: auth.provider,
      resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(new URL(publicUrl(req))),
    })(req, res, next));
    app.use(express.json());
    app.all('/mcp', async (req, res) => {
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport && !sid && req.method === 'POST' && isInitializeRequest(req.body)) {
        initializeCount++;
        const server = new McpServer({ name: `pod-${ordinal}`, version: '1.0.0' });
        server.registerTool('whoami', { description: 'the pod and the token\'s client' }, async (extra) => ({
          content: [{ type: 'text', text: JSON.stringify({ pod: ordinal, client: extra.authInfo?.clientId }) }],
        }));
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => crypto.randomUUID(),
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        await server.connect(transport);
      }
      if (!transport) {
        res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
        return;
      }
      await transport.handleRequest(req, res, req.body);
    });
    try {
      servers.push(await listen(app, `127.0.1.${ordinal}`, port));
    } catch (e) {
      await closeAll();
      throw e;
    }
    port = servers[0].address().port;
  }
  return {
    port,
    // As a restart does: every pod forgets its sessions (and answers 404 for them).
    forget: () => { for (const t of tables) t.clear(); },
    initializes: () => initializeCount,
    close: closeAll,
  };
}

// The SDK client's OAuth side, with the user's consent given by following the redirect.
class TestAuthProvider {
  constructor() { this.redirectUrl = 'http://127.0.0.1:1/callback'; this.code = undefined; }
  get clientMetadata() {
    return { client_name: 'proxy-oauth-test', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.authorizationUrl = url;
    const res = await fetch(url, { redirect: 'manual' });
    this.code = new URL(res.headers.get('location')).searchParams.get('code');
  }
}

// Authorizes through the proxy, then calls `whoami` three times in one session (`between`
// runs before the last call), and ends the session.
async function authorizeAndCall(mcpUrl, between = async () => {}) {
  const provider = new TestAuthProvider();
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await assert.rejects(new Client({ name: 'oauth', version: '1' }).connect(first), UnauthorizedError);
  assert.ok(provider.code, 'the authorization server issued a code');
  await first.finishAuth(provider.code);
  const client = new Client({ name: 'oauth', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  const answers = [];
  for (let i = 0; i < 3; i++) {
    if (i === 2) await between(transport.sessionId, provider);
    const r = await client.callTool({ name: 'whoami', arguments: {} });
    answers.push(JSON.parse(r.content[0].text));
  }
  await transport.terminateSession();
  await client.close();
  return { provider, answers };
}

describe('an OAuth-protected server that knows its public URL (configured)', () => {
  const ctx = {};
  before(async () => {
    ctx.auth = await startAuthorizationServer(() => ctx.mcpUrl);
    ctx.pods = await startResourceServers(ctx.auth, () => ctx.mcpUrl);
    ctx.proxy = await startProxy(['--replicas', '3', '--backend-url-template', `http://127.0.1.{ordinal}:${ctx.pods.port}`]);
    ctx.mcpUrl = `${ctx.proxy.url}/mcp`;
  });
  after(async () => {
    await ctx.proxy?.stop();
    await ctx.pods?.close();
    await ctx.auth?.close();
  });

  test('a request without a token gets the pod\'s 401 and its pointer to the metadata, unchanged', async () => {
    const res = await fetch(ctx.mcpUrl, { method: 'POST', headers: { 'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream' }, body: '{}' });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'),
      new RegExp(`resource_metadata="${ctx.proxy.url}/.well-known/oauth-protected-resource/mcp"`));
    const prm = await (await fetch(`${ctx.proxy.url}/.well-known/oauth-protected-resource/mcp`)).json();
    assert.equal(prm.resource, ctx.mcpUrl);
    assert.deepEqual(prm.authorization_servers, [ctx.auth.issuer.href]);
  });

  test('the SDK client is authorized for the proxy\'s URL and its session stays on one pod', async () => {
    const { provider, answers } = await authorizeAndCall(ctx.mcpUrl);
    assert.equal(new URL(provider.authorizationUrl).searchParams.get('resource'), ctx.mcpUrl);
    assert.equal(new Set(answers.map((a) => a.pod)).size, 1, JSON.stringify(answers));
    for (const a of answers) assert.equal(a.client, provider.client.client_id);
  });
});

describe('an OAuth-protected server that builds its URL from X-Forwarded-Host/-Proto', () => {
  const ctx = {};
  const fromForwarded = (req) => `${req.headers['x-forwarded-proto']}://${req.headers['x-forwarded-host']}/mcp`;
  before(async () => {
    ctx.auth = await startAuthorizationServer(() => `${ctx.plain.url}/mcp`);
    ctx.pods = await startResourceServers(ctx.auth, fromForwarded);
    const template = ['--replicas', '3', '--backend-url-template', `http://127.0.1.{ordinal}:${ctx.pods.port}`];
    ctx.plain = await startProxy(template);
    ctx.trusting = await startProxy([...template, '--trust-forwarded-headers', 'true']);
  });
  after(async () => {
    await ctx.plain?.stop();
    await ctx.trusting?.stop();
    await ctx.pods?.close();
    await ctx.auth?.close();
  });

  const prm = async (base, headers = {}) =>
    (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`, { headers })).json();

  test('by default the pod sees the origin the client used at the proxy, whatever the client claims', async () => {
    assert.equal((await prm(ctx.plain.url)).resource, `${ctx.plain.url}/mcp`);
    const claimed = await prm(ctx.plain.url, { 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'https' });
    assert.equal(claimed.resource, `${ctx.plain.url}/mcp`);
    const { answers } = await authorizeAndCall(`${ctx.plain.url}/mcp`);
    assert.equal(new Set(answers.map((a) => a.pod)).size, 1, JSON.stringify(answers));
  });

  test('behind a trusted hop (TLS ingress, runner) the pod sees the public origin', async () => {
    const behindIngress = await prm(ctx.trusting.url, { 'X-Forwarded-Host': 'mcp.example.com', 'X-Forwarded-Proto': 'https' });
    assert.equal(behindIngress.resource, 'https://mcp.example.com/mcp');
    const res = await fetch(`${ctx.trusting.url}/mcp`, { method: 'POST', body: '{}', headers: {
      'Content-Type': 'application/json', 'X-Forwarded-Host': 'mcp.example.com', 'X-Forwarded-Proto': 'https' } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate'),
      /resource_metadata="https:\/\/mcp\.example\.com\/\.well-known\/oauth-protected-resource\/mcp"/);
    // A hop that sends neither: the proxy's own, as without trust.
    assert.equal((await prm(ctx.trusting.url)).resource, `${ctx.trusting.url}/mcp`);
  });
});

for (const store of ['memory', 'redis']) {
  describe(`a session of an OAuth-protected server re-established after its pod forgot it (${store} store)`, () => {
    const ctx = {};
    before(async () => {
      ctx.auth = await startAuthorizationServer(() => ctx.mcpUrl);
      ctx.pods = await startResourceServers(ctx.auth, () => ctx.mcpUrl);
      const args = ['--replicas', '3', '--backend-url-template', `http://127.0.1.{ordinal}:${ctx.pods.port}`];
      if (store === 'redis') {
        ctx.redis = await startRedis();
        args.push('--session-store', 'redis', '--redis-url', ctx.redis.url);
      }
      ctx.proxy = await startProxy(args);
      ctx.mcpUrl = `${ctx.proxy.url}/mcp`;
    });
    after(async () => {
      await ctx.proxy?.stop();
      await ctx.pods?.close();
      await ctx.auth?.close();
      await ctx.redis?.stop();
    });

    test('the replayed initialize carries the client\'s token; the client never sees a 404', async () => {
      let record;
      let token;
      let before;
      const { answers } = await authorizeAndCall(ctx.mcpUrl, async (sid, provider) => {
        token = provider.tokens().access_token;
        if (ctx.redis) {
          record = execFileSync('redis-cli', ['-p', String(ctx.redis.port), 'GET', `mcp-session-proxy:session:${sid}`])
            .toString();
        }
        before = ctx.pods.initializes();
        ctx.pods.forget();
      });
      // One re-initialize (the replayed one, authorized), and the call answered on it.
      assert.equal(ctx.pods.initializes(), before + 1);
      assert.equal(answers.length, 3);
      assert.equal(metric(await ctx.proxy.metrics(), 'mcp_proxy_sessions_recovered_total'), 1);
      if (ctx.redis) {
        assert.match(record, /"init_target":"\/mcp"/, record);
        assert.ok(!record.includes(token), 'no credential at rest in Redis');
        assert.ok(!/authorization/i.test(record), record);
      }
    });

    test('20 concurrent calls of a lost session cause one initialize, and all are answered', async () => {
      const provider = new TestAuthProvider();
      const first = new StreamableHTTPClientTransport(new URL(ctx.mcpUrl), { authProvider: provider });
      await assert.rejects(new Client({ name: 'oauth', version: '1' }).connect(first), UnauthorizedError);
      await first.finishAuth(provider.code);
      const client = new Client({ name: 'oauth', version: '1' });
      const transport = new StreamableHTTPClientTransport(new URL(ctx.mcpUrl), { authProvider: provider });
      await client.connect(transport);
      await client.callTool({ name: 'whoami', arguments: {} });
      const recoveredBefore = metric(await ctx.proxy.metrics(), 'mcp_proxy_sessions_recovered_total');
      const before = ctx.pods.initializes();
      ctx.pods.forget();
      const answers = await Promise.all(Array.from({ length: 20 },
        () => client.callTool({ name: 'whoami', arguments: {} }).then((r) => JSON.parse(r.content[0].text))));
      assert.equal(ctx.pods.initializes(), before + 1, 'one re-initialize for twenty requests');
      assert.equal(new Set(answers.map((a) => a.pod)).size, 1, JSON.stringify(answers));
      const page = await ctx.proxy.metrics();
      assert.equal(metric(page, 'mcp_proxy_sessions_recovered_total'), recoveredBefore + 1);
      await transport.terminateSession();
      await client.close();
    });
  });
}
