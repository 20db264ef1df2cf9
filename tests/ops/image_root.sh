#!/usr/bin/env bash
# The runtime image, proven without a container engine: a root is built from exactly the
# packages the image would hold (the base image's: Debian's required packages and apt, with
# their dependencies; and the runtime stage's apt-get install list, with theirs), the binary
# and the shipped config are copied where the Dockerfile puts them, and inside that root
# (chroot, as the image's user) the binary prints its version, accepts the shipped config,
# and proxies one MCP session to a sample pod outside it.
#   bash tests/ops/image_root.sh BINARY     (as root: chroot needs it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root_dir=$(cd "$here/../.." && pwd)
bin=${1:?usage: image_root.sh BINARY}
dockerfile=$root_dir/docker/Dockerfile
fail() { echo "image_root: FAIL: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "image_root: skipped: chroot needs root (CI runs as root)" >&2
  exit 77  # CTest reports it as skipped (SKIP_RETURN_CODE), never as passed
fi

# --- The Dockerfile: multi-stage, non-root, SIGTERM, OCI labels, the config where CMD looks.
[ "$(grep -c '^FROM ' "$dockerfile")" -ge 2 ] || fail "the Dockerfile is not multi-stage"
runtime=$(awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' "$dockerfile")
user=$(printf '%s' "$runtime" | awk '/^USER /{print $2}')
[[ "$user" =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]] || fail "USER is not a numeric non-root uid:gid ($user)"
printf '%s' "$runtime" | grep -q '^STOPSIGNAL SIGTERM$' || fail "no STOPSIGNAL SIGTERM"
for label in title description version; do
  printf '%s' "$runtime" | grep -q "org.opencontainers.image.$label=" || fail "no OCI label image.$label"
done
version_label=$(printf '%s' "$runtime" | sed -n 's/.*org.opencontainers.image.version="\([^"]*\)".*/\1/p')
printf '%s' "$runtime" | grep -q 'COPY config/mcp-session-proxy.yaml /etc/mcp-session-proxy/config.yaml' ||
  fail "the shipped config is not where CMD reads it"

# --- The packages: the runtime stage's install list, and the base image's.
# shellcheck disable=SC2001
listed=$(printf '%s' "$runtime" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep 'apt-get install' |
  sed -e 's/.*apt-get install//' -e 's/&&.*//' | tr ' ' '\n' | grep -v '^-' | grep -v '^$' | sort -u)
[ -n "$listed" ] || fail "no apt-get install in the runtime stage"
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -q '^installed$'; }
for p in $listed; do installed "$p" || fail "$p (runtime stage) is not installed on this machine to copy from"; done
# debian:12-slim is a minbase root: the packages of priority required, and apt.
required=$(dpkg-query -W -f='${Package} ${Priority} ${db:Status-Status}\n' | awk '$2=="required" && $3=="installed"{print $1}')
closure() {
  apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sed 's/:.*//' | sort -u |
    while read -r p; do installed "$p" && echo "$p"; done
}
# shellcheck disable=SC2086
base=$(closure apt $required)
# shellcheck disable=SC2086
runtime_pkgs=$(closure $listed)
all=$(printf '%s\n%s\n' "$base" "$runtime_pkgs" | sort -u)

# --- Every library the binary loads comes from one of them.
echo "library -> package (from)"
while read -r lib; do
  owner=""
  for candidate in "$lib" "$(realpath "$lib")" "${lib/#\/lib\//\/usr\/lib\/}" "$(realpath "$lib" | sed 's|^/usr/lib/|/lib/|')"; do
    owner=$(dpkg -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$owner" ] && break
  done
  [ -n "$owner" ] || fail "$lib belongs to no package"
  if printf '%s\n' "$listed" | grep -qx "$owner"; then from="Dockerfile";
  elif printf '%s\n' "$base" | grep -qx "$owner"; then from="base image";
  elif printf '%s\n' "$runtime_pkgs" | grep -qx "$owner"; then from="a dependency of the Dockerfile's list";
  else fail "$lib comes from $owner, which the runtime image does not install"; fi
  echo "  $(basename "$lib") -> $owner ($from)"
done < <(ldd "$bin" | awk '/=>/{print $3} /^\t\/.*ld-linux/{print $1}')

# --- The root: those packages' files, the binary, the config.
work=$(mktemp -d /tmp/image-root.XXXXXX)
backend_pid=""
cleanup() {
  [ -n "$backend_pid" ] && kill "$backend_pid" 2>/dev/null
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/root
mkdir -p "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/usr/lib" "$rootfs/usr/lib64" "$rootfs/tmp" "$rootfs/dev"
for d in bin sbin lib lib64; do ln -s "usr/$d" "$rootfs/$d"; done  # Debian 12 merges /usr
for p in $all; do dpkg -L "$p" 2>/dev/null || true; done | sort -u | while read -r f; do
  if { [ -f "$f" ] || [ -L "$f" ]; } && [ ! -d "$f" ]; then printf '%s\n' "${f#/}"; fi
done >"$work/files"
tar -C / -cf - -T "$work/files" 2>/dev/null | tar -C "$rootfs" --keep-directory-symlink -xf -
install -D -m 0755 "$bin" "$rootfs/usr/local/bin/mcp-session-proxy"
install -D -m 0644 "$root_dir/config/mcp-session-proxy.yaml" "$rootfs/etc/mcp-session-proxy/config.yaml"
echo "root: $(wc -l <"$work/files") files from $(echo "$all" | wc -w) packages ($(echo "$base" | wc -w) base, $(echo "$listed" | wc -w) listed and $(( $(echo "$runtime_pkgs" | wc -w) )) with dependencies), $(du -sm "$rootfs" | cut -f1) MiB"
in_root() { chroot --userspec="$user" "$rootfs" "$@"; }

# --- Inside it: version, the shipped config, one proxied session.
got=$(in_root /usr/local/bin/mcp-session-proxy --version) || fail "--version failed in the root"
[ "$got" = "mcp-session-proxy $version_label" ] || fail "--version said '$got', the image label $version_label"
echo "$got"
in_root /usr/local/bin/mcp-session-proxy --check-config --config /etc/mcp-session-proxy/config.yaml >"$work/check" ||
  fail "--check-config rejected the shipped config: $(cat "$work/check")"
head -1 "$work/check"

python3 "$root_dir/examples/sample_backend.py" --pods 1 --port 0 >"$work/backend.out" 2>&1 &
backend_pid=$!
for _ in $(seq 100); do grep -q '^ports ' "$work/backend.out" && break; sleep 0.1; done
pod_port=$(awk '/^ports /{print $2; exit}' "$work/backend.out")
[ -n "$pod_port" ] || fail "the sample pod did not start"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
# chroot execs the proxy: $! is the proxy's own pid, which SIGTERM below reaches.
chroot --userspec="$user" "$rootfs" /usr/local/bin/mcp-session-proxy --config /etc/mcp-session-proxy/config.yaml --listen "127.0.0.1:$port" \
  --admin-listen "127.0.0.1:$admin" --backend-url-template "http://127.0.1.{ordinal}:$pod_port" --replicas 1 \
  --log-format text >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || fail "the proxy in the root is not ready: $(cat "$work/proxy.log")"
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"image-root","version":"1"}}}'
sid=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d "$init" "http://127.0.0.1:$port/mcp" | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')
[ -n "$sid" ] || fail "initialize through the proxy in the root gave no session: $(cat "$work/proxy.log")"
call='{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
answer=$(curl -s -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -H "Mcp-Session-Id: $sid" -d "$call" "http://127.0.0.1:$port/mcp")
echo "$answer" | grep -q '"pod-0"' || fail "the session's call did not reach its pod: $answer"
kill -TERM "$proxy_pid"
wait "$proxy_pid" || fail "the proxy did not exit 0 on SIGTERM"
proxy_pid=""
echo "image_root: OK (a session proxied inside the root, as uid:gid $user; SIGTERM exit 0)"
