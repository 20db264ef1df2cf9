#!/usr/bin/env bash
# The folders of src/ are layers: each includes only itself and those below it (core < io <
# store < path < process), and core is Asio-free. Prints each breach; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
rank() { case $1 in core) echo 0;; io) echo 1;; store) echo 2;; path) echo 3;; process) echo 4;; esac; }
bad=0
for f in $(git ls-files 'src/*.cpp' 'src/*.hpp'); do
  l=$(echo "$f" | cut -d/ -f2); r=$(rank "$l")
  while IFS= read -r inc; do
    il=${inc%%/*}; ir=$(rank "$il")
    if [ -n "$ir" ] && [ "$ir" -gt "$r" ]; then echo "$f includes $inc (layer $il above $l)"; bad=1; fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
  if [ "$l" = core ] && grep -qE '#include <boost/(asio|beast)' "$f"; then echo "$f: core includes Asio/Beast"; bad=1; fi
done
exit $bad
