/**
 * Making and revoking one-time bootstrap tokens (`svcca token`). The ledger keeps only the
 * SHA-256 of each secret, with the service, the names and lifetime of the certificate it
 * buys, and its expiry; `svcca serve` uses it up (see online-issuance.ts).
 */
import { createHash } from 'node:crypto';
import { formatBootstrapToken, newTokenSecret, tokenSecretHash } from '../../common/bootstrap-token.js';
import { decodeCertificates } from '../../common/pem.js';
import type { Ledger } from '../store/ledger.js';

export interface TokenRequest {
  readonly service: string;
  /** How long the token may be used (ms). */
  readonly ttlMs: number;
  /** The lifetime of the certificate it buys (ms), already checked against the CA's limits. */
  readonly certTtlMs: number;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly actor: string;
}

export interface MadeToken {
  /** The token to hand to the service: shown once, never stored. */
  readonly token: string;
  readonly expiresAt: number;
  readonly rootSha256: string;
}

/** What a token names of its CA: the trust domain and the root (no key is needed). */
export interface TokenIssuer {
  readonly trustDomain: string;
  readonly rootPem: string;
}

export function rootFingerprint(rootPem: string): string {
  return createHash('sha256').update(decodeCertificates(rootPem, 'root.crt')[0]!).digest('hex');
}

export async function makeBootstrapToken(issuer: TokenIssuer, ledger: Ledger, req: TokenRequest, now = Date.now()): Promise<MadeToken> {
  const secret = newTokenSecret();
  const rootSha256 = rootFingerprint(issuer.rootPem);
  const expiresAt = now + req.ttlMs;
  await ledger.transaction(async (tx) => {
    await tx.insertToken({
      secretSha256: tokenSecretHash(secret),
      service: req.service,
      dnsNames: [...req.dnsNames],
      ips: [...req.ips],
      certTtlMs: req.certTtlMs,
      createdAt: now,
      expiresAt,
      actor: req.actor,
    });
    await tx.appendEvent({
      kind: 'token',
      service: req.service,
      actor: req.actor,
      why: `bootstrap token made, valid until ${new Date(expiresAt).toISOString()}`,
    });
  });
  return {
    token: formatBootstrapToken({ trustDomain: issuer.trustDomain, service: req.service, rootSha256, secret }),
    expiresAt,
    rootSha256,
  };
}

/** Revokes the service's unused tokens; returns how many. */
export async function revokeBootstrapTokens(ledger: Ledger, service: string, actor: string, now = Date.now()): Promise<number> {
  return ledger.transaction(async (tx) => {
    const n = await tx.revokeTokens(service, now);
    if (n > 0) await tx.appendEvent({ kind: 'token', service, actor, why: `revoked ${n} unused bootstrap token(s)` });
    return n;
  });
}
