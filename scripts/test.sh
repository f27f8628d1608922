#!/usr/bin/env bash
# The whole suite: install what is missing, build with -Werror, run every test, then build and
# run everything once more under AddressSanitizer + UndefinedBehaviorSanitizer, then build the
# libFuzzer harnesses with clang and run each for KP_FUZZ_SECONDS (15 s; scripts/fuzz.sh runs
# them longer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test

jobs=$(nproc)
run_suite() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DKP_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs"
}

echo "== build and test (RelWithDebInfo, -Werror)"
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== build and test (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DKP_SANITIZE=ON
echo "== build and fuzz (clang, libFuzzer + ASan + UBSan, 15 s per harness)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKP_WERROR=ON -DKP_FUZZ=ON \
  -DKP_BUILD_TESTS=OFF -DKP_FUZZ_SECONDS=15 >/dev/null
cmake --build build-fuzz -j"$jobs"
ctest --test-dir build-fuzz -L fuzz --output-on-failure -j2
