#!/usr/bin/env bash
# README command 2: install deps, build, run every test (unit, integration, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

BUILD_DIR=${BATON_BUILD_DIR:-build}
count=$(ctest --test-dir "$BUILD_DIR" -N | sed -n 's/^Total Tests: \([0-9]*\)$/\1/p')
if [[ -z "$count" || "$count" -eq 0 ]]; then
  echo "test.sh: no test was found in $BUILD_DIR" >&2
  exit 1
fi
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --no-tests=error "$@"
