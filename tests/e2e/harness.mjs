// Starts SDK server pods and the real proxy binary on 127.0.0.1 / 127.0.1.N with free ports.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const proxyBinary = process.env.MCPPROXY_BINARY ?? path.join(here, '../../build/mcp-session-proxy');

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

export async function startPods(pods, args = []) {
  const child = spawn(process.execPath, [path.join(here, 'sdk_server.mjs'), '--pods', String(pods), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const lines = readline.createInterface({ input: child.stdout });
  const [line] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(() => { throw new Error('SDK server exited before listening'); }),
  ]);
  const port = Number(line.split(' ')[1]);
  return { port, template: `http://127.0.1.{ordinal}:${port}`, stop: () => stop(child) };
}

export async function startProxy(args) {
  const port = await freePort();
  const admin = await freePort();
  const child = spawn(proxyBinary, ['--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`,
    '--log-level', process.env.MCPPROXY_LOG_LEVEL ?? 'warn', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(child);
  let exited = false;
  child.on('exit', () => { exited = true; });
  // Bounded poll of /readyz: the proxy is ready when it answers 200.
  for (let i = 0; i < 200 && !exited; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200) break;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  if (exited) throw new Error('proxy exited at start');
  return {
    port, admin, url: `http://127.0.0.1:${port}`, child,
    metrics: async () => (await fetch(`http://127.0.0.1:${admin}/metrics`)).text(),
    stop: () => stop(child),
  };
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
  children.delete(child);
}

export function metric(page, series) {
  const line = page.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
