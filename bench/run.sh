#!/usr/bin/env bash
# make bench: the proxy benchmark (svcca-sidecar vs a plain-Node floor, direct and the
# installed mTLS proxies, one run, ratios), then — with BENCH_CA=1 — the CA-side
# benchmarks (ca-issue, ca-rotate, ca-postgres: about 6 more minutes).
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
# Knobs: see bench/README.md (BENCH_REPS, BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_IDLE_CONNS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

for f in dist/bin/svcca.mjs dist/bin/svcca-sidecar.mjs dist/bench/proxy-bench.js dist/bench/proxy/client.js; do
  [[ -f $f ]] || { echo "bench: $f is missing; run make build first" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "bench: openssl is required (certificate checks and s_time)" >&2; exit 1; }

# The idle-connection row opens 5,000 mTLS connections: the client needs 5,000 descriptors and
# the proxy twice that (each one plus its upstream). Raise the limit as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "bench: open-file limit $(ulimit -n)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/svcca-bench.XXXXXX")
BENCH_PID=""
cleanup() {
  local rc=$?
  if [[ -n $BENCH_PID ]]; then
    # The benchmark runs in its own process group (set -m): it stops its children itself
    # on SIGTERM; whatever is left of the group after that is killed by the group's id.
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
    kill -KILL -- "-$BENCH_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -d $WORK ]]; then
    echo "bench: failed; logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bench/results
set -m # own process group for the benchmark and everything it starts
node dist/bench/proxy-bench.js --work "$WORK" --results bench/results &
BENCH_PID=$!
set +m
wait "$BENCH_PID"
kill -KILL -- "-$BENCH_PID" 2>/dev/null || true # nothing should be left; make sure
BENCH_PID=""

if [[ ${BENCH_TUNNEL:-1} == 1 ]]; then
  echo
  echo "== tunnel-bench: the mesh path with tunnel auto, tunnel off, and direct (issue 13)"
  node dist/bench/tunnel-bench.js --seconds "${TUNNEL_SECONDS:-5}"
fi

if [[ ${BENCH_CA:-0} != 1 ]]; then
  echo
  echo "== ca-issue, ca-rotate, ca-postgres: skipped (about 6 minutes; run with BENCH_CA=1 make bench)"
  exit 0
fi
for b in ca-issue ca-rotate ca-postgres; do
  if [[ -f dist/bench/$b.js ]]; then
    echo
    echo "== $b"
    node "dist/bench/$b.js"
  else
    echo
    echo "== $b: skipped (bench/$b.ts is not there yet)"
  fi
done
