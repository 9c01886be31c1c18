#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/README.md) into build-fuzz with clang
# (-DBATON_FUZZ=ON: ASan + UBSan + coverage) and runs each for SECONDS on a
# copy of its committed corpus (fuzz/corpus/<target>/). Fails when a target
# crashes, leaks, hits UB, times out or breaks a checked contract; prints the
# input that did it (kept under build-fuzz/findings/).
# Usage: scripts/fuzz.sh [SECONDS (default 20)] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-20}
shift || true
BUILD_DIR=${BATON_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${BATON_JOBS:-2}
ALL_TARGETS=(fuzz_workflow_parser fuzz_expression fuzz_coordinator_event fuzz_worker_task fuzz_http_request)
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

for tool in clang clang++; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBATON_FUZZ=ON \
  -DBATON_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/baton-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FINDINGS="$BUILD_DIR/findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  corpus="$WORK/$t/corpus"
  artifacts="$WORK/$t/artifacts"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d "fuzz/corpus/$t" ]]; then cp -r "fuzz/corpus/$t/." "$corpus/"; fi
  extra=()
  [[ -f "fuzz/dict/$t.dict" ]] && extra+=("-dict=fuzz/dict/$t.dict")
  log="$WORK/$t/log"
  echo "fuzz.sh: $t for ${SECONDS_EACH}s on $(find "$corpus" -type f | wc -l) seeds"
  rc=0
  # The outer timeout: libFuzzer's out-of-memory report walks the whole heap
  # (slow under ASan) and an input that hangs in a server thread is not seen
  # by -timeout; neither may stall CI.
  timeout -s KILL $((SECONDS_EACH + 120)) \
    "$BUILD_DIR/bin/$t" "$corpus" -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
  [[ $rc -eq 137 ]] && echo "fuzz.sh: $t killed after $((SECONDS_EACH + 120)) s (a hang, or a slow out-of-memory report)" >&2
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  summary+=("$(printf '%-24s %10s runs %8s exec/s  %s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-}")")
  crash=$(find "$artifacts" -type f | head -1)
  if [[ $rc -ne 0 || -n "$crash" ]]; then
    failed+=("$t")
    echo "fuzz.sh: $t FAILED (exit $rc); the end of its log:" >&2
    grep -v '^#[0-9]' "$log" | tail -60 >&2
    if [[ -n "$crash" ]]; then
      mkdir -p "$FINDINGS"
      cp "$crash" "$FINDINGS/$t-$(basename "$crash")"
      echo "fuzz.sh: the input ($(stat -c %s "$crash") bytes), kept as $FINDINGS/$t-$(basename "$crash"):" >&2
      head -c 4096 "$crash" | od -A d -c | head -40 >&2
      echo "fuzz.sh: replay with: $BUILD_DIR/bin/$t $FINDINGS/$t-$(basename "$crash")" >&2
    fi
  fi
done

echo "fuzz.sh: summary (${SECONDS_EACH}s each)"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no finding"
