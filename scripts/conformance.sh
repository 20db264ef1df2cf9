#!/usr/bin/env bash
# The official MCP conformance suite through the proxy (tests/conformance/README.md).
# Not in CTest yet: the elicitation/sampling race it exposes is open (issue [conformance]).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" Release build
cd "$root/tests/conformance"
[ -d node_modules/@modelcontextprotocol/conformance ] || npm ci --no-audit --no-fund --loglevel=error
# The reference server and clients, copied from ../shared (read-only in CI) and installed.
if [ ! -d server/node_modules ]; then
  rm -rf server && mkdir server && cp -r "$root/../shared/mcp-conformance/." server/ && chmod -R u+w server
  (cd server && npm ci --no-audit --no-fund --loglevel=error)
fi
export MCPPROXY_BINARY="$root/build/mcp-session-proxy"
node --test conformance.test.mjs race.test.mjs
