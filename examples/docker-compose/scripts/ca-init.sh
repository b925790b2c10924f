#!/bin/sh
# One-shot CA set-up, safe to run again: creates the CA if there is none, issues each
# service in $SERVICES that has no credential set yet, renews whatever expired while the
# stack was down, and publishes crl.pem where the sidecars read it.
#
# Environment: TRUST_DOMAIN, SERVICES (space-separated), PASSPHRASE_FILE,
# SVCCA_DIR (the CA directory), SVCCA_SETS (where credential sets and crl/ go).
set -eu
: "${TRUST_DOMAIN:?set TRUST_DOMAIN}" "${SERVICES:?set SERVICES}" "${PASSPHRASE_FILE:?set PASSPHRASE_FILE}"
: "${SVCCA_DIR:=/var/lib/svcca/ca-data}" "${SVCCA_SETS:=/var/lib/svcca/sets}"
export SVCCA_DIR

if [ ! -f "$SVCCA_DIR/ca.crt" ]; then
  # The root key's passphrase defaults to the intermediate's. In production, move
  # $SVCCA_DIR/root.key off this volume afterwards: only `svcca rotate --intermediate` needs it.
  svcca init --trust-domain "$TRUST_DOMAIN" --passphrase-file "$PASSPHRASE_FILE"
fi

for service in $SERVICES; do
  if [ ! -e "$SVCCA_SETS/$service/..data" ]; then
    svcca issue "$service" --out "$SVCCA_SETS/$service" --passphrase-file "$PASSPHRASE_FILE"
  fi
done

# After a long stop, certificates may have expired: rotate renews them (expired ones too).
# 4 means "done, attention needed" (the intermediate nears its end); it is not a failure here.
rc=0
svcca rotate --passphrase-file "$PASSPHRASE_FILE" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ]; then
  echo "ca-init: svcca rotate exited $rc" >&2
  exit "$rc"
fi

sh "$(dirname "$0")/publish-crl.sh"
