#!/usr/bin/env bash
# Quick start: install what is missing, build, and run kupool-server on its embedded defaults
# (memory backends, TCP on :8080). Extra arguments go to the server, e.g. -interval 3s.
# kupool-client and kupool-mock are built next to it in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKP_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target kupool-server kupool-client kupool-mock
exec ./build/kupool-server "$@"
