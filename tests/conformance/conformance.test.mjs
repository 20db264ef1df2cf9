// The official MCP conformance suite through the proxy: every server scenario that passes
// against one replica of the reference server directly must pass through the proxy in
// front of three replicas, with the memory store and with the Redis store; and the client
// scenarios initialize, tools_call and sse-retry pass with the proxy between the
// conformance clients and the runner's test servers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProxy, startRedis } from '../e2e/harness.mjs';
import { startDirectAndPods, serverSuite, clientScenario, clients } from './conformance_lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

describe('server scenarios: direct vs through the proxy', () => {
  const ctx = {};
  before(async () => {
    ctx.servers = await startDirectAndPods(freePort);
    ctx.direct = ctx.servers.direct;
    ctx.redis = await startRedis();
    const template = ctx.servers.proxyArgs;
    ctx.memory = await startProxy(template);
    ctx.viaRedis = await startProxy([...template, '--session-store', 'redis', '--redis-url', ctx.redis.url]);
  });
  after(async () => {
    await ctx.memory?.stop();
    await ctx.viaRedis?.stop();
    await ctx.redis?.stop();
    await ctx.servers?.stop();
  });

  test('every scenario that passes directly passes through the proxy (memory and redis stores)', async () => {
    const direct = await serverSuite(ctx.direct.url);
    const memory = await serverSuite(`${ctx.memory.url}/mcp`);
    const redis = await serverSuite(`${ctx.viaRedis.url}/mcp`);
    assert.ok(direct.results.size >= 30, `the suite ran (${direct.results.size} scenarios):\n${direct.out.slice(-3000)}`);
    const rows = [];
    const regressions = [];
    for (const [name, d] of direct.results) {
      const m = memory.results.get(name);
      const r = redis.results.get(name);
      rows.push(`${name.padEnd(34)} direct ${d.ok ? 'pass' : 'FAIL'}  memory ${m?.ok ? 'pass' : 'FAIL'}  redis ${r?.ok ? 'pass' : 'FAIL'}`);
      if (d.ok && !m?.ok) regressions.push(`${name} (memory)`);
      if (d.ok && !r?.ok) regressions.push(`${name} (redis)`);
    }
    const passed = (res) => [...res.results.values()].filter((x) => x.ok).length;
    console.log(`conformance server scenarios: direct ${passed(direct)}/${direct.results.size}, ` +
      `memory ${passed(memory)}/${memory.results.size}, redis ${passed(redis)}/${redis.results.size}\n${rows.join('\n')}`);
    assert.deepEqual(regressions, [], `passed directly, failed through the proxy:\n${rows.join('\n')}`);
  });
});

describe('client scenarios through the proxy', () => {
  const via = (client) => `${process.execPath} ${path.join(here, 'via_proxy.mjs')} ${path.join(clients, client)}`;
  for (const [scenario, client] of [['initialize', 'test2.ts'], ['tools_call', 'test2.ts'], ['sse-retry', 'sse-retry-test.ts']]) {
    test(scenario, async () => {
      const { code, out } = await clientScenario(scenario, via(client));
      assert.equal(code, 0, out.slice(-4000));
      assert.match(out, /OVERALL: PASSED|0 failed/, out.slice(-4000));
    });
  }
});
