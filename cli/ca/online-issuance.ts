/**
 * Issuing over the network (`svcca serve`): a service renewing itself with its current
 * certificate, a first certificate bought with a one-time token, and the server's own
 * certificate. Handlers in cli/serve/ only decode the request and call these; every rule
 * (who may renew, which names, which lifetime, which keys are refused) lives here, and
 * everything is recorded through issueAndRecord exactly as `svcca issue --csr` records it.
 *
 * A renewal names the serial it renews (`renewsSerial`): the write transaction refuses it
 * when the service was revoked, re-issued or renewed since the caller's certificate was
 * checked, so a renewal racing `svcca revoke` either loses (refused) or wins and is then
 * revoked with the rest of the service's unexpired certificates.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { CaStateError, InputError, UsageError } from '../../common/errors.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseSpiffeId } from '../../common/spiffe-id.js';
import { parseCertificate, type CertInfo } from '../../common/x509.js';
import { generateKey } from '../../common/keys.js';
import { tokenSecretHash, type BootstrapTokenClaims } from '../../common/bootstrap-token.js';
import type { CaDir } from '../store/ca-dir.js';
import type { CertificateRecord, Ledger } from '../store/ledger.js';
import { leafValidity, spkiOf, type Authority } from './authority.js';
import { issueAndRecord, RenewalOvertaken } from './issuance.js';
import { csrKeyFromPem, type CsrKey } from './csr.js';

/** The service name of the CA server's own certificate: `spiffe://<td>/svcca`. */
export const SERVER_SERVICE = 'svcca';
const REPLICA_PREFIX = `${SERVER_SERVICE}/replica/`;

/**
 * The ledger's name for the own certificate of the `svcca serve` replica `replica`. Every
 * replica presents `spiffe://<td>/svcca` (what clients pin), but each has a serving
 * certificate of its own, as step-ca and SPIRE servers do: recorded under its own name, a
 * replica's start or renewal never supersedes another's, and `svcca list` shows one
 * active certificate per replica.
 */
export function serverServiceFor(replica: string): string {
  return REPLICA_PREFIX + replica;
}

/** True for the names the CA server's own certificates are recorded under (never issued by hand). */
export function isServerService(service: string): boolean {
  return service === SERVER_SERVICE || service.startsWith(REPLICA_PREFIX);
}

/** Refuses `svcca` and `svcca/replica/…` for issue and token: a certificate for them would pass as the CA server. */
export function assertNotServerService(service: string): void {
  if (isServerService(service))
    throw new UsageError(`${service} is the CA server's own identity (svcca serve issues it to itself)`, 'choose another service name');
}

/** Why a request was refused; the server maps each code to an HTTP status. */
export type RefusalCode =
  | 'no-client-certificate'
  | 'untrusted-certificate'
  | 'not-svid'
  | 'unknown-certificate'
  | 'revoked'
  | 'superseded'
  | 'expired'
  | 'bad-csr'
  | 'same-key'
  | 'key-blocked'
  | 'token-invalid'
  | 'ca-unavailable';

/** A refused request: `message` says what and what to do, and is safe to send to the caller. */
export class Refusal extends Error {
  constructor(
    readonly code: RefusalCode,
    message: string,
  ) {
    super(message);
  }
}

export interface OnlineCa {
  readonly dir: CaDir;
  readonly ledger: Ledger;
  readonly authority: Authority;
  /** user@host of the server, for the event log. */
  readonly actor: string;
}

export interface Issued {
  readonly record: CertificateRecord;
  /** Leaf then intermediate, PEM: what goes into tls.crt. */
  readonly chainPem: string;
  /** The trust bundle (root), PEM. */
  readonly caPem: string;
  readonly clamped: boolean;
}

function sha256Hex(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

async function csrKey(csrPem: string): Promise<CsrKey> {
  try {
    return await csrKeyFromPem(csrPem, 'the CSR');
  } catch (err) {
    if (err instanceof InputError) throw new Refusal('bad-csr', err.line);
    throw err;
  }
}

function assertIntermediateLive(authority: Authority, now: number): void {
  if (authority.intermediate.info.notAfter.getTime() <= now) {
    throw new Refusal(
      'ca-unavailable',
      'the CA cannot issue: its intermediate has expired; the operator must run `svcca rotate --intermediate`',
    );
  }
}

async function issueOnline(
  ca: OnlineCa,
  record: Omit<Parameters<typeof issueAndRecord>[2], 'actor' | 'notAfterCap' | 'ownerRenews'>,
): Promise<Issued> {
  try {
    const issued = await issueAndRecord(ca.authority, ca.ledger, {
      ...record,
      actor: ca.actor,
      notAfterCap: ca.authority.intermediate.info.notAfter.getTime(),
      ownerRenews: true,
    });
    return {
      record: issued.record,
      chainPem: issued.record.certPem + ca.authority.intermediate.pem,
      caPem: ca.authority.rootPem,
      clamped: issued.clamped,
    };
  } catch (err) {
    if (err instanceof RenewalOvertaken) {
      throw new Refusal(
        err.change === 'revoked' ? 'revoked' : 'superseded',
        `this certificate is no longer the service's active one: it ${err.message}; nothing was issued`,
      );
    }
    if (err instanceof CaStateError && /keyCompromise/.test(err.message))
      throw new Refusal('key-blocked', 'the key in the CSR was revoked for keyCompromise and is never signed again; make a new key');
    throw err;
  }
}

/** What the CA knows about the certificate a caller presented, checked to be renewable. */
export async function renewableRecord(ca: OnlineCa, caller: CertInfo, now: number): Promise<CertificateRecord> {
  if (caller.uris.length !== 1)
    throw new Refusal('not-svid', `the client certificate has ${caller.uris.length} URI SANs; an X509-SVID has exactly one`);
  const id = parseSpiffeId(caller.uris[0]!);
  if (!id.ok || id.id.trustDomain !== ca.authority.config.trustDomain) {
    throw new Refusal(
      'not-svid',
      `the client certificate's ID ${JSON.stringify(caller.uris[0])} is not in the trust domain ${ca.authority.config.trustDomain}`,
    );
  }
  if (caller.notAfter.getTime() <= now || caller.notBefore.getTime() > now) {
    throw new Refusal(
      'expired',
      `the client certificate is outside its validity (until ${caller.notAfter.toISOString()}); get a new one with a bootstrap token (\`svcca token ${id.id.service}\`)`,
    );
  }
  const record = await ca.ledger.getCertificate(caller.serialHex);
  const ledgerDer = record ? decodeCertificates(record.certPem, 'the ledger certificate')[0] : undefined;
  if (!record || !ledgerDer?.equals(caller.der)) {
    throw new Refusal(
      'unknown-certificate',
      `this CA has no record of the client certificate (serial ${caller.serialHex}); renew with the set this CA issued`,
    );
  }
  const service = await ca.ledger.getService(record.service);
  if (record.status === 'revoked' || !service?.rotationEnabled) {
    throw new Refusal(
      'revoked',
      `${record.spiffeId} is revoked and is not renewed; the operator can start it again with \`svcca token ${record.service}\``,
    );
  }
  if (record.status !== 'active' || service.activeSerial !== record.serial) {
    throw new Refusal(
      'superseded',
      `certificate ${record.serial} was superseded by ${service.activeSerial ?? 'none'}; renew with the service's current certificate`,
    );
  }
  return record;
}

/**
 * POST /v1/renew: `caller` is the verified client certificate (OpenSSL checked its chain;
 * everything else is checked here). Only the CSR's public key is used: names and lifetime
 * are the ledger's.
 */
export async function renewForCaller(ca: OnlineCa, caller: CertInfo, csrPem: string, address: string): Promise<Issued> {
  const now = Date.now();
  let record: CertificateRecord;
  try {
    record = await renewableRecord(ca, caller, now);
  } catch (err) {
    const resent = err instanceof Refusal && err.code === 'superseded' ? await lostRenewalAnswer(ca, caller, csrPem) : undefined;
    if (resent) return resent;
    throw err;
  }
  const { spki, keyType: csrKeyType } = await csrKey(csrPem);
  const spkiSha = sha256Hex(spki);
  if (spkiSha === record.spkiSha256 || spki.equals(caller.spkiDer)) {
    throw new Refusal('same-key', 'the CSR is for the key of the current certificate; renewal needs a new key (make one and a new CSR)');
  }
  if (await ca.ledger.isKeyCompromised(spkiSha))
    throw new Refusal('key-blocked', 'the key in the CSR was revoked for keyCompromise and is never signed again; make a new key');
  assertIntermediateLive(ca.authority, now);
  return issueOnline(ca, {
    service: record.service,
    ttlMs: record.ttlMs,
    dnsNames: record.dnsNames,
    ips: record.ips,
    setDir: record.setDir,
    csrSpkiDer: spki,
    csrKeyType,
    kind: 'renew',
    why: `renewed over mTLS by ${record.spiffeId} from ${address} (svcca serve)`,
    renewsSerial: record.serial,
    now,
  });
}

/**
 * A renewal whose answer was lost — the replica was killed, or the connection broke, after
 * the commit — leaves the client with the certificate it renewed, now superseded. The
 * client retries with the same new key (common/ca-client.ts keeps it until it holds its
 * certificate), and gets the certificate already issued for that key: nothing new is
 * signed, and the set and the ledger agree again. Only when the service's active
 * certificate is for the CSR's key, was issued after the caller's, and by the intermediate
 * signing now (the chain sent with it).
 */
async function lostRenewalAnswer(ca: OnlineCa, caller: CertInfo, csrPem: string): Promise<Issued | undefined> {
  const previous = await ca.ledger.getCertificate(caller.serialHex);
  if (previous?.status !== 'superseded') return undefined;
  const service = await ca.ledger.getService(previous.service);
  if (!service?.rotationEnabled || !service.activeSerial) return undefined;
  const active = await ca.ledger.getCertificate(service.activeSerial);
  if (
    active?.status !== 'active' ||
    !active.fromCsr ||
    active.issuedAt < previous.issuedAt ||
    active.issuerKeyId !== ca.authority.intermediate.info.subjectKeyId
  )
    return undefined;
  let spki: Buffer;
  try {
    spki = (await csrKey(csrPem)).spki;
  } catch {
    return undefined;
  }
  if (sha256Hex(spki) !== active.spkiSha256) return undefined;
  const clamped = active.notAfter < leafValidity(active.issuedAt, active.ttlMs).notAfter.getTime();
  return { record: active, chainPem: active.certPem + ca.authority.intermediate.pem, caPem: ca.authority.rootPem, clamped };
}

/** The one answer for a token that is unknown, used, expired or revoked: nothing to tell them apart by. */
const TOKEN_REFUSAL =
  'the token is not valid (unknown, already used, expired or revoked); ask the operator for a new one (`svcca token SERVICE`)';

/** POST /v1/bootstrap: a first certificate for the token's service; the token is used up in the same transaction. */
export async function bootstrapWithToken(ca: OnlineCa, claims: BootstrapTokenClaims, csrPem: string, address: string): Promise<Issued> {
  // The CSR is checked first: a damaged request must not burn the token.
  const { spki, keyType: csrKeyType } = await csrKey(csrPem);
  const spkiSha = sha256Hex(spki);
  const now = Date.now();
  assertIntermediateLive(ca.authority, now);
  const hash = tokenSecretHash(claims.secret);
  return ca.ledger.transaction(async (tx) => {
    const token = await tx.getToken(hash);
    if (!token || !(await tx.useToken(hash, now))) throw new Refusal('token-invalid', TOKEN_REFUSAL);
    if (await tx.isKeyCompromised(spkiSha))
      throw new Refusal('key-blocked', 'the key in the CSR was revoked for keyCompromise and is never signed again; make a new key');
    const previous = await tx.getService(token.service);
    const previousRecord = previous?.activeSerial ? await tx.getCertificate(previous.activeSerial) : undefined;
    return issueOnline(
      { ...ca, ledger: tx },
      {
        service: token.service,
        ttlMs: token.certTtlMs,
        dnsNames: token.dnsNames,
        ips: token.ips,
        setDir: previousRecord?.setDir ?? ca.dir.issuedSetDir(token.service),
        csrSpkiDer: spki,
        csrKeyType,
        kind: 'issue',
        why: `bootstrapped with a one-time token from ${address} (svcca serve)`,
        now,
      },
    );
  });
}

export interface ServerCredential {
  readonly key: KeyObject;
  readonly chainPem: string;
  readonly caPem: string;
  readonly info: CertInfo;
  readonly serial: string;
}

/**
 * The server's own certificate, `spiffe://<td>/svcca`, for a key made in this process (it
 * never touches the disk). Recorded in the ledger like any other, under the replica's own
 * name (serverServiceFor), so it can be listed and revoked; rotate leaves it to the
 * server. `renews` is the serial it replaces, if any; a renewal overtaken by a revoke or
 * by another process started with the same replica name falls back to a fresh issue.
 */
export async function issueServerCredential(ca: OnlineCa, ttlMs: number, replica: string, renews?: string): Promise<ServerCredential> {
  const key = generateKey(ca.authority.keyType);
  const base = {
    service: serverServiceFor(replica),
    identity: SERVER_SERVICE,
    ttlMs,
    dnsNames: [],
    ips: [],
    setDir: ca.dir.issuedSetDir(SERVER_SERVICE),
    csrSpkiDer: spkiOf(key),
  };
  let issued: Issued;
  try {
    issued = await issueOnline(
      ca,
      renews
        ? { ...base, kind: 'renew', why: 'svcca serve renewed its own server certificate', renewsSerial: renews }
        : { ...base, kind: 'issue', why: 'svcca serve: its own server certificate' },
    );
  } catch (err) {
    if (!(err instanceof Refusal) || err.code !== 'superseded') throw err;
    issued = await issueOnline(ca, {
      ...base,
      kind: 'issue',
      why: 'svcca serve: its own server certificate (the previous one was revoked or replaced)',
    });
  }
  const info = parseCertificate(decodeCertificates(issued.record.certPem, 'the server certificate')[0]!);
  return { key, chainPem: issued.chainPem, caPem: issued.caPem, info, serial: issued.record.serial };
}
