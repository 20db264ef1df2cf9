// Transport features of each MCP generation through the proxy, against the official SDK
// servers; raw HTTP where the point is the bytes on the wire.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { podsBehindProxy, startPods, startProxy, startRedis, collect, metric } from './harness.mjs';

const VERSION = '2025-11-25';
const INIT = (version = VERSION) => ({ jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

function post(base, body, headers = {}) {
  return fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

// initialize + notifications/initialized over raw HTTP; returns the session id.
async function rawSession(base, version = VERSION) {
  const res = await post(base, INIT(version));
  assert.equal(res.status, 200);
  await res.text();
  const sid = res.headers.get('mcp-session-id');
  assert.ok(sid);
  const ack = await post(base, { jsonrpc: '2.0', method: 'notifications/initialized' },
    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': version });
  assert.equal(ack.status, 202);
  return sid;
}

function callTool(base, sid, id, name, args = {}) {
  return post(base, { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } },
    { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': VERSION });
}

function openGet(base, sid, extra = {}) {
  const controller = new AbortController();
  const res = fetch(`${base}/mcp`, {
    headers: { Accept: 'text/event-stream', 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': VERSION, ...extra },
    signal: controller.signal,
  });
  return { res, controller };
}

describe('Streamable HTTP: resumption, priming, batches, refusals (SDK server with an event store)', () => {
  const ctx = podsBehindProxy(['--mode', 'stateful', '--event-store', '--retry-interval', '1234']);

  test('priming event and retry pass through untouched on an SSE answer', async () => {
    const sid = await rawSession(ctx.proxy.url);
    const res = await callTool(ctx.proxy.url, sid, 5, 'whoami');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    const text = await res.text();
    assert.match(text, /^id: \S+\nretry: 1234\ndata: \n\n/, 'the priming event comes first, byte for byte');
    assert.match(text, /"counter":1/);
  });

  test('Last-Event-ID resumes the GET stream on the session pod', async () => {
    const sid = await rawSession(ctx.proxy.url);
    const first = openGet(ctx.proxy.url, sid);
    const res = await first.res;
    assert.equal(res.status, 200);
    const stream = collect(res);
    for (let i = 0; i < 50 && !stream.text.includes('first-message'); i++) {
      // The pod may not have registered the stream the instant its head was sent: ask again.
      await (await callTool(ctx.proxy.url, sid, 10 + i, 'announce', { text: 'first-message' })).text();
      await stream.until((t) => t.includes('first-message'), 200);
    }
    assert.ok(stream.text.includes('first-message'), stream.text);
    const lastId = [...stream.text.matchAll(/id: (\S+)\n/g)].at(-1)[1];
    // The client drops the stream; the server goes on and stores what it sends meanwhile.
    first.controller.abort();
    await (await callTool(ctx.proxy.url, sid, 99, 'announce', { text: 'while-away' })).text();
    // Resume: the GET carries the session id, so it reaches the pod that holds the events.
    // The pod may still hold the old stream (409), or close the new one when the old one's
    // close reaches it late; a client then reconnects with the same Last-Event-ID.
    let resumed;
    const answers = [];
    for (let i = 0; i < 50 && !resumed?.text.includes('while-away'); i++) {
      const again = openGet(ctx.proxy.url, sid, { 'Last-Event-ID': lastId });
      const r = await again.res;
      if (r.status === 200) {
        resumed = collect(r);
        await resumed.until((t) => t.includes('while-away'), 5000);
        again.controller.abort();
        answers.push(`200 ${JSON.stringify(resumed.text.slice(0, 80))}`);
      } else {
        answers.push(`${r.status} ${(await r.text()).slice(0, 80)}`);
        await new Promise((done) => setTimeout(done, 50));  // let the pod see the old stream's close
      }
    }
    assert.ok(resumed?.text.includes('while-away'), answers.join(' | '));
    assert.ok(!resumed.text.includes('first-message'), 'only events after Last-Event-ID are replayed');
  });

  test('a 2025-03-26 batch holding the initialize starts a pinned session', async () => {
    const res = await post(ctx.proxy.url, [INIT('2025-03-26')]);
    assert.equal(res.status, 200);
    await res.text();
    const sid = res.headers.get('mcp-session-id');
    assert.ok(sid, 'the pod answered the batch with a session id');
    const m = await ctx.proxy.metrics();
    assert.ok(metric(m, 'mcp_proxy_sessions_created_total') >= 1);
    await (await post(ctx.proxy.url, { jsonrpc: '2.0', method: 'notifications/initialized' },
      { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-03-26' })).text();
    const listed = await post(ctx.proxy.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-03-26' });
    assert.equal(listed.status, 200, 'routed to the pod that holds the session');
  });

  test('MCP-Protocol-Version reaches the pod unchanged (an unsupported one is refused by the pod)', async () => {
    const sid = await rawSession(ctx.proxy.url);
    const bad = await post(ctx.proxy.url, { jsonrpc: '2.0', id: 3, method: 'tools/list' },
      { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '1999-01-01' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /Unsupported protocol version/);
  });

  test('refusals: unknown session 404 -32001 with the id, malformed id 400', async () => {
    let res = await post(ctx.proxy.url, { jsonrpc: '2.0', id: 'x-7', method: 'tools/list' }, { 'Mcp-Session-Id': 'nope' });
    assert.equal(res.status, 404);
    assert.deepEqual((await res.json()).error.code, -32001);
    res = await post(ctx.proxy.url, { jsonrpc: '2.0', id: 8, method: 'tools/list' }, { 'Mcp-Session-Id': 'x'.repeat(257) });
    assert.equal(res.status, 400);
    await res.text();
  });

  test('a session the pod lost is re-established: the SDK client never sees the 404', async () => {
    const client = new Client({ name: 'e2e', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', ctx.proxy.url));
    await client.connect(transport);
    const before = (await client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
    // The pod forgets the session behind the proxy's back (as a pod restart would).
    const pod = Number(before.pod.split('-')[1]);
    const gone = await fetch(`http://127.0.1.${pod}:${ctx.pods.port}/mcp`, {
      method: 'DELETE', headers: { 'Mcp-Session-Id': transport.sessionId, 'MCP-Protocol-Version': VERSION } });
    assert.equal(gone.status, 200);
    const after = (await client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
    assert.notEqual(after.pod, before.pod);
    assert.equal(after.counter, 1);
    assert.equal((await client.callTool({ name: 'whoami', arguments: {} })).structuredContent.counter, 2);
    assert.ok(metric(await ctx.proxy.metrics(), 'mcp_proxy_sessions_recovered_total') >= 1);
    await client.close();
  });
});

describe('Sessionless (2026-07-28 style): no session, per-request placement', () => {
  const ctx = podsBehindProxy(['--mode', 'stateless'], ['--placement', 'random']);

  test('requests without a session are never refused for it; Mcp-Method/Mcp-Name are passed through', async () => {
    const res = await post(ctx.proxy.url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } },
      { 'Mcp-Method': 'tools/call', 'Mcp-Name': 'whoami', 'MCP-Protocol-Version': VERSION });
    assert.equal(res.status, 200);
    assert.ok(!res.headers.get('mcp-session-id'));
    assert.equal((await res.json()).result.structuredContent.counter >= 1, true);
  });

  test('405 from the pod is passed through (GET on a stateless server)', async () => {
    const res = await fetch(`${ctx.proxy.url}/mcp`, { headers: { Accept: 'text/event-stream' } });
    assert.equal(res.status, 405);
    await res.text();
  });
});

describe('Legacy HTTP+SSE across two proxy replicas sharing one Redis', () => {
  let pods;
  let redis;
  let a;
  let b;
  before(async () => {
    pods = await startPods(3, ['--mode', 'legacy']);
    redis = await startRedis();
    const args = ['--replicas', '3', '--backend-url-template', pods.template, '--session-store', 'redis', '--redis-url', redis.url];
    a = await startProxy(args);
    b = await startProxy(args);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
    await pods?.stop();
  });

  test('the stream on replica A, every POST through replica B: pinned to the stream pod', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, async () => {
      const toB = (url, init) => {
        const u = new URL(url);
        if ((init?.method ?? 'GET') === 'POST') u.port = String(b.port);
        return fetch(u, init);
      };
      const client = new Client({ name: 'legacy', version: '1' });
      await client.connect(new SSEClientTransport(new URL('/sse', a.url), { fetch: toB }));
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push((await client.callTool({ name: 'whoami', arguments: {} })).structuredContent);
      await client.close();
      return seen;
    }));
    for (const seen of results) {
      assert.equal(new Set(seen.map((s) => s.pod)).size, 1);
      assert.deepEqual(seen.map((s) => s.counter), [1, 2, 3, 4]);
    }
    assert.ok(metric(await b.metrics(), 'mcp_proxy_session_cache_misses_total') >= 8, 'B learned each session from Redis');
  });
});
