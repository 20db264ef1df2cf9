#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need on Debian 12.
# Idempotent: packages already present are skipped, so it is cheap to run every time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-url1.81-dev libhiredis-dev liburing-dev nlohmann-json3-dev libspdlog-dev
  libyaml-cpp-dev libcli11-dev libgtest-dev libssl-dev
  redis-server nginx haproxy wrk openssl curl python3 nodejs npm
  prometheus
  clang-format clang-tidy clang-14 libclang-rt-14-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
# node and npm may come from another source than Debian's packages: accept what is on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The services are started by the tests themselves on free ports; the packaged ones stay off
# (prometheus is installed for promtool, which checks deploy/prometheus).
for svc in redis-server nginx haproxy prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

# The official MCP TypeScript SDK, pinned by tests/e2e/package-lock.json.
if [ -f "$here/tests/e2e/package-lock.json" ]; then
  (cd "$here/tests/e2e" && { [ -d node_modules/@modelcontextprotocol/sdk ] || npm ci --no-audit --no-fund --loglevel=error; })
fi

# The offline checks of deploy/ (Kubernetes schemas), pinned by tests/ops/package-lock.json.
if [ -f "$here/tests/ops/package-lock.json" ]; then
  (cd "$here/tests/ops" && { [ -d node_modules/kubernetes-models ] || npm ci --no-audit --no-fund --loglevel=error; })
fi

# The official MCP conformance suite (runner and a Node.js 22 for it, pinned by
# tests/conformance/package-lock.json) and its reference server and clients, copied from
# ../shared/mcp-conformance (read-only in CI) and installed by their own lock file.
conf="$here/tests/conformance"
if [ -f "$conf/package-lock.json" ]; then
  (cd "$conf" && { [ -d node_modules/@modelcontextprotocol/conformance ] || npm ci --no-audit --no-fund --loglevel=error; })
  shared="$here/../shared/mcp-conformance"
  if [ ! -d "$conf/server/node_modules" ] && [ -d "$shared" ]; then
    rm -rf "$conf/server" && mkdir "$conf/server" && cp -r "$shared/." "$conf/server/" && chmod -R u+w "$conf/server"
    (cd "$conf/server" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
