// The conformance suite's plain fixtures on the SDK v2 server (tools, resources, prompts,
// completion), as tests/conformance/everything/server.mjs serves them on SDK v1: so that the
// runner's 2026-07-28 server scenarios have something to pass directly, and then through the
// proxy. Scenarios that need a server-to-client request (elicitation, sampling, the
// input_required rounds) are not served: they fail directly and through the proxy alike.
import { z } from 'zod';
import { ResourceTemplate, completable } from '@modelcontextprotocol/server';

// A 1x1 red PNG and a WAV of 8 silent samples (8 kHz, 8-bit mono).
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC';
const WAV = 'UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (t) => ({ content: [{ type: 'text', text: t }] });

function registerTools(mcp) {
  mcp.registerTool('test_simple_text', { description: 'Returns a simple text response' },
    async () => text('This is a simple text response for testing.'));
  mcp.registerTool('test_image_content', { description: 'Returns an image (a 1x1 PNG)' },
    async () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }));
  mcp.registerTool('test_audio_content', { description: 'Returns audio (a short WAV)' },
    async () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }));
  mcp.registerTool('test_embedded_resource', { description: 'Returns an embedded text resource' },
    async () => ({ content: [{ type: 'resource',
      resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }));
  mcp.registerTool('test_multiple_content_types', { description: 'Returns text, an image and a resource' },
    async () => ({ content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json',
        text: JSON.stringify({ test: 'data', value: 123 }) } },
    ] }));
  mcp.registerTool('test_tool_with_logging', { description: 'Sends three info log messages while it runs' },
    async (ctx) => {
      for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await ctx.mcpReq.log('info', step, 'everything');
        await sleep(50);
      }
      return text('Tool with logging executed successfully');
    });
  mcp.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50 and 100 of 100' },
    async (ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progress > 0) await sleep(50);
        if (progressToken !== undefined) {
          await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } });
        }
      }
      return text('Tool with progress executed successfully');
    });
  mcp.registerTool('test_error_handling', { description: 'Always fails (isError: true)' },
    async () => ({ isError: true, ...text('This tool intentionally returns an error for testing') }));
  mcp.registerTool('json_schema_2020_12_tool', {
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: z.object({
      name: z.string().optional(),
      address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional(),
    }).strict(),
  }, async (args) => text(`Received: ${JSON.stringify(args)}`));
}

function registerResources(mcp) {
  mcp.registerResource('static-text', 'test://static-text', { description: 'A static text resource', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }));
  mcp.registerResource('static-binary', 'test://static-binary', { description: 'A static binary resource (a PNG)', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }] }));
  mcp.registerResource('watched-resource', 'test://watched-resource', { description: 'A resource to subscribe to', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content.' }] }));
  mcp.registerResource('template-data', new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Data for an id', mimeType: 'application/json' },
    async (uri, { id }) => ({ contents: [{ uri: uri.href, mimeType: 'application/json',
      text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] }));
}

function registerPrompts(mcp) {
  const user = (content) => ({ role: 'user', content });
  mcp.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' },
    () => ({ messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })] }));
  const suggestions = ['paris', 'park', 'party', 'test', 'testing', 'test-value'];
  mcp.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two arguments',
    argsSchema: z.object({
      arg1: completable(z.string().describe('First test argument'), (value) => suggestions.filter((s) => s.startsWith(value))),
      arg2: z.string().describe('Second test argument'),
    }),
  }, ({ arg1, arg2 }) => ({ messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` })] }));
  mcp.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt that embeds a resource',
    argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }),
  }, ({ resourceUri }) => ({ messages: [
    user({ type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
    user({ type: 'text', text: 'Please process the embedded resource above.' }),
  ] }));
  mcp.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' },
    () => ({ messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }),
      user({ type: 'text', text: 'Please analyze the image above.' })] }));
}

export function registerEverything(mcp) {
  registerTools(mcp);
  registerResources(mcp);
  registerPrompts(mcp);
}
