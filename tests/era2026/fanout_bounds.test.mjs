// Issue 28, the fan-out's bounds and ends (subscriptions.fanout, SDK v2 pods of fanout_pod.mjs):
// - a client that stops reading while three pods flood it: the proxy's memory stays bounded
//   (subscriptions.max_leg_buffer), the drops are counted, the stream stays open (drop), or
//   ends with a JSON-RPC error for the listen (close);
// - SIGTERM: the legs close (no pod holds a listen stream after) and the client's stream ends
//   with the listen's `complete` result, the proxy's exit 0;
// - a listen filtered to a task's id opens a leg on that task's pod only.
// Waits are bounded polls of the proxy's metrics, never sleeps.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rawListen, rssOf, sdkClient, startPod, startProxy, tick } from './fanout_lib.mjs';

describe('a slow client, three pods flooding it', () => {
  const ctx = { pods: [] };
  const bound = 64 * 1024;
  before(async () => {
    ctx.pods.push(await startPod(0));
    for (let o = 1; o < 3; o++) ctx.pods.push(await startPod(o, ctx.pods[0].port));
  });
  after(() => { for (const p of ctx.pods) p.child.kill('SIGKILL'); });

  for (const policy of ['drop', 'close']) {
    test(`slow_client: ${policy}`, async () => {
      const proxy = await startProxy(ctx.pods[0].port, ['max_leg_buffer: 64KiB', `slow_client: ${policy}`]);
      try {
        const uri = `test://flood/${'x'.repeat(4096)}`;
        const listen = rawListen(proxy.port, { resourceSubscriptions: [uri] });
        await proxy.until('mcp_proxy_listen_legs', (v) => v === 3, 'legs open');
        for (let i = 0; i < 400 && !listen.state.text.includes('acknowledged'); i++) await tick();
        listen.socket.pause();  // the client reads no more
        const before = rssOf(proxy.child.pid);
        const perPod = 3000;  // 3 pods x 3000 x 4 KiB: 36 MiB of notifications
        await Promise.all(ctx.pods.map(async (p) => {
          const c = await sdkClient(`http://${p.host}:${p.port}/mcp`);
          await c.callTool({ name: 'flood', arguments: { count: perPod, size: 4096 } });
          await c.close();
        }));
        const reason = policy === 'drop' ? 'slow_client_dropped' : 'slow_client_closed';
        await proxy.until(`mcp_proxy_listen_drops_total{reason="${reason}"}`, (v) => v > 0, 'drops counted');
        const buffered = await proxy.value('mcp_proxy_listen_buffered_bytes');
        assert.ok(buffered <= 3 * bound, `buffered ${buffered} <= 3 legs x ${bound}`);
        const grown = rssOf(proxy.child.pid) - before;
        // Under a sanitizer freed memory stays in its quarantine (tens of MiB here): the
        // gauge above is the bound there.
        if (!process.env.MCPPROXY_SANITIZED) {
          assert.ok(grown < 8 * 1024 * 1024, `proxy memory grew ${grown} bytes for 36 MiB of notifications`);
        }
        if (policy === 'drop') {
          assert.equal(await proxy.value('mcp_proxy_listen_fanouts'), 1, 'the stream stays open');
        } else {
          listen.socket.resume();
          for (let i = 0; i < 800 && !listen.state.ended; i++) await tick();
          assert.ok(listen.state.ended, 'the stream ended');
          assert.match(listen.state.text, /Subscription closed by the proxy/, 'the client is told why');
          await proxy.until('mcp_proxy_listen_legs', (v) => v === 0, 'legs closed');
        }
        listen.socket.destroy();
      } finally {
        proxy.child.kill('SIGKILL');
      }
    });
  }
});

describe('drain and task-filtered listens', () => {
  const ctx = { pods: [] };
  before(async () => {
    ctx.pods.push(await startPod(0));
    for (let o = 1; o < 3; o++) ctx.pods.push(await startPod(o, ctx.pods[0].port));
  });
  after(() => { for (const p of ctx.pods) p.child.kill('SIGKILL'); });

  test('SIGTERM: legs closed, the client stream ends last with the listen result', async () => {
    const proxy = await startProxy(ctx.pods[0].port, []);
    const listen = rawListen(proxy.port, { toolsListChanged: true });
    await proxy.until('mcp_proxy_listen_legs', (v) => v === 3, 'legs open');
    proxy.child.kill('SIGTERM');
    const [code] = await once(proxy.child, 'exit');
    for (let i = 0; i < 400 && !listen.state.ended; i++) await tick();
    assert.equal(code, 0);
    assert.ok(listen.state.ended);
    const events = listen.state.text.split('\n').filter((l) => l.startsWith('data: '));
    assert.match(events[0], /notifications\/subscriptions\/acknowledged/);
    assert.match(events.at(-1), /"id":7,"result":\{"resultType":"complete"/);
    assert.ok(listen.state.text.endsWith('0\r\n\r\n'), 'the chunked stream ended cleanly');
    // Every leg was closed: no pod holds a listen stream any more.
    let open;
    for (let i = 0; i < 400; i++) {
      open = await Promise.all(ctx.pods.map(async (p) => (await (await fetch(`http://${p.host}:${p.port}/stats`)).json()).open));
      if (open.every((n) => n === 0)) break;
      await tick();
    }
    assert.deepEqual(open, [0, 0, 0], 'the pods\' listen streams closed');
  });

  test('a listen filtered to a task id goes to that task\'s pod only', async () => {
    const proxy = await startProxy(ctx.pods[0].port, []);
    try {
      const stats = async () => Promise.all(ctx.pods.map(async (p) =>
        (await (await fetch(`http://${p.host}:${p.port}/stats`)).json()).listens));
      // A task the proxy learned from the answer that created it (make_task on some pod).
      const res = await fetch(proxy.url, { method: 'POST', headers: { 'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2026-07-28',
        'Mcp-Method': 'tools/call', 'Mcp-Name': 'make_task' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'make_task', arguments: {},
        _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': {} } } }) });
      const answer = await res.json();
      const { taskId, pod } = answer.result;
      assert.ok(taskId, JSON.stringify(answer));
      const before = await stats();
      const listen = rawListen(proxy.port, { taskIds: [taskId] });
      for (let i = 0; i < 400 && !listen.state.ended; i++) await tick();
      const after = await stats();
      const delta = after.map((n, i) => n - before[i]);
      const ordinal = ctx.pods.findIndex((p) => `pod-${p.host}` === pod);
      assert.deepEqual(delta, delta.map((_, i) => (i === ordinal ? 1 : 0)), `listens per pod: ${delta}`);
      assert.match(listen.state.text, /acknowledged/);
      const unknown = rawListen(proxy.port, { taskIds: ['no-such-task'] });
      for (let i = 0; i < 400 && !unknown.state.ended; i++) await tick();
      assert.match(unknown.state.text, /Task not found/);
    } finally {
      proxy.child.kill('SIGKILL');
    }
  });
});
