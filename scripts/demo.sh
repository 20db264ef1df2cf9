#!/usr/bin/env bash
# The README's first command: install what is missing, build, start three sample MCP pods
# and the proxy (embedded memory store), drive a few sessions through it and show where
# each one was pinned. Stops everything at the end; `--keep` leaves the proxy and pods
# running until Ctrl-C so you can try it yourself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[ "${1:-}" = "--keep" ] && keep=true

bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" Release build

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Three pods on one free port, pod N on 127.0.1.N: the stand-in for
# myserver-N.mcp-myserver-headless.default.svc.cluster.local.
python3 "$root/examples/sample_backend.py" --pods 3 --port 0 >"$work/backend.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^ports' "$work/backend.out" 2>/dev/null && break; sleep 0.1; done
pod_port=$(awk '/^ports/ {print $2}' "$work/backend.out")
listen=$(free_port)
admin=$(free_port)
"$root/build/mcp-session-proxy" --listen "127.0.0.1:$listen" --admin-listen "127.0.0.1:$admin" \
  --replicas 3 --backend-url-template "http://127.0.1.{ordinal}:$pod_port" --log-level warn &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "proxy on 127.0.0.1:$listen, pods on 127.0.1.{0,1,2}:$pod_port, admin on 127.0.0.1:$admin"
echo
mcp() {  # mcp SESSION BODY -> response body
  curl -s "http://127.0.0.1:$listen/mcp" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' ${1:+-H "Mcp-Session-Id: $1"} -d "$2"
}
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}'
call='{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
for s in 1 2 3 4 5 6; do
  sid=$(curl -s -D - -o /dev/null "http://127.0.0.1:$listen/mcp" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$init" | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id" {print $2}')
  mcp "$sid" '{"jsonrpc":"2.0","method":"notifications/initialized"}' >/dev/null
  seen=""
  for _ in 1 2 3 4; do
    seen+=$(mcp "$sid" "$call" | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]["structuredContent"]; print(" %s#%s" % (r["pod"], r["counter"]), end="")')
  done
  printf 'session %s  %s ->%s\n' "$s" "${sid:0:8}…" "$seen"
done
echo
echo "Every call of a session reached the pod that answered its initialize (pod#counter)."
echo "Sessions per pod, from /metrics:"
curl -s "http://127.0.0.1:$admin/metrics" | grep '^mcp_proxy_sessions{'
if $keep; then
  echo
  echo "Running; try: curl -i http://127.0.0.1:$listen/mcp -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '$init'"
  echo "Ctrl-C stops the proxy and the pods."
  wait "${pids[1]}"
fi
