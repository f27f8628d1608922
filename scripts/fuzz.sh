#!/usr/bin/env bash
# Builds every libFuzzer harness (tests/fuzz/fuzz_*.c) and runs each for longer than the test
# suite does, two at a time.
#   scripts/fuzz.sh [SECONDS]   default 300 per harness
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKP_WERROR=ON -DKP_FUZZ=ON \
  -DKP_BUILD_TESTS=OFF -DKP_FUZZ_SECONDS="$seconds" >/dev/null
cmake --build build-fuzz -j2
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j2
