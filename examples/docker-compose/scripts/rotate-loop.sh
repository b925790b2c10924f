#!/bin/sh
# The rotation container: `svcca rotate` every $ROTATE_EVERY seconds, then publish
# crl.pem. The sidecars notice renewed sets and a new crl.pem by themselves (they check
# the files every 2 seconds by default), so nothing is restarted.
#
# rotate's exit codes: 0 done (nothing due counts), 1 usage or CA error, 2 some renewals
# failed (each named above), 4 done but attention needed (the intermediate nears its end,
# or a renewal was clamped to it: run `svcca rotate --intermediate` with the root key).
set -u
: "${PASSPHRASE_FILE:?set PASSPHRASE_FILE}" "${ROTATE_EVERY:=900}"
here="$(dirname "$0")"
while :; do
  rc=0
  svcca rotate --passphrase-file "$PASSPHRASE_FILE" || rc=$?
  case "$rc" in
    0) ;;
    4) echo "rotate: exit 4: attention needed (see above); roll the intermediate with the root key" >&2 ;;
    2) echo "rotate: exit 2: some renewals failed (named above); the others were done" >&2 ;;
    *) echo "rotate: exit $rc: nothing was renewed; fix the error above" >&2 ;;
  esac
  sh "$here/publish-crl.sh" || echo "rotate: publishing crl.pem failed" >&2
  sleep "$ROTATE_EVERY"
done
