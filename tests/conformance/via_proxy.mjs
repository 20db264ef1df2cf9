// A client scenario's command through the proxy: `node via_proxy.mjs CLIENT.ts SERVER_URL`.
// Starts mcp-session-proxy (memory store, one replica) in front of the runner's test
// server, runs the conformance client against the proxy, stops the proxy, exits with the
// client's code.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProxy } from '../e2e/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const [client, serverUrl] = process.argv.slice(2);
const upstream = new URL(serverUrl);
// The runner's test server listens on every interface; its URL says localhost: the proxy
// reaches it on 127.0.1.0, the stand-in for pod 0's address.
const proxy = await startProxy(['--replicas', '1', '--backend-url-template', `http://127.0.1.{ordinal}:${upstream.port}`]);
const child = spawn(process.execPath, ['--import', 'tsx', client, `${proxy.url}${upstream.pathname}`],
  { cwd: path.join(here, 'server'), stdio: 'inherit' });
const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
await proxy.stop();
process.exit(code);
