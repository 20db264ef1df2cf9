#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets (clang 14, ASan + UBSan) in build-fuzz and
# runs each for SECONDS (default 20) from its committed seed corpus, in a scratch copy (the
# repository's corpus is not written). Fails on any crash, leak or sanitizer report, and
# prints the executions of each target.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
dir="$root/build-fuzz"
CXX=clang++-14 cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMCPPROXY_FUZZ=ON -DMCPPROXY_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-O1 -g" >/dev/null
cmake --build "$dir" --target fuzz_all -j "$(nproc)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for target in request_head response_framing redis_reply config sse_endpoint jwt; do
  mkdir -p "$work/$target"
  cp "$root/fuzz/corpus/$target/"* "$work/$target/" 2>/dev/null || true
  log="$work/$target.log"
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$dir/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -max_len=20000 \
    -artifact_prefix="$work/$target-" "$work/$target" >"$log" 2>&1; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $target: ${runs:-?} executions in ${seconds}s, no finding"
  else
    status=1
    echo "fuzz $target: FAILED"
    tail -40 "$log"
    for a in "$work/$target"-*; do [ -f "$a" ] && { echo "reproducer: $a"; od -A x -t x1z "$a" | head -20; }; done
  fi
done
exit $status
