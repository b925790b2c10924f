/**
 * The rules of issuing (lifetime, the set folder, names that would collide with set files)
 * and issuing one certificate end to end, shared by `issue` and `rotate`: key (or the
 * CSR's public key), signature, ledger record, credential set. The ledger row is
 * committed before the set is written, so every certificate that can exist on disk is
 * known to the CA (and can be revoked); a crash in between leaves the old set in place
 * and a record the next run supersedes.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { setNestingProblem, writeCredentialSet } from '../../common/credential-set.js';
import { exportKeyPem, generateKey, keyTypeOf, type KeyType } from '../../common/keys.js';
import { CaStateError, UsageError } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { spiffeIdFor } from '../../common/spiffe-id.js';
import { CA_FILES, type CaConfig, type CaDir } from '../store/ca-dir.js';
import type { Ledger, CertificateRecord, EventKind } from '../store/ledger.js';
import { leafValidity, signLeaf, spkiOf, type Authority } from './authority.js';

const SET_FILE_NAMES = new Set(['tls.crt', 'tls.key', 'ca.crt']);

/**
 * Refuses a service path with a segment named like a set file: sets nest by service path,
 * so issued/team/tls.key/ would stand where team's key belongs.
 */
export function assertSetSafeServiceName(service: string): void {
  const clash = service
    .split('/')
    .slice(1)
    .find((segment) => SET_FILE_NAMES.has(segment));
  if (clash)
    throw new UsageError(
      `invalid service name ${JSON.stringify(service)}: a segment named ${clash} would collide with the files of a credential set`,
      'choose another name for that segment',
    );
}

/** Refuses a --ttl that is not whole seconds: X.509 times carry none, and 500ms would be a certificate expired on arrival. */
export function assertWholeSecondTtl(flagText: string, ttlMs: number): void {
  if (ttlMs < 1000 || ttlMs % 1000 !== 0) {
    throw new UsageError(`--ttl ${flagText}: certificate lifetimes count whole seconds`, 'use 1s or more in whole seconds, e.g. --ttl 24h');
  }
}

/**
 * The lifetime of a new certificate: --ttl (ms) or the CA's default, refused past the CA's
 * maximum or past the intermediate's end (`intermediateEnd`, ms) counted from `now`.
 */
export function chooseTtlMs(
  requestedMs: number | undefined,
  config: Pick<CaConfig, 'defaultTtlMs' | 'maxTtlMs'>,
  intermediateEnd: number,
  now: number,
): number {
  const ttlMs = requestedMs ?? config.defaultTtlMs;
  if (ttlMs > config.maxTtlMs) {
    throw new UsageError(
      `--ttl ${formatDuration(ttlMs)} is longer than this CA's maximum of ${formatDuration(config.maxTtlMs)}`,
      `use --ttl ${formatDuration(config.maxTtlMs)} or less (short certificates that rotate are the point)`,
    );
  }
  if (now + ttlMs > intermediateEnd) {
    throw new UsageError(
      `--ttl ${formatDuration(ttlMs)} would outlive the intermediate, which ends ${new Date(intermediateEnd).toISOString()}`,
      'roll the intermediate with `svcca rotate --intermediate`, or use a shorter --ttl',
    );
  }
  return ttlMs;
}

/** `inner` is strictly below `outer`. */
function isWithin(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

export interface SetDirRequest {
  readonly service: string;
  /** --out, if given. */
  readonly out?: string;
  /** Where the service's active set is now, if it has one. */
  readonly previousSetDir?: string;
  /** The other services whose set is in `dir` (the ledger knows). */
  readonly servicesAt: (dir: string) => Promise<readonly string[]>;
}

/**
 * Where a service's credential set goes: --out, else where its set is now, else
 * issued/<service path> in the CA directory. Refused: the CA directory or a folder in it
 * outside issued/ (a set's cleanup would take ca.crt with it), a folder holding the CA, a
 * folder another service's set is in, and a folder inside or around another set (whoever
 * is given one folder would read the other's key).
 */
export async function chooseSetDir(dir: CaDir, req: SetDirRequest): Promise<string> {
  const setDir = req.out !== undefined ? resolve(req.out) : (req.previousSetDir ?? dir.issuedSetDir(req.service));
  if (req.out !== undefined) {
    const caDir = resolve(dir.path);
    if (setDir === caDir || (isWithin(caDir, setDir) && !isWithin(join(caDir, CA_FILES.issued), setDir))) {
      throw new UsageError(
        `--out ${setDir} is the CA directory or inside it (${caDir})`,
        `write sets outside it, or drop --out to use ${join(caDir, CA_FILES.issued, req.service)}`,
      );
    }
    if (isWithin(setDir, caDir))
      throw new UsageError(`--out ${setDir} holds the CA directory ${caDir}`, 'give the set a folder of its own');
    const others = (await req.servicesAt(setDir)).filter((s) => s !== req.service);
    if (others.length)
      throw new UsageError(`--out ${setDir} holds the credential set of ${others.join(', ')}`, 'give each service a folder of its own');
  }
  const nesting = setNestingProblem(setDir);
  if (nesting) {
    throw new UsageError(
      `the credential set of ${req.service} cannot go in ${setDir}: ${nesting}, and whoever is given one folder would read the other's key`,
      'issue it with --out into a folder of its own',
    );
  }
  return setDir;
}

export interface IssuanceRequest {
  /** The ledger's name for it: one active certificate per service. */
  readonly service: string;
  /**
   * The service the certificate names (SPIFFE ID, CN) when the ledger records it under
   * another name: each `svcca serve` replica's own certificate is `spiffe://<td>/svcca`,
   * recorded as `svcca/replica/<name>` so that replicas never supersede each other.
   */
  readonly identity?: string;
  readonly ttlMs: number;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly setDir: string;
  /** The owner's public key (SPKI DER) when signing a CSR; otherwise a key is generated. */
  readonly csrSpkiDer?: Buffer;
  /** csrSpkiDer's key type, when the caller has read it already (csrKeyFromPem). */
  readonly csrKeyType?: KeyType;
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
  /** Issued over the network to an owner who renews it itself (`svcca serve`): rotate skips it. */
  readonly ownerRenews?: boolean;
}

/** The service changed between planning a renewal and recording it; nothing was written. */
export class RenewalOvertaken extends Error {
  constructor(
    message: string,
    /** What happened meanwhile: the service is gone, was revoked, or has another active certificate. */
    readonly change: 'gone' | 'revoked' | 'superseded',
  ) {
    super(message);
  }
}

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
    const type = req.csrKeyType ?? keyTypeOf(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }));
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
  const identity = req.identity ?? req.service;
  const leaf = await signLeaf(authority, {
    service: identity,
    spiffeId: spiffeIdFor(trustDomain, identity),
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
    spiffeId: spiffeIdFor(trustDomain, identity),
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
    ...(req.ownerRenews ? { ownerRenews: true } : {}),
  };
  const previousSerial = await ledger.transaction(async (tx) => {
    await tx.lockService(req.service);
    if (await tx.isKeyCompromised(leaf.spkiSha256)) {
      throw new CaStateError(
        `the public key for ${req.service} was revoked for keyCompromise and is never signed again`,
        'make a new key pair and a new CSR',
      );
    }
    const previous = await tx.getService(req.service);
    if (req.renewsSerial !== undefined && (!previous?.rotationEnabled || previous.activeSerial !== req.renewsSerial)) {
      const change = !previous ? 'gone' : !previous.rotationEnabled ? 'revoked' : 'superseded';
      const now =
        change === 'gone'
          ? 'it is gone'
          : change === 'revoked'
            ? 'it was revoked'
            : `its active certificate is now ${previous!.activeSerial ?? 'none'}`;
      throw new RenewalOvertaken(`changed while this run was renewing it (${now}); left as it is`, change);
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
export async function writeIssuedSetIfActive(
  authority: Authority,
  ledger: Ledger,
  record: CertificateRecord,
  key: KeyObject | null,
): Promise<boolean> {
  return ledger.transaction(async (tx) => {
    await tx.lockService(record.service);
    const service = await tx.getService(record.service);
    if (service?.activeSerial !== record.serial) return false;
    writeIssuedSet(authority, record, key);
    return true;
  });
}
