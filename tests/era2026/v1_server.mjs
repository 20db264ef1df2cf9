// The same task tool on the SDK v1 (@modelcontextprotocol/sdk 1.32.2) with sessions: one
// McpServer + StreamableHTTPServerTransport per session, the SDK's experimental tasks with its
// InMemoryTaskStore (tasks bound to their session). The baseline of issue 27's last row: a
// sessionful server is pinned by its session id, tasks and all.
//
//   node v1_server.mjs [--pods N | --host 127.0.0.1] [--port P] [--answers json|sse]
//                      [--task-ms 2000] [--poll-ms 200]
//
// Pod layout and "ports PORT" as server.mjs.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { InMemoryTaskMessageQueue, InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    answers: { type: 'string', default: 'json' },
    'task-ms': { type: 'string', default: '2000' },
    'poll-ms': { type: 'string', default: '200' },
  },
});
const taskMs = Number(values['task-ms']);
const pollMs = Number(values['poll-ms']);

function buildServer(pod, taskStore) {
  const server = new McpServer({ name: pod, version: '1.0.0' }, {
    capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
    taskStore, taskMessageQueue: new InMemoryTaskMessageQueue(),
  });
  server.registerTool('whoami', { description: 'the replica that answered' },
    async () => ({ content: [{ type: 'text', text: pod }], structuredContent: { pod } }));
  server.experimental.tasks.registerToolTask('slow_work', {
    description: 'long-running work: answers with a task',
    inputSchema: { text: z.string().optional() },
    execution: { taskSupport: 'optional' },
  }, {
    async createTask({ text }, { taskStore: store, taskRequestedTtl }) {
      const task = await store.createTask({ ttl: taskRequestedTtl, pollInterval: pollMs });
      setTimeout(() => {
        const structured = { pod, text, taskId: task.taskId };
        store.storeTaskResult(task.taskId, 'completed',
          { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured }).catch(() => {});
      }, taskMs);
      return { task };
    },
    getTask: async (_args, { taskId, taskStore: store }) => store.getTask(taskId),
    getTaskResult: async (_args, { taskId, taskStore: store }) => store.getTaskResult(taskId),
  });
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try { resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

function jsonError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function listen(pod, host, port) {
  const transports = new Map();
  const taskStore = new InMemoryTaskStore();
  const srv = http.createServer(async (req, res) => {
    try {
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        if (sid || !(req.method === 'POST' && isInitializeRequest(body))) {
          return jsonError(res, sid ? 404 : 400, sid ? -32001 : -32000, sid ? 'Session not found' : 'Bad Request: No valid session ID provided');
        }
        let id;
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: values.answers === 'json',
          onsessioninitialized: (s) => { id = s; transports.set(s, transport); },
        });
        transport.onclose = () => { if (id) transports.delete(id); };
        await buildServer(pod, taskStore).connect(transport);
      }
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) jsonError(res, 500, -32603, String(e));
    }
  });
  srv.keepAliveTimeout = 60000;
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => resolve(srv.address().port));
  });
}

const hosts = values.pods === undefined ? [values.host]
  : Array.from({ length: Number(values.pods) }, (_, i) => `127.0.1.${i}`);
let port = Number(values.port);
for (const [i, host] of hosts.entries()) port = await listen(values.pods === undefined ? `v1-${host}` : `v1-pod-${i}`, host, port);
process.stdout.write(`ports ${port}\n`);
