/**
 * The client side of `svcca serve`, shared by `svcca renew`, `svcca bootstrap` and the
 * sidecar (`identity.renew`, an `https://` `identity.crl`): one implementation of how a
 * CA is reached and trusted, how a key and CSR are made, and how an answer is checked
 * before a credential set is switched.
 *
 * The server is trusted only through a trust bundle already held (the set's `ca.crt`,
 * `--ca-bundle`) or a root whose SHA-256 the bootstrap token carries, never on first use,
 * and it must present exactly `spiffe://<trust-domain>/svcca` (no host-name matching).
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { writeFileAtomic } from './atomic-file.js';
import { readCredentialSet, writeCredentialSet } from './credential-set.js';
import { buildCsrPem } from './csr-builder.js';
import { IdentityError, SvccaError, UsageError } from './errors.js';
import { exportKeyPem, generateKey, keyMatchesSpki, keyTypeOf, readPrivateKeyPem, type KeyType } from './keys.js';
import { decodeCertificates, encodePem } from './pem.js';
import { isDue, type Threshold } from './renewal-threshold.js';
import { parseSpiffeId, spiffeIdFor } from './spiffe-id.js';
import { isSignedBy, parseCertificate, type CertInfo } from './x509.js';
import type { BootstrapTokenClaims } from './bootstrap-token.js';

/** The service name the CA server presents (see cli/ca/online-issuance.ts). */
export const CA_SERVER_SERVICE = 'svcca';
const DEFAULT_TIMEOUT_MS = 15_000;
/** Answers are a certificate chain or crl.pem; crl.pem is capped like the file. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** The CA could not be reached, or answered with an error. */
export class CaRequestError extends SvccaError {
  override readonly name = 'CaRequestError';
  constructor(
    message: string,
    hint: string,
    /** The server's error code (`superseded`, `rate-limited`…), or `unreachable`. */
    readonly reason: string,
    readonly status?: number,
  ) {
    super('E_CA_REQUEST', message, hint);
  }
}

/** Parses `--ca https://HOST:PORT`: https only, nothing after the authority. */
export function parseCaUrl(text: string, label = '--ca'): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${label} ${JSON.stringify(text)} is not a URL`, `e.g. ${label} https://ca.internal:9443`);
  }
  if (url.protocol !== 'https:')
    throw new UsageError(`${label} ${text}: the CA is reached over https only`, `e.g. ${label} https://ca.internal:9443`);
  if (url.username || url.password || url.search || url.hash)
    throw new UsageError(`${label} ${text}: give only https://HOST:PORT`, `e.g. ${label} https://ca.internal:9443`);
  return url;
}

export interface CaTls {
  /** PEM roots the server must chain to. */
  readonly caPem: string;
  /** The exact SPIFFE ID the server must present. */
  readonly serverId: string;
  /** Client certificate chain and key (mTLS), when the request needs them. */
  readonly certPem?: string;
  readonly keyPem?: string;
}

export interface CaAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The server must present exactly `serverId` as its one URI SAN. */
function serverIdCheck(serverId: string) {
  return (_host: string, cert: { raw?: Buffer }): Error | undefined => {
    try {
      const info = cert.raw ? parseCertificate(cert.raw, 'the server certificate') : undefined;
      if (info && info.uris.length === 1 && info.uris[0] === serverId) return undefined;
      return new Error(`the server presented ${JSON.stringify(info?.uris ?? [])}, not ${serverId}`);
    } catch (err) {
      return err as Error;
    }
  };
}

/**
 * One HTTPS request to the CA. `tls` undefined means an unverified connection: used only
 * to fetch the trust bundle that is then checked against a pinned fingerprint.
 */
export function caRequest(
  base: URL,
  method: 'GET' | 'POST',
  path: string,
  tls: CaTls | undefined,
  opts: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CaAnswer> {
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: base.hostname.replace(/^\[|\]$/g, ''),
        port: base.port || 443,
        method,
        path,
        agent: false,
        minVersion: 'TLSv1.3',
        headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...opts.headers },
        ...(tls
          ? {
              ca: tls.caPem,
              rejectUnauthorized: true,
              checkServerIdentity: serverIdCheck(tls.serverId),
              ...(tls.certPem ? { cert: tls.certPem, key: tls.keyPem } : {}),
            }
          : { rejectUnauthorized: false }),
        timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      reject(
        new CaRequestError(
          `cannot reach the CA at ${base.origin}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ''}`,
          'check --ca and that `svcca serve` runs there',
          'unreachable',
        ),
      );
    });
    req.end(payload);
  });
}

/** A non-2xx answer as an error carrying the server's own code and message. */
function refusedBy(base: URL, what: string, answer: CaAnswer): CaRequestError {
  let code = `http-${answer.status}`;
  let message = answer.body.toString('utf8').slice(0, 300);
  try {
    const parsed = JSON.parse(answer.body.toString('utf8')) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === 'string') code = parsed.error;
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // not JSON: keep the text
  }
  return new CaRequestError(
    `the CA at ${base.origin} refused the ${what} (${answer.status} ${code}): ${message}`,
    code === 'rate-limited' ? 'retry later' : '',
    code,
    answer.status,
  );
}

/** What `/v1/renew` and `/v1/bootstrap` answer. */
interface IssuedAnswer {
  readonly certificate: string;
  readonly serial: string;
  readonly notAfter: string;
  readonly clamped: boolean;
}

export interface NewSet {
  readonly serial: string;
  readonly spiffeId: string;
  readonly notAfter: Date;
  readonly clamped: boolean;
}

/**
 * Checks an issued chain before it is written: the leaf is for our new key, carries the
 * expected ID, and chains to the roots we trust. Then switches the set in `dir`.
 */
function writeIssued(dir: string, answer: CaAnswer, key: KeyObject, caPem: string, expectedId: string, base: URL): NewSet {
  let parsed: IssuedAnswer;
  try {
    parsed = JSON.parse(answer.body.toString('utf8')) as IssuedAnswer;
  } catch {
    throw new CaRequestError(
      `the CA at ${base.origin} answered something that is not JSON`,
      'check that --ca names svcca serve',
      'bad-answer',
    );
  }
  const bad = (why: string) =>
    new CaRequestError(
      `the CA's answer is unusable: ${why}; nothing was written`,
      'check that --ca names the CA that issued this set',
      'bad-answer',
    );
  if (typeof parsed.certificate !== 'string') throw bad('it holds no certificate');
  let chain: Buffer[];
  let leaf: CertInfo;
  try {
    chain = decodeCertificates(parsed.certificate, 'the issued certificate');
    leaf = parseCertificate(chain[0]!, 'the issued certificate');
  } catch {
    throw bad('the certificate cannot be read');
  }
  if (!keyMatchesSpki(key, leaf.spkiDer)) throw bad('the certificate is not for the new key');
  if (leaf.uris.length !== 1 || leaf.uris[0] !== expectedId)
    throw bad(`the certificate is for ${JSON.stringify(leaf.uris)}, not ${expectedId}`);
  const roots = decodeCertificates(caPem, 'ca.crt');
  let top = chain[0]!;
  for (const next of chain.slice(1)) {
    if (!isSignedBy(top, next)) throw bad('the chain is out of order');
    top = next;
  }
  if (!roots.some((r) => r.equals(top) || isSignedBy(top, r))) throw bad('the chain does not lead to the trusted root');
  writeCredentialSet(dir, { certChainPem: parsed.certificate, keyPem: exportKeyPem(key), caPem });
  return { serial: leaf.serialHex, spiffeId: expectedId, notAfter: leaf.notAfter, clamped: parsed.clamped === true };
}

export interface RenewOptions {
  readonly ca: URL;
  readonly dir: string;
  readonly threshold: Threshold;
  /** Renew whatever is left. */
  readonly force?: boolean;
  readonly now?: number;
  readonly timeoutMs?: number;
}

export type RenewOutcome =
  | { readonly kind: 'not-due'; readonly serial: string; readonly notAfter: Date; readonly dueAt: Date }
  | ({ readonly kind: 'renewed'; readonly previousSerial: string } & NewSet);

/** When `leaf` is due under `t` (ms). */
export function renewalDueAt(leaf: CertInfo, t: Threshold): number {
  const left = t.kind === 'duration' ? t.ms : (leaf.notAfter.getTime() - leaf.notBefore.getTime()) * t.fraction;
  return leaf.notAfter.getTime() - left;
}

/**
 * Renews the credential set in `dir` through the CA at `ca` when it is due: a new key of
 * the same type made here, a CSR, mTLS with the current certificate, and the `..data`
 * swap. Throws IdentityError for an unusable set and CaRequestError for the CA's refusals.
 */
export async function renewCredentialSet(o: RenewOptions): Promise<RenewOutcome> {
  const set = readCredentialSet(o.dir);
  let leaf: CertInfo;
  let key: KeyObject;
  try {
    leaf = parseCertificate(decodeCertificates(set.certChainPem, `${o.dir}/tls.crt`)[0]!, `${o.dir}/tls.crt`);
    key = readPrivateKeyPem(set.keyPem, `${o.dir}/tls.key`);
  } catch (err) {
    throw new IdentityError(
      `the credential set in ${o.dir} cannot be read: ${(err as Error).message}`,
      'bootstrap it again with `svcca bootstrap`',
      err,
    );
  }
  const id = leaf.uris.length === 1 ? parseSpiffeId(leaf.uris[0]!) : undefined;
  if (!id?.ok) throw new IdentityError(`${o.dir}/tls.crt is not an X509-SVID`, 'bootstrap it again with `svcca bootstrap`');
  const now = o.now ?? Date.now();
  const validity = { notBefore: leaf.notBefore.getTime(), notAfter: leaf.notAfter.getTime() };
  if (!o.force && !isDue(validity, now, o.threshold))
    return { kind: 'not-due', serial: leaf.serialHex, notAfter: leaf.notAfter, dueAt: new Date(renewalDueAt(leaf, o.threshold)) };
  const pending = pendingRenewalKey(o.dir, keyTypeOf(key) ?? 'ecdsa-p256');
  const csr = buildCsrPem(pending.key, id.id.service);
  const tls: CaTls = {
    caPem: set.caPem,
    serverId: spiffeIdFor(id.id.trustDomain, CA_SERVER_SERVICE),
    certPem: set.certChainPem,
    keyPem: set.keyPem,
  };
  const answer = await caRequest(o.ca, 'POST', '/v1/renew', tls, { body: { csr }, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) });
  // A refusal is final for this key; an error or a 5xx may hide a renewal that committed.
  if (answer.status >= 400 && answer.status < 500) pending.forget();
  if (answer.status !== 200) throw refusedBy(o.ca, 'renewal', answer);
  const written = writeIssued(o.dir, answer, pending.key, set.caPem, id.id.uri, o.ca);
  pending.forget();
  return { kind: 'renewed', previousSerial: leaf.serialHex, ...written };
}

/** Where a renewal's new key waits (0600) until its certificate is in the set. */
export const PENDING_RENEWAL_KEY = '.svcca-renew-pending.key';

/**
 * The new key of a renewal, kept in the set's folder until the CA's answer is written:
 * when the answer is lost (the CA replica was killed or the connection broke after the CA
 * recorded the renewal), the retry sends the same key and the CA answers with the
 * certificate it already issued for it, instead of refusing the now superseded one.
 */
function pendingRenewalKey(dir: string, type: KeyType): { key: KeyObject; forget(): void } {
  const path = join(dir, PENDING_RENEWAL_KEY);
  const forget = () => rmSync(path, { force: true });
  try {
    const kept = readPrivateKeyPem(readFileSync(path, 'utf8'), path);
    if (keyTypeOf(kept) === type) return { key: kept, forget };
  } catch {
    // none (the usual case), or unreadable: a new one replaces it
  }
  const key = generateKey(type);
  writeFileAtomic(path, exportKeyPem(key), 0o600);
  return { key, forget };
}

export interface BootstrapOptions {
  readonly ca: URL;
  readonly token: string;
  readonly claims: BootstrapTokenClaims;
  readonly out: string;
  /** PEM roots to trust instead of fetching /v1/ca.crt and checking the token's fingerprint. */
  readonly caBundlePem?: string;
  readonly timeoutMs?: number;
}

function sha256(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/**
 * The root to trust for a bootstrap: from `--ca-bundle`, or fetched from the server
 * without verification and kept only when its SHA-256 is the token's fingerprint (no
 * secret is sent before that check).
 */
async function pinnedRoot(o: BootstrapOptions): Promise<Buffer> {
  let candidates: Buffer[];
  if (o.caBundlePem !== undefined) candidates = decodeCertificates(o.caBundlePem, '--ca-bundle');
  else {
    const answer = await caRequest(o.ca, 'GET', '/v1/ca.crt', undefined, o.timeoutMs ? { timeoutMs: o.timeoutMs } : {});
    if (answer.status !== 200) throw refusedBy(o.ca, 'trust bundle request', answer);
    candidates = decodeCertificates(answer.body.toString('utf8'), `${o.ca.origin}/v1/ca.crt`);
  }
  const root = candidates.find((c) => sha256(c) === o.claims.rootSha256);
  if (!root) {
    throw new CaRequestError(
      o.caBundlePem !== undefined
        ? 'the token was made by a CA whose root is not in --ca-bundle'
        : `the CA at ${o.ca.origin} is not the one the token names (its root's SHA-256 differs); not trusting it`,
      'check --ca, or ask for a token from the CA you mean',
      'untrusted',
    );
  }
  return root;
}

/** The first credential set from a one-time token (`svcca bootstrap`). */
export async function bootstrapCredentialSet(o: BootstrapOptions): Promise<NewSet> {
  const rootDer = await pinnedRoot(o);
  const caPem = encodePem('CERTIFICATE', rootDer);
  // A leaf's key has the CA's key type: the root's.
  const keyType: KeyType =
    keyTypeOf(createPublicKey({ key: parseCertificate(rootDer, 'the root').spkiDer, format: 'der', type: 'spki' })) ?? 'ecdsa-p256';
  const key = generateKey(keyType);
  const csr = buildCsrPem(key, o.claims.service);
  const tls: CaTls = { caPem, serverId: spiffeIdFor(o.claims.trustDomain, CA_SERVER_SERVICE) };
  const answer = await caRequest(o.ca, 'POST', '/v1/bootstrap', tls, {
    body: { token: o.token, csr },
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
  });
  if (answer.status !== 200) throw refusedBy(o.ca, 'bootstrap', answer);
  return writeIssued(o.out, answer, key, caPem, spiffeIdFor(o.claims.trustDomain, o.claims.service), o.ca);
}

export interface FetchedText {
  /** 304: `body` is empty and what the caller holds is current. */
  readonly notModified: boolean;
  readonly body: string;
  readonly etag: string | undefined;
}

/** GET of a published file (`/v1/crl.pem`) with If-None-Match, from a verified server. */
export async function fetchPublished(url: URL, tls: CaTls, etag: string | undefined, timeoutMs?: number): Promise<FetchedText> {
  const answer = await caRequest(url, 'GET', url.pathname, tls, {
    headers: etag ? { 'if-none-match': etag } : {},
    ...(timeoutMs ? { timeoutMs } : {}),
  });
  if (answer.status === 304) return { notModified: true, body: '', etag };
  if (answer.status !== 200) throw refusedBy(url, `request for ${url.pathname}`, answer);
  const tag = answer.headers.etag;
  return { notModified: false, body: answer.body.toString('utf8'), etag: typeof tag === 'string' ? tag : undefined };
}
