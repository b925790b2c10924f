#!/bin/sh
# Copies the CA's crl.pem to $SVCCA_SETS/crl/crl.pem, where every sidecar reads it:
# written beside the target and renamed over it, so a sidecar never reads half a file.
# Run it after `svcca rotate`, `svcca revoke` and `svcca crl`.
set -eu
: "${SVCCA_DIR:=/var/lib/svcca/ca-data}" "${SVCCA_SETS:=/var/lib/svcca/sets}"
src="$SVCCA_DIR/crl.pem"
dir="$SVCCA_SETS/crl"
mkdir -p "$dir"
if [ -f "$dir/crl.pem" ] && cmp -s "$src" "$dir/crl.pem"; then
  exit 0
fi
tmp="$dir/.crl.pem.$$"
cp "$src" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$dir/crl.pem"
echo "published $dir/crl.pem"
