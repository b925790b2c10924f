/**
 * Judging a peer's certificate as an X509-SVID, in JS, on every connection (a resumed
 * TLS session skips OpenSSL's checks, so OpenSSL's verdict alone is not enough).
 *
 * The checks run from the most specific to the most general, so that each refusal names
 * the check that caught it: a certificate from another CA that is also expired is logged
 * as expired; an SVID-shaped certificate that does not chain is logged as untrusted.
 * The identity is read from the certificate's DER, never from Node's `subjectaltname`
 * string (where a DNS SAN can read `URI:spiffe://…`).
 */
import { createHash } from 'node:crypto';
import { parseSpiffeId, type SpiffeId } from '../../common/spiffe-id.js';
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH, KeyUsageBit, parseCertificate, type CertInfo } from '../../common/x509.js';
import { crlCovering } from '../../common/crl.js';
import { clipForLog } from '../log-fields.js';
import type { Snapshot } from '../snapshot.js';

/** Stable refusal codes: the `reason` label of the refusal metric and log line. */
export type RefusalReason =
  | 'no-certificate'
  | 'unparsable-certificate'
  | 'ca-certificate'
  | 'ca-key-usage'
  | 'wrong-key-usage'
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'not-spiffe-id'
  | 'foreign-trust-domain'
  | 'not-yet-valid'
  | 'expired'
  | 'untrusted-chain'
  | 'revoked'
  | 'revocation-unknown'
  | 'policy-denied'
  | 'wrong-server-id'
  | 'own-certificate-invalid'
  | 'handshake-failed'
  | 'handshake-timeout'
  | 'too-many-connections'
  | 'too-many-handshakes'
  | 'too-many-tunnels'
  | 'bad-tunnel-stream'
  | 'tunnel-abuse'
  | 'forward-unavailable'
  | 'connect-failed'
  | 'closed-by-server';

export type PeerVerdict =
  | { readonly ok: true; readonly id: SpiffeId; readonly leaf: CertInfo }
  | { readonly ok: false; readonly reason: RefusalReason; readonly detail: string; readonly peer: string; readonly leaf?: CertInfo };

export const NO_CERTIFICATE = 'no certificate';

/**
 * The largest peer leaf that is parsed at all before OpenSSL has verified its chain. An
 * X509-SVID from this CA is about 1 KB; anything unverified above this is refused as
 * untrusted without being read, so an unauthenticated client cannot make the sidecar
 * parse megabytes per handshake.
 */
export const MAX_UNVERIFIED_LEAF_BYTES = 16 * 1024;

/**
 * Parsing costs about 0.3 ms; a cache keyed by the DER's hash costs microseconds. Only
 * certificates whose chain OpenSSL verified are cached (anyone can send any number of
 * self-signed ones), and the cache is bounded in entries and in bytes; it is cleared
 * wholesale when full: certificates rotate, a leak would be slow but sure.
 */
export class CertCache {
  readonly #map = new Map<string, CertInfo>();
  #bytes = 0;
  constructor(
    private readonly max = 4096,
    private readonly maxBytes = 8 * 1024 * 1024,
  ) {}
  parse(der: Buffer): CertInfo {
    const key = createHash('sha256').update(der).digest('base64');
    const hit = this.#map.get(key);
    if (hit) return hit;
    const info = parseCertificate(der, 'peer certificate');
    // A parsed certificate holds about its DER's size again in strings and buffers.
    const cost = 2 * der.length;
    if (cost > this.maxBytes) return info;
    if (this.#map.size >= this.max || this.#bytes + cost > this.maxBytes) {
      this.#map.clear();
      this.#bytes = 0;
    }
    this.#map.set(key, info);
    this.#bytes += cost;
    return info;
  }

  get size(): number {
    return this.#map.size;
  }
}

export interface PeerInput {
  readonly leafDer: Buffer | undefined;
  /** OpenSSL's chain verdict against ca.crt (the session's, when resumed). */
  readonly authorized: boolean;
  readonly authorizationError?: string | undefined;
  /** The peer is a TLS client (inbound) or server (outbound). */
  readonly role: 'client' | 'server';
}

/** Judges a peer certificate against the snapshot (trust domain, CRLs) at `now`. */
export function verifyPeer(input: PeerInput, snap: Snapshot, now: Date, cache: CertCache): PeerVerdict {
  if (!input.leafDer) return { ok: false, reason: 'no-certificate', detail: 'the peer sent no certificate', peer: NO_CERTIFICATE };
  const untrusted = `the chain does not verify against ca.crt (${input.authorizationError ?? 'unknown error'})`;
  if (!input.authorized && input.leafDer.length > MAX_UNVERIFIED_LEAF_BYTES) {
    return {
      ok: false,
      reason: 'untrusted-chain',
      detail: `${untrusted}; its ${input.leafDer.length}-byte leaf was not read`,
      peer: NO_CERTIFICATE,
    };
  }
  let leaf: CertInfo;
  try {
    // An unverified leaf is read once, to name what is wrong with it, and never kept.
    leaf = input.authorized ? cache.parse(input.leafDer) : parseCertificate(input.leafDer, 'peer certificate');
  } catch {
    return { ok: false, reason: 'unparsable-certificate', detail: 'the certificate cannot be parsed', peer: NO_CERTIFICATE };
  }
  const claimed = clipForLog(
    leaf.uris.length === 1
      ? leaf.uris[0]!
      : leaf.uris.length === 0
        ? `(no URI SAN; subject ${leaf.subject || 'empty'})`
        : leaf.uris.join(','),
  );
  const refuse = (reason: RefusalReason, detail: string): PeerVerdict => ({ ok: false, reason, detail, peer: claimed, leaf });

  if (leaf.isCA === true)
    return refuse('ca-certificate', 'the certificate is a CA certificate (basicConstraints CA:TRUE), not a service identity');
  // X509-SVID §4: a leaf sets basicConstraints cA=false and the digitalSignature usage;
  // one that leaves them out is not an SVID, whoever signed it.
  if (leaf.isCA === undefined)
    return refuse('ca-certificate', 'the certificate has no basicConstraints extension; an X509-SVID states CA:FALSE');
  if (leaf.keyUsage === undefined)
    return refuse('wrong-key-usage', 'the certificate has no key usage extension; an X509-SVID sets digitalSignature');
  if (leaf.keyUsage !== undefined && (leaf.keyUsage & (KeyUsageBit.keyCertSign | KeyUsageBit.cRLSign)) !== 0) {
    return refuse('ca-key-usage', 'the certificate may sign certificates or CRLs (keyCertSign/cRLSign), which an X509-SVID must not');
  }
  if (leaf.keyUsage !== undefined && (leaf.keyUsage & KeyUsageBit.digitalSignature) === 0) {
    return refuse('wrong-key-usage', 'the certificate lacks the digitalSignature key usage');
  }
  const eku = input.role === 'client' ? EKU_CLIENT_AUTH : EKU_SERVER_AUTH;
  if (leaf.extKeyUsage !== undefined && !leaf.extKeyUsage.includes(eku)) {
    return refuse(
      'wrong-key-usage',
      `the certificate's extended key usage does not allow ${input.role === 'client' ? 'clientAuth' : 'serverAuth'}`,
    );
  }
  if (leaf.uris.length === 0) {
    const shown = leaf.dnsNames.slice(0, 5).map((d) => JSON.stringify(clipForLog(d, 100)));
    const more = leaf.dnsNames.length > shown.length ? ` and ${leaf.dnsNames.length - shown.length} more` : '';
    const dns = leaf.dnsNames.length ? `; it has DNS SANs ${shown.join(', ')}${more}` : '';
    return refuse('no-uri-san', `the certificate has no URI SAN${dns}`);
  }
  if (leaf.uris.length > 1)
    return refuse('multiple-uri-sans', `the certificate has ${leaf.uris.length} URI SANs; an X509-SVID has exactly one`);
  const parsed = parseSpiffeId(leaf.uris[0]!);
  if (!parsed.ok) return refuse('not-spiffe-id', `the URI SAN is not a SPIFFE ID: ${clipForLog(parsed.reason)}`);
  if (parsed.id.trustDomain !== snap.identity.id.trustDomain) {
    return refuse(
      'foreign-trust-domain',
      `trust domain ${clipForLog(parsed.id.trustDomain, 255)} is not ours (${snap.identity.id.trustDomain})`,
    );
  }
  if (now < leaf.notBefore) return refuse('not-yet-valid', `the certificate is not valid before ${leaf.notBefore.toISOString()}`);
  if (now > leaf.notAfter) return refuse('expired', `the certificate expired at ${leaf.notAfter.toISOString()}`);
  if (!input.authorized) return refuse('untrusted-chain', untrusted);
  const revocation = revocationProblem(leaf, snap);
  if (revocation) return refuse(revocation.reason, revocation.detail);
  return { ok: true, id: parsed.id, leaf };
}

/** Revoked, or no CRL from its issuer to tell (with a CRL configured); undefined when fine. */
function revocationProblem(leaf: CertInfo, snap: Snapshot): { reason: RefusalReason; detail: string } | undefined {
  if (!snap.crl) return undefined;
  if (snap.crl.set.revoked.has(leaf.serialHex)) return { reason: 'revoked', detail: `serial ${leaf.serialHex} is revoked` };
  if (!crlCovering(snap.crl.set, leaf)) {
    return {
      reason: 'revocation-unknown',
      detail: `${snap.crl.path} holds no CRL from the certificate's issuer (${clipForLog(leaf.issuer)}), so its revocation cannot be checked`,
    };
  }
  return undefined;
}

/** Whether an already-accepted peer is still acceptable (after a CRL swap, or at notAfter). */
export function stillValid(leaf: CertInfo, snap: Snapshot, now: Date): { ok: true } | { ok: false; reason: RefusalReason; detail: string } {
  if (now > leaf.notAfter) return { ok: false, reason: 'expired', detail: `the certificate expired at ${leaf.notAfter.toISOString()}` };
  const revocation = revocationProblem(leaf, snap);
  if (revocation) return { ok: false, ...revocation };
  return { ok: true };
}
