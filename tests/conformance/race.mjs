// The GET-versus-call race of server-initiated requests: the SDK client opens a session's
// standalone GET stream and sends a tool call about 0.5 ms apart on two connections; a tool
// that asks the client something (elicitation) sends that request on the GET stream, so a
// GET that reaches the pod after the call loses it (the call then never completes). A proxy
// must not widen that window. Uses the SDK client the conformance runner itself uses.
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

// `sessions` sessions, `concurrency` at a time, each calling test_elicitation once.
// Returns how many calls were lost (no answer within `timeoutMs`).
export async function elicitationRace(url, sessions, { concurrency = 4, timeoutMs = 5000 } = {}) {
  let lost = 0;
  let next = 0;
  const errors = [];
  async function one() {
    const client = new Client({ name: 'race', version: '1' }, { capabilities: { elicitation: {} } });
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { response: 'ok' } }));
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport);
    try {
      const res = await client.callTool({ name: 'test_elicitation', arguments: { message: 'race' } }, undefined,
        { timeout: timeoutMs });
      if (!JSON.stringify(res).includes('action=accept')) errors.push(JSON.stringify(res).slice(0, 200));
    } catch (e) {
      if (String(e).includes('timed out') || e?.code === -32001) lost++;
      else errors.push(String(e).slice(0, 200));
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  }
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < sessions) {
      next++;
      await one();
    }
  }));
  return { lost, errors };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

// Time to the response head of the first request on a new client connection, for the GET
// stream of a session and for a POST (tools/list) of it, `n` of each, one at a time.
export async function firstRequestLatency(url, n = 200) {
  const target = new URL(url);
  const request = (method, headers, body) => new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method, agent: false,
      headers: { Accept: 'application/json, text/event-stream', 'Content-Type': 'application/json', ...headers } },
    (res) => {
      const micros = Number(process.hrtime.bigint() - start) / 1000;
      const sid = res.headers['mcp-session-id'];
      if (method === 'GET') {
        res.destroy();
        resolve({ micros, status: res.statusCode, sid });
        return;
      }
      res.resume();
      res.on('end', () => resolve({ micros, status: res.statusCode, sid }));
    });
    req.on('error', reject);
    req.end(body);
  });
  const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'latency', version: '1' } } });
  const get = [];
  const post = [];
  for (let i = 0; i < n; i++) {
    const { sid } = await request('POST', {}, init);
    const h = { 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25' };
    await request('POST', h, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    const g = await request('GET', h);
    const p = await request('POST', h, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }));
    if (g.status !== 200 || p.status !== 200) throw new Error(`GET ${g.status}, POST ${p.status}`);
    get.push(g.micros);
    post.push(p.micros);
    await request('DELETE', h);
  }
  get.sort((a, b) => a - b);
  post.sort((a, b) => a - b);
  return { get: { p50: percentile(get, 50), p99: percentile(get, 99) }, post: { p50: percentile(post, 50), p99: percentile(post, 99) } };
}
