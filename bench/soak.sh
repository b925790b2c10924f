#!/usr/bin/env bash
# The soak (issue 12): svcca-sidecar (tcp and http) under churn, keep-alive and large
# transfers, with a certificate rotation and a CRL change every 30 s. Not part of make test
# or make bench. SOAK_SECONDS (600), SOAK_WARMUP_SECONDS (60), SOAK_CHANGE_SECONDS (30),
# SOAK_SAMPLE_SECONDS (5), SOAK_HTTP (1). Everything on 127.0.0.1; stopped on exit.
# Exit 1 when a request failed or the sidecar did not survive.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/svcca-soak.XXXXXX")
SOAK_PID=""
cleanup() {
  local rc=$?
  if [[ -n $SOAK_PID ]]; then
    kill -TERM "$SOAK_PID" 2>/dev/null || true
    wait "$SOAK_PID" 2>/dev/null || true
    kill -KILL -- "-$SOAK_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -d $WORK ]]; then echo "soak: failed; logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bench/results
set -m # own process group
node dist/bench/soak.js --work "$WORK" --results bench/results &
SOAK_PID=$!
set +m
wait "$SOAK_PID"
kill -KILL -- "-$SOAK_PID" 2>/dev/null || true
SOAK_PID=""
