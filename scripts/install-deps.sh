#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Baton's build and tests need.
# Runs apt-get as root, or through sudo when not root. Non-interactive.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config ccache
  librdkafka-dev libhiredis-dev redis-server
  libprotobuf-dev protobuf-compiler
  libboost-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libcurl4-openssl-dev libjemalloc-dev kcat
  libcctz-dev tzdata
  python3  # examples/invoice-custom-agents: a Python agent run by the exec agent (and its tests)
  # scripts/fuzz.sh (fuzz/README.md): clang 14, libFuzzer (libclang_rt.fuzzer*.a is in
  # libclang-rt-14-dev, only a Recommends of clang), llvm-symbolizer for sanitizer stacks.
  clang libclang-rt-14-dev llvm
)

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and no sudo; install as root: ${PACKAGES[*]}" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

# Skip apt entirely when everything is already installed (CI reruns, offline
# dev boxes); BATON_FORCE_APT=1 runs apt-get update + install regardless.
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 && "${BATON_FORCE_APT:-0}" != 1 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
