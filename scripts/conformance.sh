#!/usr/bin/env bash
# The official MCP conformance suite through the proxy (tests/conformance/README.md), alone:
# the same tests the whole suite runs under the CTest label `conformance`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" Release build
cd "$root/build"
ctest --output-on-failure -L conformance --timeout 900
