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
// Tools (tasks.mjs for the task methods): slow_work (answers with a task, completed after
// --task-ms, to a 2026 client that declared the tasks extension or a task-augmented 2025 call;
// else its result after --task-ms); the conformance suite's task fixtures greet, slow_compute,
// failing_job, protocol_error_job and its plain fixtures (everything.mjs); whoami; open_handle (state behind a handle, kept on this replica) and use_handle (takes the handle as
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
  McpServer, ProtocolError, WebStandardStreamableHTTPServerTransport, createMcpHandler, fromJsonSchema,
  hostHeaderValidationResponse, isLegacyRequest, localhostAllowedHostnames, originValidationResponse,
} from '@modelcontextprotocol/server';
import { registerEverything } from './everything.mjs';
import { TASKS_EXTENSION, TaskTable, sleep } from './tasks.mjs';

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
const ttlMs = Number(values['ttl-ms']);
const maxBody = 4 * 1024 * 1024;
const taskTool = { execution: { taskSupport: 'optional' } };

// One replica's state: its task table, its handles, its tool list's version.
class Replica {
  constructor(name, host) {
    this.name = name;
    this.allowedHosts = [...localhostAllowedHostnames(), host];
    this.tasks = new TaskTable(name, { ttlMs, pollMs: Number(values['poll-ms']) });
    this.handles = new Map(); // handle -> uses
    this.extraTools = 0;
    this.bodies = new WeakMap(); // Request -> parsed body, for the factory
    this.modern = createMcpHandler((ctx) => this.build(ctx), {
      legacy: 'reject', responseMode: answers, onerror: () => {},
    });
  }

  toolResult(fields) {
    const structured = { pod: this.name, ...fields };
    return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
  }

  // The per-request server, for either era (the SDK's factory contract).
  build(ctx) {
    const modern = ctx.era === 'modern';
    const body = ctx.requestInfo ? this.bodies.get(ctx.requestInfo) : undefined;
    const capabilities = { tools: { listChanged: true }, logging: {} };
    if (modern) capabilities.extensions = { [TASKS_EXTENSION]: {} };
    else capabilities.tasks = { list: {}, cancel: {}, requests: { tools: { call: {} } } };
    const server = new McpServer({ name: this.name, version: '1.0.0' }, { capabilities });
    this.registerTaskTools(server, modern, body);
    this.registerTools(server);
    registerEverything(server);
    this.tasks.register(server, modern, body);
    return server;
  }

  // The tools that answer with a task (the conformance suite's task fixtures among them).
  registerTaskTools(server, modern, body) {
    const answer = (run) => this.tasks.answer(modern, body, run);
    server.registerTool('slow_work', {
      description: 'long-running work: answers with a task', inputSchema: z.object({ text: z.string().optional() }), ...taskTool,
    }, async ({ text }) => answer(async (signal, taskId) => {
      await sleep(taskMs, signal);
      return this.toolResult({ text, taskId });
    }));
    server.registerTool('slow_compute', {
      description: 'sleeps `seconds`, then answers', inputSchema: z.object({ seconds: z.number().min(0) }), ...taskTool,
    }, async ({ seconds }) => answer(async (signal) => {
      await sleep(seconds * 1000, signal);
      return { content: [{ type: 'text', text: `Computed after ${seconds}s` }] };
    }));
    server.registerTool('failing_job', { description: 'a tool execution error after a while', ...taskTool },
      async () => answer(async (signal) => {
        await sleep(Math.min(taskMs, 1000), signal);
        return { isError: true, content: [{ type: 'text', text: 'failing_job failed' }] };
      }));
    server.registerTool('protocol_error_job', { description: 'a protocol error after a while', ...taskTool },
      async () => answer(async (signal) => {
        await sleep(Math.min(taskMs, 200), signal);
        throw new ProtocolError(-32603, 'protocol_error_job failed');
      }));
  }

  registerTools(server) {
    server.registerTool('whoami', { description: 'the replica that answered' }, async () => this.toolResult({}));
    server.registerTool('greet', { description: 'says hello', inputSchema: z.object({ name: z.string() }) },
      async ({ name }) => ({ content: [{ type: 'text', text: `Hello, ${name}!` }] }));
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
      if (!this.handles.has(handle)) throw new ProtocolError(-32602, 'Handle not found', { pod: this.name, handle });
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

  // One HTTP exchange (web-standard Request in, Response out).
  async serve(request, parsedBody) {
    // DNS rebinding protection: Host and Origin must name loopback or this replica.
    const refused = hostHeaderValidationResponse(request, this.allowedHosts)
      ?? originValidationResponse(request, this.allowedHosts);
    if (refused) return refused;
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
  port = await listen(new Replica(values.pods === undefined ? `era-${host}` : `era-pod-${i}`, host), host, port);
}
process.stdout.write(`ports ${port}\n`);
