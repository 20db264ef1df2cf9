// Issue 27's table, measured: three replicas of server.mjs (and of v1_server.mjs for the
// sessionful rows), the proxy binary in front of them, N flows per case directly against one
// replica and through the proxy; prints a Markdown table.
//
//   node measure.mjs [--binary PATH] [--flows 20] [--answers json|sse] [--task-ms 2000]
//                    [--redis] (two proxy replicas sharing one Redis, each task polled through the other)
//                    [--handles] (the v2-handles row too, with affinity.handles configured)
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    binary: { type: 'string' },
    flows: { type: 'string', default: '20' },
    answers: { type: 'string', default: 'json' },
    'task-ms': { type: 'string', default: '2000' },
    redis: { type: 'boolean', default: false },
    handles: { type: 'boolean', default: false },
  },
});
// The harness reads the binary's path when it is loaded.
if (values.binary) process.env.MCPPROXY_BINARY = values.binary;
const { startProxy, startRedis } = await import('../e2e/harness.mjs');
const { handleConfig, startServers } = await import('./era_lib.mjs');
const { cases, runCase, row, runListen } = await import('./flows.mjs');


const flows = Number(values.flows);
const args = ['--answers', values.answers, '--task-ms', values['task-ms']];
const where = values.redis ? 'two proxies sharing Redis, polled through the other' : 'through the proxy';
console.log(`| case | direct to one pod | ${where} |\n|---|---|---|`);
for (const script of ['server.mjs', 'v1_server.mjs']) {
  const direct = await startServers(script, { args });
  const pods = await startServers(script, { pods: 3, args });
  const redis = values.redis ? await startRedis() : undefined;
  const store = [...(redis ? ['--session-store', 'redis', '--redis-url', redis.url] : []),
    ...(values.handles ? handleConfig() : [])];
  const proxies = [await startProxy([...pods.proxyArgs, ...store])];
  if (redis) proxies.push(await startProxy([...pods.proxyArgs, ...store]));
  const names = Object.keys(cases).filter((n) => (cases[n].pods === 'v1') === (script === 'v1_server.mjs')
    && (values.handles || n !== 'v2-handles'));
  for (const name of names) {
    const d = await runCase(name, [direct.url], flows);
    const p = await runCase(name, proxies.map((x) => `${x.url}/mcp`), flows);
    console.log(`| ${cases[name].label} | ${row(d)} | ${row(p)} |`);
  }
  if (script === 'server.mjs') {
    const d = await runListen([direct.url]);
    const p = await runListen(proxies.map((x) => `${x.url}/mcp`));
    console.log(`| subscriptions/listen (5 listeners), 6 calls that each raise tools/list_changed on their pod | ` +
      `${d.received} of ${d.expected} notifications | ${p.received} of ${p.expected} |`);
  }
  for (const x of proxies) await x.stop();
  await redis?.stop();
  await pods.stop();
  await direct.stop();
}
process.exit(0);
