// One replica of an MCP server on the official TypeScript SDK v2 (@modelcontextprotocol/server
// 2.4.0, 2026-07-28 on the SDK's createMcpHandler) for the subscriptions/listen fan-out tests
// (fanout.test.mjs). Its notifications come from the SDK's own in-process event bus, as a
// deployment without a shared bus has them: a listen held by this process hears only this
// process's events. One process per replica, so a test can restart one pod.
//
//   node fanout_pod.mjs --host 127.0.1.N --port P   (port 0: a free one; prints "port P")
//
// Tools: change_tools (tools/list_changed), touch {uri} (resources/updated for uri; each call
// a distinct uri, so a duplicate can be told), flood {count, size} (`count` resources/updated
// of `size` bytes each, for a slow client), make_task (a task: resultType task, its taskId). GET /stats: {pod, listens, open} (listen requests seen,
// listen streams still open).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { McpServer, createMcpHandler } from '@modelcontextprotocol/server';

const { values } = parseArgs({
  options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '0' } },
});
const pod = `pod-${values.host}`;
let listens = 0;
let open = 0;

const handler = createMcpHandler(() => {
  const server = new McpServer({ name: pod, version: '1.0.0' },
    { capabilities: { tools: { listChanged: true }, resources: { subscribe: true } } });
  const done = (fields) => ({ content: [{ type: 'text', text: JSON.stringify({ pod, ...fields }) }] });
  server.registerTool('change_tools', { description: 'raises tools/list_changed here' }, async () => {
    handler.notify.toolsChanged();
    return done({});
  });
  server.registerTool('touch', { description: 'raises resources/updated for uri here',
    inputSchema: z.object({ uri: z.string() }) }, async ({ uri }) => {
    handler.notify.resourceUpdated(uri);
    return done({ uri });
  });
  server.registerTool('flood', { description: 'raises `count` resources/updated of `size` bytes',
    inputSchema: z.object({ count: z.number(), size: z.number() }) }, async ({ count, size }) => {
    const uri = `test://flood/${'x'.repeat(size)}`;
    for (let i = 0; i < count; i++) handler.notify.resourceUpdated(uri);
    return done({ count });
  });
  // A task as the Tasks extension answers it (SEP-2663): the proxy learns its id -> this pod.
  server.registerTool('make_task', { description: 'answers with a task' }, async () => ({
    resultType: 'task', taskId: randomUUID(), status: 'working', ttlMs: 60000, pollIntervalMs: 200, pod,
  }));
  server.registerResource('flood', 'test://flood', { description: 'flooded' }, async () => ({ contents: [] }));
  return server;
}, { legacy: 'reject', responseMode: 'json', onerror: () => {} });

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const srv = http.createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ pod, listens, open }));
    return;
  }
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  try {
    const bytes = req.method === 'POST' ? await readBody(req) : undefined;
    let parsed;
    try { parsed = bytes?.length ? JSON.parse(bytes.toString('utf8')) : undefined; } catch { parsed = undefined; }
    if (parsed?.method === 'subscriptions/listen') {
      listens += 1;
      open += 1;
      res.on('close', () => { open -= 1; });
    }
    const request = new Request(`http://${req.headers.host}${req.url}`,
      { method: req.method, headers: req.headers, body: bytes, signal: abort.signal });
    const response = await handler.fetch(request, { parsedBody: parsed });
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.flushHeaders();
    if (response.body) for await (const chunk of response.body) res.write(chunk);
    res.end();
  } catch {
    if (!res.headersSent) res.writeHead(500);
    res.destroy();
  }
});
srv.keepAliveTimeout = 60000;
srv.listen(Number(values.port), values.host, () => process.stdout.write(`port ${srv.address().port}\n`));
