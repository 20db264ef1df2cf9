// A dual-era MCP server on the official TypeScript SDK v2 (@modelcontextprotocol/server 2.4.0):
// 2026-07-28 clients on the SDK's modern path (createMcpHandler), 2025 clients on a stateless
// leg of the SDK's own transport (no session id; GET and DELETE 405). The Tasks extension is
// implemented on the SDK's request handlers with the task table in this process's memory, as
// SDK 2.4.0 leaves it to servers: a task lives on the replica that created it, which is what a
// proxy in front of several replicas must respect.
//
//   node server.mjs [--pods N | --host 127.0.0.1] [--port P] [--answers json|sse|auto]
//                   [--task-ms 2000] [--poll-ms 200] [--ttl-ms 60000]
//
// --pods N: N replicas, pod i on 127.0.1.i, all on one port (the proxy's template
// http://127.0.1.{ordinal}:PORT); otherwise one replica on --host. Port 0 picks a free one.
// Prints "ports PORT" when every replica listens.
//
// Tools: whoami (the replica's name); slow_work (answers with a task, completed after
// --task-ms, or at once with its result to a 2025 call that is not task-augmented);
// open_handle (state behind a handle, kept on this replica) and use_handle (takes the handle as
// an argument marked x-mcp-header "Handle", so a 2026 client mirrors it into Mcp-Param-Handle);
// change_tools (adds a tool and raises notifications/tools/list_changed on this replica's
// subscriptions/listen streams).
// Replica identity: every modern answer carries the SDK's io.modelcontextprotocol/serverInfo
// (the replica's name); tool results carry {pod}; "not found" errors carry data.pod.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  McpServer, ProtocolError, WebStandardStreamableHTTPServerTransport, createMcpHandler, fromJsonSchema, isLegacyRequest,
} from '@modelcontextprotocol/server';

const { values } = parseArgs({
  options: {
    pods: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    answers: { type: 'string', default: 'json' },
    'task-ms': { type: 'string', default: '2000' },
    'poll-ms': { type: 'string', default: '200' },
    'ttl-ms': { type: 'string', default: '60000' },
  },
});
const answers = values.answers;
if (!['json', 'sse', 'auto'].includes(answers)) throw new Error(`--answers ${answers}: json, sse or auto`);
const taskMs = Number(values['task-ms']);
const pollMs = Number(values['poll-ms']);
const ttlMs = Number(values['ttl-ms']);
const maxBody = 4 * 1024 * 1024;
const notFound = -32602;

// One replica's state: its task table, its handles, its tool list's version.
class Replica {
  constructor(name) {
    this.name = name;
    this.tasks = new Map();   // taskId -> task
    this.handles = new Map(); // handle -> uses
    this.extraTools = 0;
    this.bodies = new WeakMap(); // Request -> parsed body, for the factory
    this.modern = createMcpHandler((ctx) => this.build(ctx), {
      legacy: 'reject', responseMode: answers, onerror: () => {},
    });
  }

  missing(what, id) {
    return new ProtocolError(notFound, `${what} not found`, { pod: this.name, id });
  }

  createTask(text) {
    const now = new Date().toISOString();
    const task = { taskId: randomUUID(), status: 'working', createdAt: now, lastUpdatedAt: now, result: undefined };
    task.done = new Promise((resolve) => {
      task.finish = (status, result) => {
        if (task.status !== 'working') return;
        Object.assign(task, { status, result, lastUpdatedAt: new Date().toISOString() });
        clearTimeout(task.timer);
        resolve();
      };
    });
    task.timer = setTimeout(() => task.finish('completed', this.toolResult({ text, taskId: task.taskId })), taskMs);
    setTimeout(() => this.tasks.delete(task.taskId), ttlMs).unref();
    this.tasks.set(task.taskId, task);
    return task;
  }

  task(taskId) {
    const task = this.tasks.get(taskId);
    if (!task) throw this.missing('Task', taskId);
    return task;
  }

  toolResult(fields) {
    const structured = { pod: this.name, ...fields };
    return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
  }

  // The task as each era spells it: 2026-07-28 (SEP-2663: ttlMs, pollIntervalMs, the result
  // inline once completed) and 2025-11-25 (ttl, pollInterval; the result by tasks/result).
  static modernTask(task) {
    const out = { taskId: task.taskId, status: task.status, createdAt: task.createdAt,
      lastUpdatedAt: task.lastUpdatedAt, ttlMs, pollIntervalMs: pollMs };
    if (task.status === 'completed') out.result = task.result;
    return out;
  }

  static legacyTask(task) {
    return { taskId: task.taskId, status: task.status, createdAt: task.createdAt,
      lastUpdatedAt: task.lastUpdatedAt, ttl: ttlMs, pollInterval: pollMs };
  }

  // The per-request server, for either era (the SDK's factory contract).
  build(ctx) {
    const modern = ctx.era === 'modern';
    const body = ctx.requestInfo ? this.bodies.get(ctx.requestInfo) : undefined;
    const capabilities = { tools: { listChanged: true } };
    if (!modern) capabilities.tasks = { list: {}, cancel: {}, requests: { tools: { call: {} } } };
    const server = new McpServer({ name: this.name, version: '1.0.0' }, { capabilities });
    this.registerTools(server, modern, body);
    this.registerTaskMethods(server, modern);
    return server;
  }

  registerTools(server, modern, body) {
    server.registerTool('whoami', { description: 'the replica that answered' }, async () => this.toolResult({}));
    server.registerTool('slow_work', {
      description: 'long-running work: answers with a task',
      inputSchema: z.object({ text: z.string().optional() }),
      execution: { taskSupport: 'optional' },
    }, async ({ text }) => {
      if (modern) {
        const task = this.createTask(text);
        return { resultType: 'task', ...Replica.modernTask(task) };
      }
      // The SDK's 2025 tools/call result check wants content beside another result family.
      if (body?.params?.task !== undefined) return { content: [], task: Replica.legacyTask(this.createTask(text)) };
      // A 2025 call without task augmentation waits for its result.
      const task = this.createTask(text);
      await task.done;
      return task.result;
    });
    server.registerTool('open_handle', {
      description: 'keeps state on this replica behind a handle',
      inputSchema: z.object({ label: z.string().optional() }),
    }, async () => {
      const handle = `h-${randomUUID()}`;
      this.handles.set(handle, 0);
      setTimeout(() => this.handles.delete(handle), ttlMs).unref();
      return this.toolResult({ handle });
    });
    server.registerTool('use_handle', {
      description: 'uses the state behind a handle (the handle is mirrored into Mcp-Param-Handle)',
      inputSchema: fromJsonSchema({ type: 'object', required: ['handle'],
        properties: { handle: { type: 'string', 'x-mcp-header': 'Handle' } } }),
    }, async ({ handle }) => {
      if (!this.handles.has(handle)) throw this.missing('Handle', handle);
      const uses = this.handles.get(handle) + 1;
      this.handles.set(handle, uses);
      return this.toolResult({ handle, uses });
    });
    server.registerTool('change_tools', { description: 'adds a tool: tools/list_changed' }, async () => {
      this.extraTools += 1;
      this.modern.notify.toolsChanged();
      return this.toolResult({ extraTools: this.extraTools });
    });
    for (let i = 1; i <= this.extraTools; i++) {
      server.registerTool(`extra_${i}`, { description: 'added by change_tools' }, async () => this.toolResult({ extra: i }));
    }
  }

  registerTaskMethods(server, modern) {
    const byId = { params: z.object({ taskId: z.string() }).passthrough() };
    const view = modern ? Replica.modernTask : Replica.legacyTask;
    server.server.setRequestHandler('tasks/get', byId, async ({ taskId }) => view(this.task(taskId)));
    server.server.setRequestHandler('tasks/cancel', byId, async ({ taskId }) => {
      const task = this.task(taskId);
      task.finish('cancelled', undefined);
      return view(task);
    });
    server.server.setRequestHandler('tasks/list', { params: z.object({ cursor: z.string().optional() }).passthrough() },
      async () => ({ tasks: [...this.tasks.values()].map(view) }));
    if (modern) {
      // No task of this server asks for input: an update is acknowledged.
      server.server.setRequestHandler('tasks/update', byId, async ({ taskId }) => {
        this.task(taskId);
        return {};
      });
    } else {
      server.server.setRequestHandler('tasks/result', byId, async ({ taskId }) => {
        const task = this.task(taskId);
        await task.done;
        if (task.status !== 'completed') throw new ProtocolError(notFound, `Task ${task.status}`, { pod: this.name });
        return { ...task.result, _meta: { 'io.modelcontextprotocol/related-task': { taskId } } };
      });
    }
  }

  // One HTTP exchange (web-standard Request in, Response out).
  async serve(request, parsedBody) {
    if (parsedBody !== undefined) this.bodies.set(request, parsedBody);
    if (!(await isLegacyRequest(request, parsedBody))) return this.modern.fetch(request, { parsedBody });
    // 2025 clients, statelessly: a new server and transport per request (the SDK's idiom).
    if (request.method !== 'POST') {
      return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }),
        { status: 405, headers: { Allow: 'POST', 'Content-Type': 'application/json' } });
    }
    const server = this.build({ era: 'legacy', requestInfo: request });
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined,
      enableJsonResponse: answers === 'json' });
    await server.connect(transport);
    return transport.handleRequest(request, { parsedBody });
  }
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > maxBody) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

// node:http around a replica's web-standard face; the answer is streamed as it is produced.
function listen(replica, host, port) {
  const srv = http.createServer(async (req, res) => {
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    try {
      const bytes = req.method === 'POST' ? await readBody(req) : undefined;
      let parsed;
      try { parsed = bytes?.length ? JSON.parse(bytes.toString('utf8')) : undefined; } catch { parsed = undefined; }
      const request = new Request(`http://${req.headers.host ?? host}${req.url}`, {
        method: req.method, headers: req.headers, body: bytes, signal: abort.signal,
      });
      const response = await replica.serve(request, parsed);
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.flushHeaders();
      if (response.body) for await (const chunk of response.body) res.write(chunk);
      res.end();
    } catch (e) {
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: String(e) }, id: null }));
      } else {
        res.destroy();
      }
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
for (const [i, host] of hosts.entries()) {
  port = await listen(new Replica(values.pods === undefined ? `era-${host}` : `era-pod-${i}`), host, port);
}
process.stdout.write(`ports ${port}\n`);
