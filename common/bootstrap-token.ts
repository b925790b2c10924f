/**
 * The one-time bootstrap token `svcca token` prints and `svcca bootstrap` presents:
 * `svcca1.` + base64url(JSON {td, svc, fp, s}). `s` is the secret (the CA keeps only its
 * SHA-256); `fp` is the SHA-256 of the root certificate's DER, so the holder can check the
 * CA it talks to before sending the secret (as `step ca bootstrap --fingerprint` does);
 * `td` and `svc` say which server ID to expect and which service the set is for. Nothing
 * in the token but the secret is trusted by the CA: the service comes from its ledger.
 */
import { createHash, randomBytes } from 'node:crypto';
import { UsageError } from './errors.js';

const PREFIX = 'svcca1.';
/** Longer input is refused before decoding (a token is about 250 characters). */
const MAX_TOKEN_LENGTH = 2048;

export interface BootstrapTokenClaims {
  readonly trustDomain: string;
  readonly service: string;
  /** SHA-256 (hex) of the root certificate's DER. */
  readonly rootSha256: string;
  /** The secret, base64url. */
  readonly secret: string;
}

/** A new secret: 32 random bytes, base64url. */
export function newTokenSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** What the ledger stores for a secret. */
export function tokenSecretHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function formatBootstrapToken(c: BootstrapTokenClaims): string {
  return (
    PREFIX + Buffer.from(JSON.stringify({ td: c.trustDomain, svc: c.service, fp: c.rootSha256, s: c.secret }), 'utf8').toString('base64url')
  );
}

/** Parses a token; `label` names where it came from (`--token`, the request body). */
export function parseBootstrapToken(text: string, label = '--token'): BootstrapTokenClaims {
  const bad = () =>
    new UsageError(
      `${label} is not an svcca bootstrap token`,
      'copy the whole line `svcca token SERVICE` printed (it starts with svcca1.)',
    );
  const value = text.trim();
  if (value.length > MAX_TOKEN_LENGTH || !value.startsWith(PREFIX)) throw bad();
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(value.slice(PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const o = raw as Record<string, unknown>;
  const str = (k: string) => (typeof o?.[k] === 'string' && (o[k] as string).length > 0 ? (o[k] as string) : undefined);
  const td = str('td');
  const svc = str('svc');
  const fp = str('fp');
  const s = str('s');
  if (!td || !svc || !fp || !s || !/^[0-9a-f]{64}$/.test(fp) || !/^[A-Za-z0-9_-]{16,128}$/.test(s)) throw bad();
  return { trustDomain: td, service: svc, rootSha256: fp, secret: s };
}
