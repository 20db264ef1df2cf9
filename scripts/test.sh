#!/usr/bin/env bash
# The README's second command: install what is missing, build, run the whole test suite
# with CTest (unit, integration against real processes, end-to-end with the official SDK).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${MCPPROXY_BUILD_DIR:-build}
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" "${MCPPROXY_BUILD_TYPE:-Release}" "$dir" ${MCPPROXY_CMAKE_ARGS:-}
cd "$root/$dir"
# MCPPROXY_CTEST_ARGS narrows the run (the sanitizer pass leaves out the timing-bound race).
ctest --output-on-failure -j "$(nproc)" --timeout 900 ${MCPPROXY_CTEST_ARGS:-}
