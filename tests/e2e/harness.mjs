// Starts SDK server pods and the real proxy binary on 127.0.0.1 / 127.0.1.N with free ports.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import readline from 'node:readline';
import { before, after } from 'node:test';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { readFileSync } from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const proxyBinary = process.env.MCPPROXY_BINARY ?? path.join(here, '../../build/mcp-session-proxy');

// A port below the kernel's ephemeral range: one the kernel picks for port 0 is also one it
// gives outgoing connections, which could take it before the server binds it.
const ephemeralLow = (() => {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
    return low > 11000 && low <= 65535 ? low : 32768;
  } catch { return 32768; }
})();

export async function freePort() {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = 10000 + Math.floor(Math.random() * (ephemeralLow - 10000));
    const srv = net.createServer();
    srv.listen(port, '127.0.0.1');
    const [event] = await Promise.race([once(srv, 'listening').then(() => ['listening']),
      once(srv, 'error').then(() => ['error'])]);
    if (event === 'listening') {
      srv.close();
      await once(srv, 'close');
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range');
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
    '--log-level', process.env.MCPPROXY_LOG_LEVEL ?? 'warn',
    // The suites run once per io backend (tests/e2e/CMakeLists.txt).
    ...(process.env.MCPPROXY_TEST_IO_BACKEND ? ['--io-backend', process.env.MCPPROXY_TEST_IO_BACKEND] : []),
    ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
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

// A redis-server on a free port, for tests that share sessions between proxy replicas.
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const lines = readline.createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on('line', (l) => { if (l.includes('Ready to accept connections')) resolve(); });
    child.once('exit', () => reject(new Error('redis-server exited at start')));
  });
  await ready;
  return { port, url: `redis://127.0.0.1:${port}/0`, stop: () => stop(child) };
}

// Collects an SSE response body in the background; `until(predicate)` waits (bounded) for
// the text so far to satisfy it. No read is ever abandoned, so no bytes are lost.
export function collect(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const state = { text: '', done: false, waiters: [] };
  (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        state.text += decoder.decode(value, { stream: true });
        state.waiters.forEach((w) => w());
      }
    } catch { /* aborted */ }
    state.done = true;
    state.waiters.forEach((w) => w());
  })();
  state.until = (predicate, timeoutMs = 10000) => new Promise((resolve) => {
    const check = () => {
      if (predicate(state.text) || state.done) {
        clearTimeout(timer);
        state.waiters = state.waiters.filter((w) => w !== check);
        resolve(predicate(state.text));
      }
    };
    const timer = setTimeout(() => {
      state.waiters = state.waiters.filter((w) => w !== check);
      resolve(predicate(state.text));
    }, timeoutMs);
    state.waiters.push(check);
    check();
  });
  return state;
}

// Inside a describe(): three SDK pods and a proxy in front of them, started before its
// tests and stopped after. Returns an object whose `pods` and `proxy` are set by then.
export function podsBehindProxy(podArgs, proxyArgs = []) {
  const ctx = {};
  before(async () => {
    ctx.pods = await startPods(3, podArgs);
    ctx.proxy = await startProxy(['--replicas', '3', '--backend-url-template', ctx.pods.template, ...proxyArgs]);
  });
  after(async () => {
    await ctx.proxy?.stop();
    await ctx.pods?.stop();
  });
  return ctx;
}
