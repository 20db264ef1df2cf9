// Starts this folder's servers for the era2026 tests: replicas on 127.0.1.N behind one port
// (the proxy's template http://127.0.1.{ordinal}:PORT), or one replica on 127.0.0.1.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
  children.delete(child);
}

// `script`: server.mjs (SDK v2, dual-era) or v1_server.mjs (SDK v1, sessions).
// `pods`: a count for 127.0.1.0..N-1, or undefined for one replica on 127.0.0.1.
export async function startServers(script, { pods, args = [] } = {}) {
  const where = pods === undefined ? ['--host', '127.0.0.1'] : ['--pods', String(pods)];
  const child = spawn(process.execPath, [path.join(here, script), ...where, ...args],
    { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const lines = readline.createInterface({ input: child.stdout });
  const [line] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(() => { throw new Error(`${script} exited before listening`); }),
  ]);
  const port = Number(line.split(' ')[1]);
  return {
    port,
    url: pods === undefined ? `http://127.0.0.1:${port}/mcp` : undefined,
    proxyArgs: pods === undefined ? [] : ['--replicas', String(pods), '--backend-url-template', `http://127.0.1.{ordinal}:${port}`],
    stop: () => stop(child),
  };
}

// Proxy arguments for a config file naming the handle of server.mjs (affinity.handles): the
// answer of open_handle holds it at /structuredContent/handle, use_handle sends it in
// Mcp-Param-Handle.
export function handleConfig() {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'era2026-')), 'handles.yaml');
  writeFileSync(file, 'affinity:\n  handles:\n    - {param: Handle, tool: open_handle, result_pointer: /structuredContent/handle}\n');
  return ['--config', file];
}
