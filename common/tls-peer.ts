/**
 * The peer's certificate as DER, for the sidecar's checks and for `svcca serve`'s callers.
 *
 * Read from the connection's session (`getSession()`, OpenSSL's i2d_SSL_SESSION), whose
 * `peer` field is the very X509 OpenSSL verified and that getPeerCertificate() would
 * describe: SSL_get0_peer_certificate returns `session->peer`, for a full handshake and,
 * on the server, a resumed one alike. The first getPeerCertificate(false) on a new
 * connection cost 75–80 µs (it builds the legacy object: three fingerprints, names, the
 * public key); the session's DER 11–14 µs (1,800 new mTLS connections each, Node 20.20,
 * P-256). That is paid on every handshake of the sidecar and every renewal of `svcca serve`.
 *
 * On the client end of a resumed session Node's getPeerCertificate reads the peer's chain,
 * which a session does not keep, and gives nothing, while the session still names the leaf
 * its first handshake verified: the outbound judges a resumed session by
 * isSessionReused(), not by this.
 *
 * Not getPeerX509Certificate(): on Node 20.20 every X509Certificate a connection makes
 * keeps native memory that a full GC does not give back (RSS 76 → 132 MB in 30 s of new
 * connections, still climbing). If the session cannot be read or holds no peer in the
 * expected place, getPeerCertificate(false).raw answers as before. Only the leaf is read:
 * OpenSSL has verified the chain.
 */
import type { TLSSocket } from 'node:tls';
import { children, DerError, readTlv } from './der-reader.js';

/** SSL_SESSION_ASN1 (OpenSSL ssl/ssl_asn1.c): `peer [3] EXPLICIT X509 OPTIONAL`. */
const SESSION_PEER_TAG = 0xa3;
const SEQUENCE = 0x30;

/** The peer's leaf DER, or undefined when it sent none. */
export function peerLeafDer(socket: TLSSocket): Buffer | undefined {
  const session = socket.getSession();
  if (session) {
    try {
      const leaf = sessionPeerDer(session);
      if (leaf) return leaf;
    } finally {
      // The session also holds its resumption secret: keep no copy of it around.
      session.fill(0);
    }
  }
  const cert = socket.getPeerCertificate(false) as { raw?: Buffer } | null;
  return cert?.raw;
}

/** The DER certificate in an encoded SSL_SESSION's peer field (a copy), or undefined. */
export function sessionPeerDer(session: Buffer): Buffer | undefined {
  try {
    const top = readTlv(session, 0, session.length);
    if (top.tag !== SEQUENCE || top.end !== session.length) return undefined;
    const peer = children(session, top).find((t) => t.tag === SESSION_PEER_TAG);
    if (!peer) return undefined;
    const cert = readTlv(session, peer.contentStart, peer.end);
    if (cert.tag !== SEQUENCE || cert.end !== peer.end) return undefined;
    return Buffer.from(session.subarray(cert.start, cert.end));
  } catch (err) {
    if (err instanceof DerError) return undefined;
    throw err;
  }
}
