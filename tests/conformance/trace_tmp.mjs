import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
const url = process.argv[2]; const n = Number(process.argv[3] ?? 200);
let next = 0; const trace = []; const lost = [];
async function one() {
  const client = new Client({ name: 'race', version: '1' }, { capabilities: { elicitation: {} } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { response: 'ok' } }));
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: async (u, init) => {
    const h = new Headers(init?.headers); const sid = h.get('mcp-session-id') ?? '-';
    const t = process.hrtime.bigint(); const r = await fetch(u, init);
    const t2 = process.hrtime.bigint();
    trace.push(`${t} ${t2} ${init?.method} ${sid}`); return r; } });
  await client.connect(transport);
  try { await client.callTool({ name: 'test_elicitation', arguments: { message: 'race' } }, undefined, { timeout: 3000 }); }
  catch (e) { lost.push(transport.sessionId); }
  finally { await transport.terminateSession().catch(() => {}); await client.close(); }
}
await Promise.all(Array.from({ length: 4 }, async () => { while (next < n) { next++; await one(); } }));
console.log(JSON.stringify(lost)); (await import('node:fs')).writeFileSync('/tmp/client_trace.txt', trace.join('\n'));
