// MCP servers built with the official TypeScript SDK, several "pods" in one process:
// pod N listens on 127.0.1.N:PORT (one free port for all), so the proxy reaches them with
// the template http://127.0.1.{ordinal}:PORT. Prints "ports PORT" when all are listening.
//
//   node sdk_server.mjs --pods 3 [--mode stateful|json|stateless|legacy] [--event-store]
//
// stateful: one McpServer + StreamableHTTPServerTransport per session (SSE answers, the SDK default)
// json:      the same with enableJsonResponse
// stateless: sessionIdGenerator undefined, a new server per request
// legacy:    the 2024-11-05 HTTP+SSE transport (GET /sse, POST /messages?sessionId=)
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '3' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'stateful' },
    'event-store': { type: 'boolean', default: false },
    'retry-interval': { type: 'string' },
  },
});
const mode = values.mode;

// An event store for resumability. (The SDK's example InMemoryEventStore finds a stream by
// the part of the event id before the first '_', so it cannot replay the standalone GET
// stream, whose id is '_GET_stream'.) Events are kept in order with their stream.
class EventStore {
  constructor() {
    this.events = [];  // {id, streamId, message}
    this.seq = 0;
  }
  async storeEvent(streamId, message) {
    const id = `e${++this.seq}`;
    this.events.push({ id, streamId, message });
    return id;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.id === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.id === lastEventId);
    if (at < 0) return '';
    const { streamId } = this.events[at];
    for (const e of this.events.slice(at + 1)) {
      if (e.streamId === streamId) await send(e.id, e.message);
    }
    return streamId;
  }
}

function buildServer(podName, counters, sessionKey) {
  const server = new McpServer({ name: podName, version: '1.0.0' }, { capabilities: { logging: {} } });
  server.registerTool('whoami', { description: 'which pod answered, and a per-session counter' }, async () => {
    const key = sessionKey();
    const n = (counters.get(key) ?? 0) + 1;
    counters.set(key, n);
    return { content: [{ type: 'text', text: JSON.stringify({ pod: podName, counter: n }) }], structuredContent: { pod: podName, counter: n } };
  });
  server.registerTool('slow', {
    description: 'sends progress notifications, then the result',
    inputSchema: { steps: z.number().int(), interval_ms: z.number().int() },
  }, async ({ steps, interval_ms }, extra) => {
    const token = extra._meta?.progressToken;
    for (let i = 1; i <= steps; i++) {
      if (token !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
      }
      await new Promise((r) => setTimeout(r, interval_ms));
    }
    return { content: [{ type: 'text', text: `done after ${steps} steps on ${podName}` }] };
  });
  server.registerTool('announce', {
    description: 'sends a log message on the standalone GET stream',
    inputSchema: { text: z.string() },
  }, async ({ text }) => {
    await server.server.sendLoggingMessage({ level: 'info', data: text });
    return { content: [{ type: 'text', text: 'announced' }] };
  });
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : undefined);
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

function jsonError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function startPod(ordinal, port) {
  const podName = `pod-${ordinal}`;
  const counters = new Map();
  const transports = new Map(); // session id -> transport

  const handler = async (req, res) => {
    try {
      const url = new URL(req.url, 'http://pod');
      if (mode === 'legacy') {
        if (req.method === 'GET' && url.pathname === '/sse') {
          const transport = new SSEServerTransport('/messages', res);
          transports.set(transport.sessionId, transport);
          res.on('close', () => transports.delete(transport.sessionId));
          const server = buildServer(podName, counters, () => transport.sessionId);
          await server.connect(transport);
          return;
        }
        if (req.method === 'POST' && url.pathname === '/messages') {
          const transport = transports.get(url.searchParams.get('sessionId'));
          if (!transport) return jsonError(res, 404, -32001, 'Session not found');
          return await transport.handlePostMessage(req, res, await readBody(req));
        }
        return jsonError(res, 404, -32000, 'not found');
      }
      if (url.pathname !== '/mcp') return jsonError(res, 404, -32000, 'not found');
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      if (mode === 'stateless') {
        // A sessionless (2026-07-28) server takes POST only.
        if (req.method !== 'POST') {
          res.writeHead(405, { Allow: 'POST', 'Content-Type': 'application/json' });
          return res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
        }
        const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
        const server = buildServer(podName, counters, () => 'stateless');
        res.on('close', () => { transport.close(); server.close(); });
        await server.connect(transport);
        return await transport.handleRequest(req, res, body);
      }
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        const initialize = req.method === 'POST' && (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));
        if (sid || !initialize) {
          return jsonError(res, sid ? 404 : 400, sid ? -32001 : -32000, sid ? 'Session not found' : 'Bad Request: No valid session ID provided');
        }
        let sessionId;
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: mode === 'json',
          eventStore: values['event-store'] ? new EventStore() : undefined,
          retryInterval: values['retry-interval'] ? Number(values['retry-interval']) : undefined,
          onsessioninitialized: (id) => { sessionId = id; transports.set(id, transport); },
        });
        transport.onclose = () => { if (sessionId) transports.delete(sessionId); };
        const server = buildServer(podName, counters, () => sessionId);
        await server.connect(transport);
      }
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) jsonError(res, 500, -32603, String(e));
    }
  };
  const srv = http.createServer(handler);
  srv.keepAliveTimeout = 60000;
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, `127.0.1.${ordinal}`, () => resolve(srv.address().port));
  });
}

const pods = Number(values.pods);
let port = await startPod(0, Number(values.port));
for (let i = 1; i < pods; i++) await startPod(i, port);
process.stdout.write(`ports ${port}\n`);
