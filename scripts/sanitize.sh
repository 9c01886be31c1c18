#!/usr/bin/env bash
# By hand: builds the tree with a sanitizer and runs ctest there.
#   scripts/sanitize.sh asan [ctest args...]   ASan+UBSan in build-asan (what CI runs, scripts/test.sh)
#   scripts/sanitize.sh tsan [ctest args...]   TSan in build-tsan
# Default ctest selection: every test (pass e.g. `-L unit -L integration`,
# or `-LE chaos`, to narrow it). A sanitizer report fails the test it happens
# in (the process exits non-zero); the report is in the test's output.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-}
shift || true
case "$kind" in
  asan)
    export BATON_BUILD_DIR=${BATON_BUILD_DIR:-build-asan}
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
    option=-DBATON_SANITIZE=ON
    ;;
  tsan)
    export BATON_BUILD_DIR=${BATON_BUILD_DIR:-build-tsan}
    # second_deadlock_stack: both stacks of a lock-order inversion.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=4}
    option=-DBATON_TSAN=ON
    ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan [ctest args...]" >&2
    exit 2
    ;;
esac

bash scripts/build.sh "$option"
ctest --test-dir "$BATON_BUILD_DIR" --output-on-failure -j2 --no-tests=error "$@"
