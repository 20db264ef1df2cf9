#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need on Debian 12.
# Idempotent: packages already present are skipped, so it is cheap to run every time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-dev libboost-url1.81-dev libhiredis-dev liburing-dev nlohmann-json3-dev libspdlog-dev
  libyaml-cpp-dev libcli11-dev libgtest-dev libssl-dev libc-ares-dev
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

# npm packages pinned by a folder's package-lock.json, installed again when the lock file
# changed since the last install (its hash is kept in node_modules).
npm_ci() {
  local dir=$1 sum
  [ -f "$dir/package-lock.json" ] || return 0
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ "$(cat "$dir/node_modules/.lock-sha256" 2>/dev/null)" = "$sum" ] && return 0
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && echo "$sum" >node_modules/.lock-sha256)
}

# The official MCP TypeScript SDK (tests/e2e), the offline checks of deploy/ (Kubernetes
# schemas, tests/ops), and the official MCP conformance suite's runner with a Node.js 22 for
# it and the SDK the project's own conformance server and clients run on (tests/conformance).
npm_ci "$here/tests/e2e"
npm_ci "$here/tests/ops"
# Both protocol eras (tests/era2026): the official SDK v2 server and client, the v1 client, and
# the conformance runner's 2026-07-28 scenarios with a Node.js 22 for it.
npm_ci "$here/tests/era2026"
conf="$here/tests/conformance"
npm_ci "$conf"

# The suite's reference server and clients: a second arm of the conformance test, only where
# ../shared/mcp-conformance is beside the checkout (CI's; a user's clone has none, and needs
# none: the own arm in tests/conformance/everything is the project's). Copied, since shared/
# is read-only in CI, and installed by its own lock file.
shared="$here/../shared/mcp-conformance"
if [ -d "$shared" ] && [ ! -d "$conf/server/node_modules" ]; then
  rm -rf "$conf/server" && mkdir "$conf/server" && cp -r "$shared/." "$conf/server/" && chmod -R u+w "$conf/server"
  npm_ci "$conf/server"
fi
