// A client scenario's command through the proxy: `node via_proxy.mjs ARM CLIENT SERVER_URL`.
// Starts mcp-session-proxy (memory store, one replica) in front of the runner's test
// server, runs the arm's conformance client against the proxy, stops the proxy, exits with
// the client's code.
import { spawn } from 'node:child_process';
import { startProxy } from '../e2e/harness.mjs';
import { arms } from './conformance_lib.mjs';

const [arm, client, serverUrl] = process.argv.slice(2);
const upstream = new URL(serverUrl);
// The runner's test server listens on every interface; its URL says localhost: the proxy
// reaches it on 127.0.1.0, the stand-in for pod 0's address.
const proxy = await startProxy(['--replicas', '1', '--backend-url-template', `http://127.0.1.{ordinal}:${upstream.port}`]);
// The reference clients are TypeScript, run with tsx from their own folder; the own ones are
// plain modules.
const args = client.endsWith('.ts') ? ['--import', 'tsx', client] : [client];
const child = spawn(process.execPath, [...args, `${proxy.url}${upstream.pathname}`],
  { cwd: arms[arm].cwd, stdio: 'inherit' });
const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
await proxy.stop();
process.exit(code);
