#!/bin/sh
# What the CronJob runs: svcca rotate, then publish the sets and crl.pem even after a
# partial failure (what was renewed must reach the pods). The Job fails (for alerting:
# kube_job_status_failed) when rotate exits non-zero — 1 CA or usage error, 2 some
# renewals failed, 4 done but the intermediate nears its end (roll it: README.md) — or
# when publishing fails.
set -u
here="$(dirname "$0")"
rc=0
svcca rotate --passphrase-file "$PASSPHRASE_FILE" || rc=$?
prc=0
node "$here/publish.mjs" || prc=$?
if [ "$rc" -ne 0 ]; then
  echo "svcca rotate exited $rc" >&2
  exit "$rc"
fi
exit "$prc"
