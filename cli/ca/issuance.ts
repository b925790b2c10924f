/**
 * Issuing one certificate end to end, shared by `issue` and `rotate`: key (or the
 * CSR's public key), signature, ledger record, credential set. The ledger row is
 * committed before the set is written, so every certificate that can exist on disk is
 * known to the CA (and can be revoked); a crash in between leaves the old set in place
 * and a record the next run supersedes.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { writeCredentialSet } from '../../common/credential-set.js';
import { exportKeyPem, generateKey, keyTypeOf, type KeyType } from '../../common/keys.js';
import { CaStateError } from '../../common/errors.js';
import { spiffeIdFor } from '../../common/spiffe-id.js';
import type { Ledger, CertificateRecord, EventKind } from '../store/ledger.js';
import { leafValidity, signLeaf, spkiOf, type Authority } from './authority.js';

export interface IssuanceRequest {
  readonly service: string;
  readonly ttlMs: number;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly setDir: string;
  /** The owner's public key (SPKI DER) when signing a CSR; otherwise a key is generated. */
  readonly csrSpkiDer?: Buffer;
  /** Cut the lifetime at this time (ms), for renewals that would outlive the intermediate. */
  readonly notAfterCap?: number;
  readonly kind: Extract<EventKind, 'issue' | 'renew'>;
  readonly actor: string;
  readonly why: string;
  readonly now?: number;
  /**
   * Renewals: the active serial the renewal was planned from. Checked inside the write
   * transaction: a service revoked, re-issued or renewed by another run since is left
   * alone (RenewalOvertaken), so a renewal never undoes a revocation or an issue.
   */
  readonly renewsSerial?: string;
}

/** The service changed between planning a renewal and recording it; nothing was written. */
export class RenewalOvertaken extends Error {}

export interface IssuanceResult {
  readonly record: CertificateRecord;
  readonly previousSerial: string | null;
  readonly setFolder: string | null;
  readonly clamped: boolean;
}

/** Signs and records a certificate; the caller writes the set with `writeIssuedSet`. */
export async function issueAndRecord(
  authority: Authority,
  ledger: Ledger,
  req: IssuanceRequest,
): Promise<{ record: CertificateRecord; key: KeyObject | null; previousSerial: string | null; clamped: boolean }> {
  const now = req.now ?? Date.now();
  let key: KeyObject | null = null;
  let spkiDer: Buffer;
  let keyType: KeyType;
  if (req.csrSpkiDer) {
    spkiDer = req.csrSpkiDer;
    const type = keyTypeOf(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }));
    if (!type) throw new CaStateError('the CSR key type is not supported', 'use an ECDSA P-256/P-384 or RSA 2048/3072 key');
    keyType = type;
  } else {
    key = generateKey(authority.keyType);
    spkiDer = spkiOf(key);
    keyType = authority.keyType;
  }
  let { notBefore, notAfter } = leafValidity(now, req.ttlMs);
  let clamped = false;
  if (req.notAfterCap !== undefined && notAfter.getTime() > req.notAfterCap) {
    notAfter = new Date(Math.floor(req.notAfterCap / 1000) * 1000);
    clamped = true;
  }
  const trustDomain = authority.config.trustDomain;
  const leaf = await signLeaf(authority, {
    service: req.service,
    spiffeId: spiffeIdFor(trustDomain, req.service),
    dnsNames: req.dnsNames,
    ips: req.ips,
    spkiDer,
    keyType,
    notBefore,
    notAfter,
  });
  const record: CertificateRecord = {
    serial: leaf.info.serialHex,
    service: req.service,
    spiffeId: spiffeIdFor(trustDomain, req.service),
    issuerKeyId: authority.intermediate.info.subjectKeyId ?? '',
    dnsNames: [...req.dnsNames],
    ips: [...req.ips],
    ttlMs: req.ttlMs,
    notBefore: notBefore.getTime(),
    notAfter: notAfter.getTime(),
    keyType,
    setDir: req.setDir,
    status: 'active',
    fromCsr: req.csrSpkiDer !== undefined,
    spkiSha256: leaf.spkiSha256,
    certPem: leaf.pem,
    issuedAt: now,
  };
  const previousSerial = await ledger.transaction(async (tx) => {
    if (await tx.isKeyCompromised(leaf.spkiSha256)) {
      throw new CaStateError(`the public key for ${req.service} was revoked for keyCompromise and is never signed again`, 'make a new key pair and a new CSR');
    }
    const previous = await tx.getService(req.service);
    if (req.renewsSerial !== undefined && (!previous || !previous.rotationEnabled || previous.activeSerial !== req.renewsSerial)) {
      const now = !previous ? 'it is gone' : !previous.rotationEnabled ? 'it was revoked' : `its active certificate is now ${previous.activeSerial ?? 'none'}`;
      throw new RenewalOvertaken(`changed while this run was renewing it (${now}); left as it is`);
    }
    if (previous?.activeSerial) {
      const prev = await tx.getCertificate(previous.activeSerial);
      if (prev && prev.status === 'active') await tx.setStatus(prev.serial, 'superseded');
    }
    await tx.insertCertificate(record);
    await tx.setActive(req.service, record.serial);
    await tx.appendEvent({ kind: req.kind, service: req.service, serial: record.serial, actor: req.actor, why: req.why });
    return previous?.activeSerial ?? null;
  });
  return { record, key, previousSerial, clamped };
}

/** Writes the credential set of a just-recorded certificate (leaf + intermediate, key, root). */
export function writeIssuedSet(authority: Authority, record: CertificateRecord, key: KeyObject | null): string {
  // A CSR-signed set carries no key: the owner holds it.
  const keyPem = key ? exportKeyPem(key) : undefined;
  return writeCredentialSet(record.setDir, {
    certChainPem: record.certPem + authority.intermediate.pem,
    keyPem,
    caPem: authority.rootPem,
  });
}

/**
 * Writes the set under the ledger's write lock, and only while `record` is still the
 * service's active certificate. Concurrent issuers of one service thus never interleave
 * their `..data` swaps (one removing the other's new folder), and the set on disk is
 * always the ledger's active certificate. Returns false when a newer certificate
 * superseded this one first: its issuer writes the set.
 */
export async function writeIssuedSetIfActive(authority: Authority, ledger: Ledger, record: CertificateRecord, key: KeyObject | null): Promise<boolean> {
  return ledger.transaction(async (tx) => {
    const service = await tx.getService(record.service);
    if (service?.activeSerial !== record.serial) return false;
    writeIssuedSet(authority, record, key);
    return true;
  });
}
