// Helpers of the listen fan-out tests (fanout.test.mjs, fanout_bounds.test.mjs): SDK v2 pods of
// fanout_pod.mjs (one process each, on 127.0.1.N), a proxy with subscriptions.fanout whose config
// file a test rewrites and reloads, SDK v2 clients, raw listens read (or not) by the test.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { freePort, metric, proxyBinary } from '../e2e/harness.mjs';

export { metric };

const here = path.dirname(fileURLToPath(import.meta.url));
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });
export const tick = () => new Promise((r) => setTimeout(r, 25));

export async function startPod(ordinal, port = 0) {
  const child = spawn(process.execPath, [path.join(here, 'fanout_pod.mjs'), '--host', `127.0.1.${ordinal}`,
    '--port', String(port)], { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const [line] = await once(readline.createInterface({ input: child.stdout }), 'line');
  return { child, port: Number(line.split(' ')[1]), host: `127.0.1.${ordinal}` };
}

export async function killPod(pod) {
  pod.child.kill('SIGKILL');
  await once(pod.child, 'exit');
  children.delete(pod.child);
}

// A proxy whose config file the test rewrites and reloads (SIGHUP).
export async function startProxy(podPort, settings) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fanout-'));
  const port = await freePort();
  const admin = await freePort();
  const proxy = {
    file: path.join(dir, 'proxy.yaml'), port, admin, url: `http://127.0.0.1:${port}/mcp`,
    write(replicas, extra = settings) {
      writeFileSync(this.file, [`listen: 127.0.0.1:${port}`, `admin_listen: 127.0.0.1:${admin}`,
        'backend:', `  url_template: http://127.0.1.{ordinal}:${podPort}`, `  replicas: ${replicas}`,
        'subscriptions:', '  fanout: true', ...extra.map((l) => `  ${l}`), ''].join('\n'));
    },
    async metrics() { return (await fetch(`http://127.0.0.1:${admin}/metrics`)).text(); },
    async value(series) { return metric(await this.metrics(), series) ?? 0; },
    // Bounded poll until `series` satisfies `ok`.
    async until(series, ok, what) {
      let v;
      for (let i = 0; i < 800; i++) {
        v = await this.value(series);
        if (ok(v)) return v;
        await tick();
      }
      throw new Error(`${what}: ${series} = ${v}`);
    },
    async reload(replicas) {
      const generation = await this.value('mcp_proxy_config_generation');
      this.write(replicas);
      this.child.kill('SIGHUP');
      await this.until('mcp_proxy_config_generation', (v) => v > generation, 'reload applied');
    },
  };
  proxy.write(3);
  proxy.child = spawn(proxyBinary, ['--config', proxy.file, '--log-level', 'warn'], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(proxy.child);
  for (let i = 0; i < 400; i++) {
    try { if ((await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200) break; } catch { /* not yet */ }
    await tick();
  }
  return proxy;
}

export async function sdkClient(url) {
  const client = new Client({ name: 'fanout-test', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: '2026-07-28' } } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

export const uriOf = (i) => `test://touched/${i}`;

// A raw listen: the SDK v2 client's request bytes, read (or not) by the test itself.
export function rawListen(port, filter) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'subscriptions/listen', params: {
    notifications: filter, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {} } } });
  const socket = net.connect(port, '127.0.0.1');
  socket.write([`POST /mcp HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Content-Type: application/json',
    'Accept: application/json, text/event-stream', 'MCP-Protocol-Version: 2026-07-28',
    'Mcp-Method: subscriptions/listen', `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n'));
  const state = { text: '', ended: false };
  socket.on('data', (d) => { state.text += d.toString('latin1'); });
  socket.on('close', () => { state.ended = true; });
  socket.on('error', () => {});
  return { socket, state };
}

export function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) * 1024;
}

