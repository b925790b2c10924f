/**
 * The peer's certificate as DER, for the sidecar's checks and for `svcca serve`'s callers.
 *
 * getPeerCertificate(false).raw, not getPeerX509Certificate().raw: on Node 20.20 every
 * X509Certificate a connection makes keeps native memory that a full GC does not give
 * back. Measured on a plain node:tls server under 8 concurrent new mTLS connections
 * (about 1,000 per 5 s, gc() before each sample): with getPeerX509Certificate() per
 * connection RSS went 76 → 132 MB in 30 s and kept climbing; with getPeerCertificate(false)
 * it levelled off at 93 MB, as with no call at all (88 MB). It soaked up the sidecar's RSS
 * in the 10-minute soak (+70 % after warm-up). Only the leaf is read: OpenSSL has verified
 * the chain. A resumed server-side session still carries the client's leaf.
 */
import type { TLSSocket } from 'node:tls';

/** The peer's leaf DER, or undefined when it sent none. */
export function peerLeafDer(socket: TLSSocket): Buffer | undefined {
  const cert = socket.getPeerCertificate(false) as { raw?: Buffer } | null;
  return cert?.raw;
}
