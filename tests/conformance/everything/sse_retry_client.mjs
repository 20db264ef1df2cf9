// The project's own conformance client for the suite's client scenario `sse-retry` (SEP-1699),
// on the official TypeScript SDK:
//   node sse_retry_client.mjs <server-url>   (the runner appends the URL of its test server)
// Calls test_reconnection, whose SSE stream the server closes after a priming event
// (`id:` and `retry:`) and before the result. The SDK client takes that as resumable: it
// waits the server's `retry:` interval, reconnects with a GET carrying Last-Event-ID and gets
// the result there. The scenario times that reconnection and checks the header.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = process.argv[2];
if (!url) {
  console.error('usage: node sse_retry_client.mjs <server-url>');
  process.exit(2);
}

const client = new Client({ name: 'mcp-session-proxy-sse-retry-client', version: '1.0.0' }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(new URL(url));
try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log(`tools: ${tools.map((t) => t.name).join(', ') || '(none)'}`);
  const started = performance.now();
  const result = await client.callTool({ name: 'test_reconnection', arguments: {} }, undefined, { timeout: 30000 });
  if (result.isError) throw new Error(`test_reconnection failed: ${JSON.stringify(result.content)}`);
  console.log(`test_reconnection after ${(performance.now() - started).toFixed(0)} ms: ` +
    `${result.content.map((c) => c.text ?? c.type).join(' ')}`);
  await transport.terminateSession();
  await client.close();
} catch (e) {
  console.error(`sse-retry client: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
}
