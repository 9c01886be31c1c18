#!/usr/bin/env bash
# README command 1: install deps, build, start a local fleet with `batonctl dev`,
# push the 50 sample leads of examples/lead-to-meeting through it, compare every
# outcome with expected.jsonl, print the summary, stop the fleet.
# Exits non-zero on any failure; the fleet is stopped on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLE=${BATON_DEMO_EXAMPLE:-examples/lead-to-meeting}
WORKFLOW=${BATON_DEMO_WORKFLOW:-lead-to-meeting}
STATE_DIR=${BATON_DEMO_STATE_DIR:-.baton/demo}
BUILD_DIR=${BATON_BUILD_DIR:-build}
READY_TIMEOUT=${BATON_DEMO_READY_TIMEOUT:-90}
RUN_TIMEOUT=${BATON_DEMO_RUN_TIMEOUT:-180}

if [[ "${BATON_DEMO_SKIP_BUILD:-0}" != 1 ]]; then
  bash scripts/install-deps.sh
  bash scripts/build.sh
fi
BATONCTL="$BUILD_DIR/bin/batonctl"
[[ -x "$BATONCTL" ]] || { echo "demo: $BATONCTL is missing" >&2; exit 1; }

mkdir -p "$STATE_DIR"
DEV_OUT="$STATE_DIR/dev.out"
DEV_ERR="$STATE_DIR/dev.err"
DEV_PID=""

stop_dev() {
  [[ -n "$DEV_PID" ]] || return 0
  if kill -0 "$DEV_PID" 2>/dev/null; then
    echo "demo: stopping batonctl dev (pid $DEV_PID)"
    kill -TERM "$DEV_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do               # up to 30 s: it stops each child within 5 s
      kill -0 "$DEV_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$DEV_PID" 2>/dev/null; then
      echo "demo: batonctl dev did not stop; killing it" >&2
      kill -KILL "$DEV_PID" 2>/dev/null || true
    fi
  fi
  local rc=0
  wait "$DEV_PID" 2>/dev/null || rc=$?
  DEV_PID=""
  return "$rc"
}
trap 'stop_dev || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Port 0: the coordinator takes any free port; env.json says which.
"$BATONCTL" dev --workflows "$EXAMPLE" --state-dir "$STATE_DIR" --http 127.0.0.1:0 >"$DEV_OUT" 2>"$DEV_ERR" &
DEV_PID=$!

healthz() {  # $1 = api base URL http://host:port
  local hostport=${1#http://}
  local host=${hostport%:*} port=${hostport##*:}
  local line
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$hostport" >&3
  IFS= read -r -t 2 line <&3 || line=""
  exec 3<&- 3>&-
  [[ "$line" == "HTTP/1.1 200"* ]]
}

echo "demo: waiting for batonctl dev (up to ${READY_TIMEOUT}s)"
API=""
deadline=$((SECONDS + READY_TIMEOUT))
while (( SECONDS < deadline )); do
  if ! kill -0 "$DEV_PID" 2>/dev/null; then
    echo "demo: batonctl dev exited early; its output:" >&2
    cat "$DEV_OUT" "$DEV_ERR" >&2 || true
    exit 1
  fi
  if [[ -s "$STATE_DIR/env.json" ]]; then
    API=$(sed -n 's/^ *"api": *"\([^"]*\)".*/\1/p' "$STATE_DIR/env.json" | head -n1)
    if [[ -n "$API" ]] && healthz "$API" 2>/dev/null; then
      break
    fi
  fi
  API=""
  sleep 0.2
done
if [[ -z "$API" ]]; then
  echo "demo: batonctl dev was not ready within ${READY_TIMEOUT}s; its output:" >&2
  cat "$DEV_OUT" "$DEV_ERR" >&2 || true
  exit 1
fi
cat "$DEV_OUT"
echo

echo "demo: $WORKFLOW: running every line of $EXAMPLE/leads.jsonl, expecting $EXAMPLE/expected.jsonl"
rc=0
"$BATONCTL" run "$WORKFLOW" --api "$API" --inputs "$EXAMPLE/leads.jsonl" --wait \
  --timeout "$RUN_TIMEOUT" --expect "$EXAMPLE/expected.jsonl" || rc=$?

stop_rc=0
stop_dev || stop_rc=$?
if (( rc != 0 )); then
  echo "demo: FAILED (batonctl run exited $rc; logs in $STATE_DIR/logs)" >&2
  exit 1
fi
if (( stop_rc != 0 )); then
  echo "demo: FAILED (batonctl dev exited $stop_rc on stop; see $DEV_ERR)" >&2
  exit 1
fi
echo "demo: OK: every outcome matches expected.jsonl"
