#!/usr/bin/env bash
# Installs the Debian packages KuPool needs, only those missing.
#   scripts/deps.sh          build and run: compiler, cmake, libuv, cJSON, OpenSSL
#   scripts/deps.sh --test   also what the test suite needs
#   scripts/deps.sh --bench  also what the bench scripts need (and the test suite's packages)
set -euo pipefail

packages=(build-essential cmake pkg-config libuv1-dev libcjson-dev libssl-dev libpq-dev librabbitmq-dev libhttp-parser-dev)
if [[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]]; then
  # clang + libclang-rt-14-dev: the libFuzzer harnesses (libclang_rt.fuzzer-x86_64.a)
  # haproxy: the front-door tests put a real one in front of two nodes (tests/services/haproxy.sh);
  # openssl: the TLS tests' certificates and `openssl s_client` against the server
  packages+=(libcmocka-dev postgresql rabbitmq-server chromium clang libclang-rt-14-dev haproxy openssl)
fi
if [[ "${1:-}" == "--bench" ]]; then
  # gnuplot-nox: bench/difficulty_plot.sh renders docs/difficulty.png
  packages+=(gnuplot-nox)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
