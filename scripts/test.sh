#!/usr/bin/env bash
# README command 2 (and CI, via .ci/run): install deps, build the whole tree
# with ASan+UBSan (build-asan, -DBATON_SANITIZE=ON), run every test (unit,
# integration, e2e, chaos) there, then run each fuzz target for 15 s
# (scripts/fuzz.sh, build-fuzz). Any sanitizer report fails the test it
# happens in: abort_on_error/halt_on_error make the process (a test binary or
# a daemon it started) exit non-zero.
# Extra arguments go to ctest (e.g. -L unit, -R Engine).
# BATON_TEST_SANITIZE=0: the plain build in build/ instead (what the demo uses).
# BATON_TEST_FUZZ_SECONDS=N: seconds per fuzz target (0: no fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

if [[ "${BATON_TEST_SANITIZE:-1}" == 1 ]]; then
  export BATON_BUILD_DIR=${BATON_BUILD_DIR:-build-asan}
  # detect_leaks: LeakSanitizer in every process at exit. UBSan: halt on the
  # first report, with a stack. Daemons started by tests inherit these.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
  bash scripts/build.sh -DBATON_SANITIZE=ON
else
  export BATON_BUILD_DIR=${BATON_BUILD_DIR:-build}
  bash scripts/build.sh
fi
BUILD_DIR=$BATON_BUILD_DIR

count=$(ctest --test-dir "$BUILD_DIR" -N | sed -n 's/^Total Tests: \([0-9]*\)$/\1/p')
if [[ -z "$count" || "$count" -eq 0 ]]; then
  echo "test.sh: no test was found in $BUILD_DIR" >&2
  exit 1
fi
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --no-tests=error "$@"

FUZZ_SECONDS=${BATON_TEST_FUZZ_SECONDS:-15}
if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
  bash scripts/fuzz.sh "$FUZZ_SECONDS"
fi
