#!/usr/bin/env bash
# clang-format (no change allowed) and clang-tidy (no finding allowed) over the project's sources.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
files=$(git ls-files '*.cpp' '*.hpp')  # fuzz/ included
clang-format --dry-run --Werror $files
echo "clang-format: clean"
# The layers: a folder of src/ includes only itself and the folders below it
# (core < io < store < path < process), and core has no Asio.
bash scripts/layers.sh
echo "layers: clean"
[ -f build/compile_commands.json ] || bash scripts/build.sh Release build
tidy_files=$(git ls-files 'src/*.cpp' | grep -v asio_impl.cpp)
# One process per core; each file's findings are errors (WarningsAsErrors in .clang-tidy).
printf '%s\n' $tidy_files | xargs -P "$(nproc)" -n 1 clang-tidy -p build --quiet --extra-arg=-Wno-unknown-warning-option 2>/dev/null
echo "clang-tidy: clean"
