#!/usr/bin/env bash
# The whole svcca story in about half a minute, in a temp directory:
# a CA, three identities, two services behind sidecars, an allowed call, refusals,
# a live rotation and a revocation. Exits non-zero if any step does not behave as shown.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SVCCA="node $ROOT/dist/bin/svcca.mjs"
SIDECAR="node $ROOT/dist/bin/svcca-sidecar.mjs"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/svcca-demo.XXXXXX")
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
fail() { printf '\n\033[31mDEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
wait_http() { # url: wait until it answers (up to 10 s)
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$1 did not come up"
}

export SVCCA_DIR="$WORK/ca"
export SVCCA_PASSPHRASE="demo-passphrase-$$"

bold "1. Create a CA for the trust domain example.org"
say "svcca init --trust-domain example.org"
$SVCCA init --trust-domain example.org | sed 's/^/   /'

bold "2. Issue identities: order-service, payment-service, and an intruder"
for svc in order-service payment-service intruder; do
  $SVCCA issue "$svc" --out "$WORK/$svc" --json >/dev/null
  say "$svc -> spiffe://example.org/$svc   ($WORK/$svc/tls.crt, tls.key, ca.crt)"
done
$SVCCA list | sed 's/^/   /'

bold "3. The allow-list: order-service may call payment-service, not the other way round"
cat > "$WORK/policy.yaml" <<YAML
services:
  payment-service:
    allow: [order-service]
  order-service:
    allow: []
YAML
sed 's/^/   /' "$WORK/policy.yaml"
$SVCCA policy check order-service payment-service --policy "$WORK/policy.yaml" | sed 's/^/   policy check: /'
if $SVCCA policy check payment-service order-service --policy "$WORK/policy.yaml" >"$WORK/deny.txt"; then fail "policy check allowed payment -> order"; fi
sed 's/^/   policy check: /' "$WORK/deny.txt"

bold "4. Start both services (on loopback only) and a sidecar beside each"
ORDER_APP=$(free_port); PAY_APP=$(free_port)
ORDER_IN=$(free_port); PAY_IN=$(free_port)
ORDER_OUT=$(free_port); PAY_OUT=$(free_port)
ORDER_ADMIN=$(free_port); PAY_ADMIN=$(free_port)
node examples/demo/hello-service.mjs order-service "$ORDER_APP" & PIDS+=($!)
node examples/demo/hello-service.mjs payment-service "$PAY_APP" & PIDS+=($!)

write_config() { # name app_port in_port out_port admin_port peer_name peer_in_port
  cat > "$WORK/$1.yaml" <<YAML
identity:
  dir: $WORK/$1
  crl: $SVCCA_DIR/crl.pem
policy: $WORK/policy.yaml
inbound:
  listen: 127.0.0.1:$3
  forward: 127.0.0.1:$2
  mode: tcp
outbound:
  - listen: 127.0.0.1:$4
    connect: 127.0.0.1:$7
    serverId: spiffe://example.org/$6
admin:
  listen: 127.0.0.1:$5
YAML
}
write_config order-service "$ORDER_APP" "$ORDER_IN" "$ORDER_OUT" "$ORDER_ADMIN" payment-service "$PAY_IN"
write_config payment-service "$PAY_APP" "$PAY_IN" "$PAY_OUT" "$PAY_ADMIN" order-service "$ORDER_IN"
$SIDECAR --config "$WORK/order-service.yaml" >"$WORK/order-sidecar.log" 2>&1 & PIDS+=($!)
$SIDECAR --config "$WORK/payment-service.yaml" >"$WORK/payment-sidecar.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$ORDER_ADMIN/readyz"
wait_http "http://127.0.0.1:$PAY_ADMIN/readyz"
say "order-service:   app 127.0.0.1:$ORDER_APP, sidecar in :$ORDER_IN, out :$ORDER_OUT -> payment"
say "payment-service: app 127.0.0.1:$PAY_APP, sidecar in :$PAY_IN, out :$PAY_OUT -> order"

bold "5. order-service calls payment-service through its sidecar's outbound listener: allowed"
say "curl http://127.0.0.1:$ORDER_OUT/charge"
OUT=$(curl -sS --max-time 5 "http://127.0.0.1:$ORDER_OUT/charge") || fail "the allowed call failed"
say "-> $OUT"
[[ "$OUT" == *"payment-service answered"* ]] || fail "unexpected answer: $OUT"

bold "6. payment-service calls order-service: refused by order-service's sidecar"
if OUT=$(curl -sS --max-time 5 "http://127.0.0.1:$PAY_OUT/orders" 2>&1); then fail "payment -> order was allowed: $OUT"; fi
say "-> refused: $OUT"
sleep 0.3
say "order-service's sidecar logged:"
grep -h '"reason"' "$WORK/order-sidecar.log" | tail -1 | sed 's/^/     /' || fail "no refusal logged"

bold "7. The intruder (a valid certificate, but not on the list) calls payment-service directly: refused"
if OUT=$(curl -sS --max-time 5 --cacert "$WORK/intruder/ca.crt" --cert "$WORK/intruder/tls.crt" --key "$WORK/intruder/tls.key" \
  -k "https://127.0.0.1:$PAY_IN/charge" 2>&1); then fail "the intruder got through: $OUT"; fi
say "-> refused: ${OUT:0:100}"
sleep 0.3
say "payment-service's sidecar logged:"
grep -h 'intruder' "$WORK/payment-sidecar.log" | tail -1 | sed 's/^/     /' || fail "the intruder's refusal was not logged"

bold "8. Without any client certificate: refused"
if OUT=$(curl -sS --max-time 5 -k "https://127.0.0.1:$PAY_IN/charge" 2>&1); then fail "a call without a certificate got through"; fi
say "-> refused: ${OUT:0:100}"

bold "9. Rotate payment-service while order-service keeps calling it"
# The serial payment-service's sidecar presents to a new handshake (openssl as the client).
serial_seen() {
  openssl s_client -connect "127.0.0.1:$PAY_IN" -cert "$WORK/order-service/tls.crt" -cert_chain "$WORK/order-service/tls.crt" \
    -key "$WORK/order-service/tls.key" -CAfile "$WORK/order-service/ca.crt" </dev/null 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//'
}
BEFORE=$(serial_seen)
[ -n "$BEFORE" ] || fail "could not read payment-service's serial"
say "payment-service's sidecar presents serial $BEFORE"
( n=0; failed=0
  while [ ! -f "$WORK/stop-calls" ]; do
    n=$((n + 1)); curl -fsS --max-time 5 "http://127.0.0.1:$ORDER_OUT/charge" >/dev/null 2>&1 || failed=$((failed + 1))
  done
  echo "$n $failed" > "$WORK/calls" ) &
CALLER=$!
PIDS+=($CALLER)
sleep 1
say "svcca rotate payment-service --renew-before 100%   (what cron does when a certificate is due)"
$SVCCA rotate payment-service --renew-before 100% | sed 's/^/   /'
AFTER=""
for _ in $(seq 1 100); do
  AFTER=$(serial_seen)
  [ -n "$AFTER" ] && [ "$AFTER" != "$BEFORE" ] && break
  sleep 0.1
done
[ -n "$AFTER" ] && [ "$AFTER" != "$BEFORE" ] || fail "the sidecar did not pick up the rotated certificate"
say "the next handshake carries the new serial $AFTER (no restart)"
sleep 1
touch "$WORK/stop-calls"
wait "$CALLER" || true
read -r CALLS FAILED < "$WORK/calls"
say "order-service made $CALLS calls across the rotation; $FAILED failed"
[ "$FAILED" -eq 0 ] || fail "$FAILED calls failed during the rotation"
[ "$CALLS" -gt 0 ] || fail "no calls were made during the rotation"

bold "10. order-service's key leaks: revoke it"
say "svcca revoke order-service --reason keyCompromise"
$SVCCA revoke order-service --reason keyCompromise | sed 's/^/   /'
say "waiting for payment-service's sidecar to load the new crl.pem ..."
REFUSED=""
for _ in $(seq 1 50); do
  if ! curl -sS --max-time 5 "http://127.0.0.1:$ORDER_OUT/charge" >/dev/null 2>&1; then REFUSED=1; break; fi
  sleep 0.2
done
[ -n "$REFUSED" ] || fail "the revoked order-service could still call payment-service"
say "-> order-service's next call is refused:"
grep -h 'revoked' "$WORK/payment-sidecar.log" | tail -1 | sed 's/^/     /' || fail "the revocation refusal was not logged"

bold "Done: every step behaved as shown."
