#!/usr/bin/env bash
# Configures and builds everything into build/ (-j2, ccache when present).
# Usage: scripts/build.sh [extra cmake -D options...]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BATON_BUILD_DIR:-build}
BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo}
JOBS=${BATON_JOBS:-2}

# ccache is picked up by the root CMakeLists.txt when installed.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" "$@"
cmake --build "$BUILD_DIR" -j"$JOBS"
