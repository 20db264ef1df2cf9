#!/usr/bin/env bash
# tsan.sh: the integration tests (each proxy runs two or more worker threads) against a
# ThreadSanitizer build of the proxy and of the tests. A race stops the process that saw it
# (halt_on_error) and leaves a report under build-tsan/tsan-reports; any report fails the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=build-tsan
bash "$root/scripts/build.sh" RelWithDebInfo "$dir" -DMCPPROXY_TSAN=ON
reports="$root/$dir/tsan-reports"
rm -rf "$reports"
mkdir -p "$reports"
cd "$root/$dir"
status=0
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan:suppressions=$root/scripts/tsan.supp" \
  ctest --output-on-failure -j "$(nproc)" --timeout 900 -L integration "$@" || status=$?
if compgen -G "$reports/tsan.*" >/dev/null; then
  echo "ThreadSanitizer reports:"
  cat "$reports"/tsan.*
  status=1
fi
exit $status
