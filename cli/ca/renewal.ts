/**
 * Renewing services safely with several `rotate`s at once and `kill -9` at any moment.
 *
 * Each service is claimed in an immediate transaction that also checks its active
 * certificate is still the one planned, so a service another run renewed (or is renewing)
 * is skipped: one service is never renewed twice. The claim is released only after the new
 * set is on disk. A claim that outlives its owner (killed, or failed after committing)
 * therefore marks a service whose set may lag the ledger; the next run compares the set
 * with the ledger and renews again when they differ, since the lost key cannot be recovered.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import { removeSetOrphans, resolveSetFolder } from '../../common/credential-set.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import type { Ledger, RotationCandidate } from '../store/ledger.js';

/** How long a claim holds when its owner cannot be checked (another host). */
export const CLAIM_TTL_MS = 10 * 60_000;

export function newClaimOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** False only when the owner certainly died: a process of this host that no longer exists. */
export function claimOwnerAlive(owner: string): boolean {
  const [host, pidText] = owner.split(':');
  if (host !== hostname()) return true;
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export type ClaimResult = 'claimed' | 'busy' | 'changed';

/**
 * Claims each planned service whose active certificate is still `serial`, in one
 * transaction. `changed`: another run renewed it, or it was revoked or re-issued.
 */
export async function claimServices(
  ledger: Ledger,
  planned: readonly Pick<RotationCandidate, 'service' | 'serial'>[],
  owner: string,
  now: number,
): Promise<Map<string, ClaimResult>> {
  return ledger.transaction(async (tx) => {
    const out = new Map<string, ClaimResult>();
    for (const p of planned) {
      // Being issued, revoked or claimed by another run right now: not ours to take.
      if (!(await tx.lockService(p.service, { skipLocked: true }))) {
        out.set(p.service, 'busy');
        continue;
      }
      const svc = await tx.getService(p.service);
      if (!svc?.rotationEnabled || svc.activeSerial !== p.serial) {
        out.set(p.service, 'changed');
        continue;
      }
      const claim = await tx.getClaim(p.service);
      if (claim && claim.owner !== owner) {
        if (claim.until >= now && claimOwnerAlive(claim.owner)) {
          out.set(p.service, 'busy');
          continue;
        }
        await tx.releaseClaim(p.service, claim.owner);
      }
      out.set(p.service, (await tx.claimService(p.service, owner, now + CLAIM_TTL_MS, now)) ? 'claimed' : 'busy');
    }
    return out;
  });
}

export async function releaseClaims(ledger: Ledger, services: readonly string[], owner: string): Promise<void> {
  if (services.length === 0) return;
  await ledger.transaction(async (tx) => {
    for (const s of services) await tx.releaseClaim(s, owner);
  });
}

/** The serial of the leaf a credential set holds now, or undefined when it cannot be read. */
export function setLeafSerial(setDir: string): string | undefined {
  try {
    const pem = readCappedText(join(resolveSetFolder(setDir), 'tls.crt'), FILE_CAPS.pemBundle);
    return parseCertificate(decodeCertificates(pem, 'tls.crt')[0]!).serialHex;
  } catch {
    return undefined;
  }
}

export interface Interrupted {
  readonly service: string;
  /** The active serial the ledger holds; the set on disk holds something else. */
  readonly serial: string;
}

/**
 * Finds the work a dead run left: claims whose owner is gone. Where the set already holds
 * the active certificate the claim is simply released; the others are returned, to be
 * renewed again (their new key died with the process).
 */
export async function recoverStaleClaims(ledger: Ledger, now: number, wanted: (service: string) => boolean): Promise<Interrupted[]> {
  const stale = (await ledger.listClaims()).filter((c) => wanted(c.service) && (c.until < now || !claimOwnerAlive(c.owner)));
  const lagging: Interrupted[] = [];
  const settled: { service: string; owner: string }[] = [];
  for (const claim of stale) {
    const svc = await ledger.getService(claim.service);
    const active = svc?.activeSerial ? await ledger.getCertificate(svc.activeSerial) : undefined;
    if (svc?.rotationEnabled && active && active.status === 'active' && setLeafSerial(active.setDir) !== active.serial) {
      lagging.push({ service: claim.service, serial: active.serial });
    } else {
      settled.push({ service: claim.service, owner: claim.owner });
      // The set is current, but a run killed after its swap may have left the previous
      // folder, private key included, beside it.
      if (active) {
        try {
          removeSetOrphans(active.setDir);
        } catch {
          // a folder that cannot be read now is tidied by its next renewal
        }
      }
    }
  }
  if (settled.length > 0) {
    await ledger.transaction(async (tx) => {
      for (const s of settled) await tx.releaseClaim(s.service, s.owner);
    });
  }
  return lagging;
}
