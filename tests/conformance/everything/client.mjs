// The project's own conformance client for the suite's client scenarios `initialize` and
// `tools_call`, on the official TypeScript SDK:
//   node client.mjs <server-url>        (the runner appends the URL of its test server)
// Initializes, lists the server's tools, calls add_numbers where the server offers it
// (tools_call checks that call and its arguments), ends the session where there is one, closes.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = process.argv[2];
if (!url) {
  console.error('usage: node client.mjs <server-url>');
  process.exit(2);
}

const client = new Client({ name: 'mcp-session-proxy-conformance-client', version: '1.0.0' }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(new URL(url));
try {
  await client.connect(transport);
  console.log(`initialized: ${JSON.stringify(client.getServerVersion())}, protocol ${transport.protocolVersion}`);
  const { tools } = await client.listTools();
  console.log(`tools: ${tools.map((t) => t.name).join(', ') || '(none)'}`);
  if (tools.some((t) => t.name === 'add_numbers')) {
    const result = await client.callTool({ name: 'add_numbers', arguments: { a: 5, b: 3 } });
    if (result.isError) throw new Error(`add_numbers failed: ${JSON.stringify(result.content)}`);
    console.log(`add_numbers(5, 3): ${result.content.map((c) => c.text ?? c.type).join(' ')}`);
  }
  await transport.terminateSession();
  await client.close();
} catch (e) {
  console.error(`client: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
}
