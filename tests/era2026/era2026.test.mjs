// Issue 27's table, asserted: task flows of the official SDK clients (v2 at 2026-07-28, v2 and
// v1 at 2025) against the dual-era SDK v2 server (server.mjs, task table in each replica's
// memory), directly against one replica and through the proxy in front of three: with the
// memory store, and with two proxy replicas sharing one Redis where every task is polled
// through the OTHER replica right after it was created; JSON and SSE answers. Every case must
// be 20/20 clean with 0 misrouted task requests (-32602 "Task not found" from a replica that
// never saw the task). The sessionful baseline (v1_server.mjs, SDK v1 with sessions) is
// measured the same way.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProxy, startRedis } from '../e2e/harness.mjs';
import { handleConfig, startServers } from './era_lib.mjs';
import { cases, runCase, row } from './flows.mjs';

const flows = Number(process.env.MCPPROXY_ERA_FLOWS ?? 20);
// Short tasks, polled often: each flow polls several times before its task is done.
const timing = ['--task-ms', '400', '--poll-ms', '40'];

function assertClean(r, where) {
  assert.deepEqual({ clean: r.clean, misrouted: r.misrouted, errors: r.errors },
    { clean: r.flows, misrouted: 0, errors: [] }, `${cases[r.case].label}, ${where}: ${row(r)}`);
  assert.ok(r.taskRequests >= r.flows, `${where}: every flow polled (${r.taskRequests} task requests)`);
}

// One block per server kind and answer mode: the replicas, a proxy with the memory store,
// two proxies sharing Redis; and the cases that run against them.
function block(script, answers, names) {
  describe(`${script}, ${answers} answers`, () => {
    const ctx = {};
    before(async () => {
      const args = ['--answers', answers, ...timing];
      ctx.direct = await startServers(script, { args });
      ctx.pods = await startServers(script, { pods: 3, args });
      ctx.redis = await startRedis();
      ctx.memory = await startProxy(ctx.pods.proxyArgs);
      const viaRedis = [...ctx.pods.proxyArgs, '--session-store', 'redis', '--redis-url', ctx.redis.url];
      ctx.redisA = await startProxy(viaRedis);
      ctx.redisB = await startProxy(viaRedis);
    });
    after(async () => {
      for (const p of [ctx.memory, ctx.redisA, ctx.redisB]) await p?.stop();
      await ctx.redis?.stop();
      await ctx.pods?.stop();
      await ctx.direct?.stop();
    });

    for (const name of names) {
      test(`${cases[name].label}: directly, one replica`, async () => {
        const r = await runCase(name, [ctx.direct.url], flows);
        console.log(`${name} ${answers} direct: ${row(r)}`);
        assertClean(r, 'direct');
      });
      test(`${cases[name].label}: through the proxy, three replicas, memory store`, async () => {
        const r = await runCase(name, [`${ctx.memory.url}/mcp`], flows);
        console.log(`${name} ${answers} proxy/memory: ${row(r)}`);
        assertClean(r, 'proxy, memory store');
        assert.ok(r.pods.length > 1, `tasks were spread over the replicas: ${r.pods}`);
      });
      test(`${cases[name].label}: two proxy replicas sharing Redis, each task polled through the other`, async () => {
        const r = await runCase(name, [`${ctx.redisA.url}/mcp`, `${ctx.redisB.url}/mcp`], flows);
        console.log(`${name} ${answers} proxy/redis x2: ${row(r)}`);
        assertClean(r, 'two proxies, redis store');
      });
    }
  });
}

// State behind a handle (affinity.handles): use_handle calls follow the replica whose
// open_handle answer held the handle, by the Mcp-Param-Handle header the SDK client mirrors
// the x-mcp-header argument into.
describe('handles (affinity.handles), JSON answers', () => {
  const ctx = {};
  before(async () => {
    ctx.direct = await startServers('server.mjs', { args: timing });
    ctx.pods = await startServers('server.mjs', { pods: 3, args: timing });
    ctx.redis = await startRedis();
    const config = handleConfig();
    ctx.memory = await startProxy([...ctx.pods.proxyArgs, ...config]);
    const viaRedis = [...ctx.pods.proxyArgs, ...config, '--session-store', 'redis', '--redis-url', ctx.redis.url];
    ctx.redisA = await startProxy(viaRedis);
    ctx.redisB = await startProxy(viaRedis);
  });
  after(async () => {
    for (const p of [ctx.memory, ctx.redisA, ctx.redisB]) await p?.stop();
    await ctx.redis?.stop();
    await ctx.pods?.stop();
    await ctx.direct?.stop();
  });
  const targets = () => [['direct', [ctx.direct.url]], ['proxy, memory store', [`${ctx.memory.url}/mcp`]],
    ['two proxies, redis store', [`${ctx.redisA.url}/mcp`, `${ctx.redisB.url}/mcp`]]];
  test('directly, through the proxy, and through two proxies sharing Redis using the other', async () => {
    for (const [where, urls] of targets()) {
      const r = await runCase('v2-handles', urls, flows);
      console.log(`v2-handles ${where}: ${row(r)}`);
      assertClean(r, where);
    }
  });
  // A handle rule must not disturb requests that carry no Mcp-Param-* header: 2025 clients
  // (no Mcp-Method, no Mcp-Name) and their tasks.
  for (const name of ['v1-client', 'v2-legacy']) {
    test(`${cases[name].label}: unchanged where handles are configured`, async () => {
      for (const [where, urls] of targets()) {
        const r = await runCase(name, urls, flows);
        console.log(`${name} with affinity.handles, ${where}: ${row(r)}`);
        assertClean(r, `${where}, affinity.handles configured`);
      }
    });
  }
});

for (const answers of ['json', 'sse']) {
  block('server.mjs', answers, ['v2-modern', 'v1-client', 'v2-legacy']);
  block('v1_server.mjs', answers, ['v1-pods', 'v2-v1-pods']);
}
