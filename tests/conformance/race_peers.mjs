// The GET-versus-elicitation race with other proxies in the same place, for comparison:
// one pod of the project's own conformance server, and in front of it mcp-session-proxy (default threads), nginx
// (worker_processes 2) and directly. One pod, so nginx needs no session affinity.
//   node race_peers.mjs [sessions]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startProxy } from '../e2e/harness.mjs';
import { startServer, waitPort } from './conformance_lib.mjs';
import { elicitationRace } from './race.mjs';

const sessions = Number(process.argv[2] ?? 300);
// Directly the server is reached on 127.0.0.1; the proxies reach their pod on 127.0.1.0 and
// pass the client's Host through.
const direct = await startServer('own', '127.0.0.1', await freePort());
const pod = await startServer('own', '127.0.1.0', await freePort());
const proxy = await startProxy(['--replicas', '1', '--backend-url-template', `http://127.0.1.{ordinal}:${pod.port}`]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'race-nginx-'));
const nginxPort = await freePort();
fs.writeFileSync(path.join(dir, 'nginx.conf'), `worker_processes 2;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream pod { server 127.0.1.0:${pod.port}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass http://pod;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
`);
const nginx = spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'inherit' });
process.on('exit', () => nginx.kill('SIGKILL'));
await waitPort('127.0.0.1', nginxPort);
for (const [name, url] of [['direct', direct.url], ['mcp-session-proxy', `${proxy.url}/mcp`],
  ['nginx (2 workers)', `http://127.0.0.1:${nginxPort}/mcp`]]) {
  const r = await elicitationRace(url, sessions);
  console.log(`${name}: ${r.lost} of ${sessions} elicitations lost${r.errors.length ? `, errors ${r.errors.length}` : ''}`);
}
nginx.kill('SIGTERM');
await proxy.stop();
await pod.stop();
await direct.stop();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
