// Issue 28: one subscriptions/listen hears every pod (subscriptions.fanout). Real SDK v2 pods
// (fanout_pod.mjs, one process each, notifications on each process's own event bus) behind
// the proxy, SDK v2 clients listening through it: every notification raised on any pod reaches
// every listener exactly once (each call a distinct resource uri, so a duplicate or a loss is
// seen), over three runs, each with a pod restarted and the replicas scaled 3 -> 2 -> 4 by
// reloads during the run. Waits are bounded polls of the proxy's metrics, never sleeps.
// The bounds, the drain and task-filtered listens: fanout_bounds.test.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { killPod, sdkClient, startPod, startProxy, tick, uriOf } from './fanout_lib.mjs';

describe('subscriptions/listen fanned out over SDK v2 pods', () => {
  const ctx = { pods: [] };
  before(async () => {
    ctx.pods.push(await startPod(0));
    for (let o = 1; o < 4; o++) ctx.pods.push(await startPod(o, ctx.pods[0].port));
    ctx.proxy = await startProxy(ctx.pods[0].port, []);
  });
  after(async () => {
    ctx.proxy?.child.kill('SIGKILL');
    for (const p of ctx.pods) p.child.kill('SIGKILL');
  });

  // Several runs, each with a pod restarted and the replicas reloaded 3 -> 2 -> 4 (and back to
  // 3 for the next run): every listener gets every notification raised on any pod, once.
  for (const run of [1, 2, 3]) {
    test(`run ${run}: every notification once to every listener, a pod restarted, replicas 3 -> 2 -> 4`, async (t) => {
      const perPhase = 6;
      const total = perPhase * 4;
      const base = (run - 1) * 1000;
      const uris = Array.from({ length: total }, (_, i) => uriOf(base + i));
      const listeners = [];
      const clients = [];
      t.after(async () => {
        // The next run starts from three replicas and no listen, whether this one passed or not.
        for (const c of clients) await c.close().catch(() => {});
        await ctx.proxy.reload(3);
      });
      for (let l = 0; l < 3; l++) {
        const client = await sdkClient(ctx.proxy.url);
        clients.push(client);
        const got = { uris: [], toolsChanged: 0 };
        client.setNotificationHandler('notifications/resources/updated', (n) => got.uris.push(n.params.uri));
        client.setNotificationHandler('notifications/tools/list_changed', () => { got.toolsChanged += 1; });
        await client.listen({ toolsListChanged: true, resourceSubscriptions: uris });
        listeners.push({ client, got });
      }
      const legs = (n) => ctx.proxy.until('mcp_proxy_listen_legs', (v) => v === n, `${n} legs open`);
      await legs(9);
      const caller = await sdkClient(ctx.proxy.url);
      clients.push(caller);
      let next = 0;
      let changes = 0;
      // Every notification of the calls so far has reached every listener (bounded poll): a pod
      // answers a call before its bus has written the notification to its listen streams, so
      // one killed or scaled away right after its answer would take that notification with it.
      const delivered = async () => {
        for (let i = 0; i < 400 && listeners.some((l) => l.got.uris.length < next || l.got.toolsChanged < changes); i++) {
          await tick();
        }
      };
      const phase = async () => {
        for (let i = 0; i < perPhase; i++) await caller.callTool({ name: 'touch', arguments: { uri: uriOf(base + next++) } });
        await caller.callTool({ name: 'change_tools', arguments: {} });
        changes += 1;
        await delivered();
      };
      await phase();
      // A pod restarts: its legs fail, are opened again with backoff; the listeners see nothing.
      const reopened = await ctx.proxy.value('mcp_proxy_listen_legs_reopened_total');
      const restarted = run % 3;
      await killPod(ctx.pods[restarted]);
      ctx.pods[restarted] = await startPod(restarted, ctx.pods[0].port);
      await ctx.proxy.until('mcp_proxy_listen_legs_reopened_total', (v) => v >= reopened + 3, 'legs re-opened');
      await legs(9);
      await phase();
      await ctx.proxy.reload(2);
      await legs(6);
      await phase();
      await ctx.proxy.reload(4);
      await legs(12);
      await phase();
      const expected = uris.slice(0, next);
      for (const [i, l] of listeners.entries()) {
        assert.equal(l.got.uris.length, next, `run ${run} listener ${i}: notifications received == calls made`);
        assert.deepEqual([...l.got.uris].sort(), [...expected].sort(), `run ${run} listener ${i}: every touch once, no duplicate`);
        assert.equal(l.got.toolsChanged, changes, `run ${run} listener ${i}: every tools/list_changed once`);
      }
      await caller.close();
      for (const l of listeners) await l.client.close();
      // The clients went: every leg closed.
      await legs(0);
      await ctx.proxy.until('mcp_proxy_listen_fanouts', (v) => v === 0, 'listens ended');
    });
  }
});

