// Preloaded into the conformance suite's reference server (node --import): its
// `app.listen(PORT)` would listen on every interface; this binds it to MCP_TEST_HOST
// (default 127.0.0.1) so test traffic stays on loopback. The server's own code is unchanged.
import net from 'node:net';

const host = process.env.MCP_TEST_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const portOnly = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  if (portOnly && typeof args[1] !== 'string') args.splice(1, 0, host);
  return listen.apply(this, args);
};
