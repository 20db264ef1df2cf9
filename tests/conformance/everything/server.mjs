// The project's own "everything server" for the official MCP conformance suite
// (@modelcontextprotocol/conformance): every tool, resource, prompt and utility its server
// scenarios call, on the official TypeScript SDK, over sessionful Streamable HTTP.
//   PORT=18555 [MCP_TEST_HOST=127.0.0.1] node server.mjs   ->  http://MCP_TEST_HOST:PORT/mcp
// One McpServer and transport per session. Requests the server makes of the client from inside
// a tool call (elicitation, sampling) go on the session's standalone GET stream, not on the
// call's own stream; one sent while the session has no GET stream open is lost (the call then
// times out). That is the GET-versus-call race race.mjs measures: directly the SDK client's
// GET and call race each other (a few in 1000 calls lose), through the proxy none may lose.
import { randomUUID } from 'node:crypto';
import express from 'express';
import * as z from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { hostHeaderValidation } from '@modelcontextprotocol/sdk/server/middleware/hostHeaderValidation.js';
import {
  isInitializeRequest, LoggingLevelSchema, SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const host = process.env.MCP_TEST_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3000);

// A 1x1 red PNG and a WAV of 8 silent samples (8 kHz, 8-bit mono).
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';
const WAV = 'UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==';
// What a client that lost a stream is told to wait before reconnecting (SSE `retry:`).
const RETRY_MS = 500;
const LEVELS = LoggingLevelSchema.options;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

// Resumability (SEP-1699): a session's transport keeps every event it sends here, so a client
// that lost a stream gets what it missed when it comes back with Last-Event-ID. One store per
// session, dropped with it; it keeps the session's last MAX_EVENTS events.
const MAX_EVENTS = 1000;
class MemoryEventStore {
  #events = new Map(); // event id -> { streamId, message }, in the order sent
  #seq = 0;

  async storeEvent(streamId, message) {
    const id = String(++this.#seq);
    this.#events.set(id, { streamId, message });
    if (this.#events.size > MAX_EVENTS) this.#events.delete(this.#events.keys().next().value);
    return id;
  }

  async getStreamIdForEventId(eventId) {
    return this.#events.get(eventId)?.streamId;
  }

  async replayEventsAfter(lastEventId, { send }) {
    const last = this.#events.get(lastEventId);
    if (!last) throw new Error(`unknown event id ${lastEventId}`);
    let after = false;
    for (const [id, { streamId, message }] of this.#events) {
      // A priming event (empty message) only gave the client its first id: nothing to replay.
      if (after && streamId === last.streamId && 'jsonrpc' in message) await send(id, message);
      if (id === lastEventId) after = true;
    }
    return last.streamId;
  }
}

// The conformance scenarios' elicitation schemas. test_elicitation's fields are optional: the
// race test (race.mjs) answers it with { response: 'ok' }, which the SDK checks against it.
const userSchema = {
  type: 'object',
  properties: {
    username: { type: 'string', description: "User's response" },
    email: { type: 'string', description: "User's email address" },
  },
};
// SEP-1034: a default for every primitive type.
const defaultsSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Name', default: 'John Doe' },
    age: { type: 'integer', description: 'Age', default: 30 },
    score: { type: 'number', description: 'Score', default: 95.5 },
    status: { type: 'string', description: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', description: 'Verified', default: true },
  },
};
// SEP-1330: the five enum forms.
const enumsSchema = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    titledSingle: {
      type: 'string',
      oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' },
        { const: 'value3', title: 'Third Option' }],
    },
    legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
    untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
    titledMulti: {
      type: 'array',
      items: {
        anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' },
          { const: 'value3', title: 'Third Choice' }],
      },
    },
  },
};

// json_schema_2020_12_tool (SEP-1613): the SDK turns a zod schema into draft-07 JSON Schema and
// copies a schema's .meta() keys into it, so these carry the 2020-12 keywords the scenario
// looks for; the body (type, properties, additionalProperties) reads the same in both drafts.
const addressJsonSchema = { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } };
const schema2020 = z.object({
  name: z.string().optional(),
  address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional(),
}).strict().meta({ $schema: 'https://json-schema.org/draft/2020-12/schema', $defs: { address: addressJsonSchema } });

// One session's server.
function createServer() {
  const mcp = new McpServer({ name: 'mcp-session-proxy-everything', version: '1.0.0' },
    { capabilities: { logging: {}, resources: { subscribe: true } } });
  // The session's log level (logging/setLevel): a tool's log messages below it are not sent.
  let logLevel = LEVELS[0];
  mcp.server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    logLevel = request.params.level;
    return {};
  });
  // A tool's log messages and progress go on the call's own stream (sendNotification is tied
  // to the request), so they reach the client before the call's result.
  const log = (extra, level, data) => (LEVELS.indexOf(level) >= LEVELS.indexOf(logLevel)
    ? extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'everything', data } })
    : Promise.resolve());

  mcp.registerTool('test_simple_text', { description: 'Returns a simple text response' },
    async () => text('This is a simple text response for testing.'));
  mcp.registerTool('test_image_content', { description: 'Returns an image (a 1x1 PNG)' },
    async () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }));
  mcp.registerTool('test_audio_content', { description: 'Returns audio (a short WAV)' },
    async () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }));
  mcp.registerTool('test_embedded_resource', { description: 'Returns an embedded text resource' },
    async () => ({
      content: [{
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      }],
    }));
  mcp.registerTool('test_multiple_content_types', { description: 'Returns text, an image and a resource' },
    async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) },
        },
      ],
    }));
  mcp.registerTool('test_tool_with_logging', { description: 'Sends three info log messages while it runs' },
    async (extra) => {
      await log(extra, 'info', 'Tool execution started');
      await sleep(50);
      await log(extra, 'info', 'Tool processing data');
      await sleep(50);
      await log(extra, 'info', 'Tool execution completed');
      return text('Tool with logging executed successfully');
    });
  mcp.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50 and 100 of 100' },
    async (extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progress > 0) await sleep(50);
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
        }
      }
      return text('Tool with progress executed successfully');
    });
  mcp.registerTool('test_error_handling', { description: 'Always fails (isError: true)' },
    async () => ({ isError: true, ...text('This tool intentionally returns an error for testing') }));
  mcp.registerTool('test_sampling', {
    description: 'Asks the client to sample an LLM with the prompt',
    inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') },
  }, async ({ prompt }) => {
    const result = await mcp.server.createMessage({
      messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
      maxTokens: 100,
    });
    return text(`LLM response: ${result.content.type === 'text' ? result.content.text : JSON.stringify(result.content)}`);
  });
  const elicit = async (message, requestedSchema) => {
    const result = await mcp.server.elicitInput({ message, requestedSchema });
    return `action=${result.action}, content=${JSON.stringify(result.content ?? {})}`;
  };
  mcp.registerTool('test_elicitation', {
    description: 'Asks the user for input (elicitation)',
    inputSchema: { message: z.string().describe('The message to show the user') },
  }, async ({ message }) => text(`User response: ${await elicit(message, userSchema)}`));
  mcp.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicitation whose fields have defaults (SEP-1034)' },
    async () => text(`Elicitation completed: ${await elicit('Please review your information', defaultsSchema)}`));
  mcp.registerTool('test_elicitation_sep1330_enums', { description: 'Elicitation with every enum form (SEP-1330)' },
    async () => text(`Elicitation completed: ${await elicit('Please choose your options', enumsSchema)}`));
  mcp.registerTool('json_schema_2020_12_tool', {
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: schema2020,
  }, async (args) => text(`Received: ${JSON.stringify(args)}`));
  mcp.registerTool('test_reconnection', { description: 'Closes its SSE stream mid-call; the result comes on reconnection (SEP-1699)' },
    async (extra) => {
      // The SDK offers closeSSEStream only where the client can resume (an event store, and
      // protocol 2025-11-25 or later, which got a priming event id): the result sent after it
      // waits in the event store for the client's GET with Last-Event-ID. Elsewhere the
      // result comes on the open stream.
      extra.closeSSEStream?.();
      await sleep(100);
      return text('Reconnection test completed successfully');
    });

  mcp.registerResource('static-text', 'test://static-text',
    { description: 'A static text resource', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }));
  mcp.registerResource('static-binary', 'test://static-binary',
    { description: 'A static binary resource (a PNG)', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }] }));
  mcp.registerResource('watched-resource', 'test://watched-resource',
    { description: 'A resource to subscribe to', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content.' }] }));
  mcp.registerResource('template-data', new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Data for an id', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
    }));
  // The URIs this session subscribed to (resources/subscribe, resources/unsubscribe).
  const subscriptions = new Set();
  mcp.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  mcp.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  mcp.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' },
    () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] }));
  const suggestions = ['paris', 'park', 'party', 'test', 'testing', 'test-value'];
  mcp.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two arguments',
    argsSchema: {
      // completion/complete offers the suggestions that start with what was typed.
      arg1: completable(z.string().describe('First test argument'), (value) => suggestions.filter((s) => s.startsWith(value))),
      arg2: z.string().describe('Second test argument'),
    },
  }, ({ arg1, arg2 }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
  }));
  mcp.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt that embeds a resource',
    argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
  }, ({ resourceUri }) => ({
    messages: [
      { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
    ],
  }));
  mcp.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' },
    () => ({
      messages: [
        { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
        { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
      ],
    }));
  return mcp;
}

// Open sessions: mcp-session-id -> transport.
const sessions = new Map();

function jsonRpcError(res, status, code, message) {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

// The transport of the request's session, or an answer: 400 without a session id, 404 for
// one this server does not know (never issued, deleted, or lost with a restart).
function sessionOf(req, res) {
  const id = req.headers['mcp-session-id'];
  if (!id) return jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
  const transport = sessions.get(id);
  if (!transport) return jsonRpcError(res, 404, -32001, 'Session not found');
  return transport;
}

// An initialize without a session id starts a session: its own server and transport.
async function startSession(req, res) {
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore: new MemoryEventStore(),
    retryInterval: RETRY_MS,
    onsessioninitialized: (id) => { sessions.set(id, transport); },
  });
  // Closed by a DELETE or by the server: the session is gone.
  transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
  await createServer().connect(transport);
  await transport.handleRequest(req, res, req.body);
}

const app = express();
// DNS rebinding protection (scenario dns-rebinding-protection): Host must name loopback or this
// server's own address (a proxy in front passes the client's Host through), and so must an
// Origin, where there is one.
const allowed = ['localhost', '127.0.0.1', '[::1]', host.includes(':') ? `[${host}]` : host];
app.use(hostHeaderValidation(allowed));
app.use((req, res, next) => {
  const origin = req.headers.origin;
  let hostname;
  try {
    hostname = origin && new URL(origin).hostname;
  } catch {
    hostname = '';
  }
  if (origin && !allowed.includes(hostname)) return jsonRpcError(res, 403, -32000, `Invalid Origin: ${origin}`);
  next();
});
app.use(express.json({ limit: '4mb' }));

const handle = (fn) => async (req, res) => {
  try {
    await fn(req, res);
  } catch (e) {
    console.error('everything server:', e);
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
  }
};
app.post('/mcp', handle(async (req, res) => {
  if (!req.headers['mcp-session-id'] && isInitializeRequest(req.body)) return startSession(req, res);
  const transport = sessionOf(req, res);
  if (transport) await transport.handleRequest(req, res, req.body);
}));
// GET: the session's standalone SSE stream (or, with Last-Event-ID, a resumed one); DELETE: its end.
for (const method of ['get', 'delete']) {
  app[method]('/mcp', handle(async (req, res) => {
    const transport = sessionOf(req, res);
    if (transport) await transport.handleRequest(req, res);
  }));
}
// A body express.json could not take (bad JSON, too large): a JSON-RPC error, as the SDK's
// transport would answer it.
app.use((err, req, res, next) => {
  if (res.headersSent) return next(err);
  jsonRpcError(res, err.status ?? 500, err.type === 'entity.parse.failed' ? -32700 : -32000, err.message);
});

app.listen(port, host, (err) => {
  if (err) {
    console.error(`everything server: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`everything server on http://${host.includes(':') ? `[${host}]` : host}:${port}/mcp`);
});
