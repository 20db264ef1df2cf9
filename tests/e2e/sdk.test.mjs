// The official MCP TypeScript SDK as client and server, through the real proxy binary.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { podsBehindProxy, metric, startPods, startProxy, startRedis } from './harness.mjs';

async function connect(url, Transport = StreamableHTTPClientTransport, path = '/mcp') {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  const transport = new Transport(new URL(path, url));
  await client.connect(transport);
  return { client, transport };
}

async function whoami(client) {
  const r = await client.callTool({ name: 'whoami', arguments: {} });
  return r.structuredContent;
}

// N sessions at once, each making `calls` calls: every call of a session reaches one pod and
// its per-session counter runs 1..calls. Returns the pods used.
async function pinnedSessions(url, sessions, calls, Transport, path) {
  const results = await Promise.all(Array.from({ length: sessions }, async () => {
    const { client } = await connect(url, Transport, path);
    const seen = [];
    for (let i = 0; i < calls; i++) seen.push(await whoami(client));
    await client.close();
    return seen;
  }));
  for (const seen of results) {
    assert.equal(new Set(seen.map((s) => s.pod)).size, 1, `one pod per session: ${JSON.stringify(seen)}`);
    assert.deepEqual(seen.map((s) => s.counter), Array.from({ length: calls }, (_, i) => i + 1));
  }
  return new Set(results.map((seen) => seen[0].pod));
}

for (const mode of ['stateful', 'json']) {
  describe(`Streamable HTTP with sessions (SDK server, ${mode === 'json' ? 'JSON answers' : 'SSE answers'})`, () => {
    const ctx = podsBehindProxy(['--mode', mode]);

    test('50 concurrent sessions pinned with their state, spread over the pods', async () => {
      const used = await pinnedSessions(ctx.proxy.url, 50, 6);
      assert.equal(used.size, 3, `pods used: ${[...used]}`);
    });

    test('progress notifications arrive before the result', async () => {
      const { client } = await connect(ctx.proxy.url);
      const progress = [];
      const result = await client.callTool({ name: 'slow', arguments: { steps: 3, interval_ms: 300 } }, undefined, {
        onprogress: (p) => progress.push({ at: Date.now(), progress: p.progress }),
      });
      const done = Date.now();
      assert.match(result.content[0].text, /done after 3 steps/);
      if (mode === 'json') {
        // A JSON answer has no room for notifications: the SDK server sends none.
        assert.equal(progress.length, 0);
      } else {
        assert.deepEqual(progress.map((p) => p.progress), [1, 2, 3]);
        assert.ok(done - progress[0].at >= 400, `first progress ${done - progress[0].at} ms before the result`);
      }
      await client.close();
    });

    test('server notifications arrive on the standalone GET stream', async () => {
      const { client } = await connect(ctx.proxy.url);
      const got = new Promise((resolve) => {
        client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => resolve(n.params.data));
      });
      // The client opens the GET stream after initialization; retry until the pod has it.
      let data;
      for (let i = 0; i < 50 && data === undefined; i++) {
        await client.callTool({ name: 'announce', arguments: { text: 'hello-through-proxy' } });
        data = await Promise.race([got, new Promise((r) => setTimeout(r, 100))]);
      }
      assert.equal(data, 'hello-through-proxy');
      await client.close();
    });

    test('DELETE ends the session; the id then gets 404 -32001', async () => {
      const { client, transport } = await connect(ctx.proxy.url);
      await whoami(client);
      const sid = transport.sessionId;
      assert.ok(sid);
      await transport.terminateSession();
      const res = await fetch(`${ctx.proxy.url}/mcp`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
          'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 41, method: 'tools/list' }),
      });
      assert.equal(res.status, 404);
      const body = await res.json();
      assert.equal(body.error.code, -32001);
      assert.equal(body.id, 41);
      await client.close();
      assert.ok(metric(await ctx.proxy.metrics(), 'mcp_proxy_sessions_deleted_total') >= 1);
    });
  });
}

describe('Legacy HTTP+SSE, 2024-11-05 (SDK SSEServerTransport)', () => {
  const ctx = podsBehindProxy(['--mode', 'legacy']);

  test('50 concurrent sessions pinned by the endpoint event, spread over the pods', async () => {
    const used = await pinnedSessions(ctx.proxy.url, 50, 5, SSEClientTransport, '/sse');
    assert.equal(used.size, 3, `pods used: ${[...used]}`);
  });

  test('progress notifications arrive on the stream before the result', async () => {
    const { client } = await connect(ctx.proxy.url, SSEClientTransport, '/sse');
    const progress = [];
    const result = await client.callTool({ name: 'slow', arguments: { steps: 3, interval_ms: 300 } }, undefined, {
      onprogress: (p) => progress.push({ at: Date.now(), progress: p.progress }),
    });
    const done = Date.now();
    assert.match(result.content[0].text, /done after 3 steps/);
    assert.deepEqual(progress.map((p) => p.progress), [1, 2, 3]);
    assert.ok(done - progress[0].at >= 400, `first progress ${done - progress[0].at} ms before the result`);
    await client.close();
  });
});

describe('Sessionless Streamable HTTP (SDK server without session ids)', () => {
  const ctx = podsBehindProxy(['--mode', 'stateless'], ['--placement', 'random']);

  test('every request is placed on its own and answered', async () => {
    const { client } = await connect(ctx.proxy.url);
    const pods = new Set();
    for (let i = 0; i < 30; i++) pods.add((await whoami(client)).pod);
    assert.ok(pods.size >= 2, `requests spread over ${[...pods]}`);
    await client.close();
  });
});

describe('Pods restart under an SDK client, Redis store', () => {
  test('the session goes on on a new pod: no error reaches the client, one recovery', async () => {
    const redis = await startRedis();
    let pods = await startPods(3);
    const proxy = await startProxy(['--replicas', '3', '--backend-url-template', pods.template,
      '--session-store', 'redis', '--redis-url', redis.url]);
    try {
      const { client } = await connect(proxy.url);
      const first = await whoami(client);
      assert.equal((await whoami(client)).counter, 2);
      // Every pod restarts (the process ends, a new one listens on the same addresses): the
      // sessions they held are gone, and they answer 404 for them.
      await pods.stop();
      pods = await startPods(3, ['--port', String(pods.port)]);
      const after = [];
      for (let i = 0; i < 3; i++) after.push(await whoami(client));
      assert.deepEqual(after.map((s) => s.counter), [1, 2, 3], `a new server-side session: ${JSON.stringify(after)}`);
      assert.equal(new Set(after.map((s) => s.pod)).size, 1, 'pinned to one pod again');
      assert.notEqual(after[0].pod, first.pod, 'placed away from the pod that lost it');
      const page = await proxy.metrics();
      assert.equal(metric(page, 'mcp_proxy_sessions_recovered_total'), 1);
      assert.equal(metric(page, 'mcp_proxy_sessions_lost_total{cause="pod_answered_404"}'), 1);
      await client.close();
    } finally {
      await proxy.stop();
      await pods.stop();
      await redis.stop();
    }
  });
});
