/**
 * crl.pem kept on the ledger's CRLs, for `svcca serve` replicas that share a PostgreSQL
 * ledger but each have a CA directory of their own. Every publisher (revoke, crl, rotate,
 * a replica's refresh) stores the CRL it signed in the ledger with its number, in the
 * transaction that took the number; a replica that sees a newer number there writes
 * crl.pem from those stored bytes instead of signing a CRL of its own. So every replica
 * serves the same bytes for the same ledger state — the same CRL numbers and the same
 * ETag (the SHA-256 of the bytes) — and no replica bumps the number because another
 * published: re-signing would make a new number on every replica in turn, for ever.
 */
import { CaStateError } from '../../common/errors.js';
import { decodePemBlocks } from '../../common/pem.js';
import { CRL_PEM_LABEL } from '../../common/crl.js';
import type { CaDir } from '../store/ca-dir.js';
import type { Ledger } from '../store/ledger.js';
import type { Authority } from './authority.js';
import { rootKeyIdOf, type PublishedCrlInfo } from './crl-refresh.js';
import { readPublishedCrls, summarizeCrl, writeCrlBundleIfNewer, type SignedCrl } from './crl-publish.js';
import { requireKeyId, retiredIssuers } from './issuers.js';

export interface CrlFollowCa {
  readonly dir: CaDir;
  readonly ledger: Ledger;
  readonly authority: Authority;
}

function storedCrl(issuerKeyId: string, number: bigint, pem: string): SignedCrl {
  const block = decodePemBlocks(pem).find((b) => b.label === CRL_PEM_LABEL);
  if (!block) throw new CaStateError(`the ledger's CRL #${number} of ${issuerKeyId} is not a CRL`, 'run `svcca crl` to publish a new one');
  const summary = summarizeCrl(block.der);
  if (summary.number !== number || summary.authorityKeyId !== issuerKeyId || !summary.nextUpdate)
    throw new CaStateError(
      `the ledger's CRL #${number} of ${issuerKeyId} does not match its record`,
      'run `svcca crl` to publish a new one',
    );
  return { issuerKeyId, number, entries: summary.entries, nextUpdate: summary.nextUpdate, pem };
}

/** Follows the ledger's CRLs into crl.pem; `poll` is cheap when nothing changed. */
export class CrlFollower {
  /** The ledger's published numbers as last acted on. */
  #seen = '';

  constructor(private readonly ca: () => CrlFollowCa) {}

  /**
   * Looks at the ledger's CRL numbers; undefined when they did not change since the last
   * call. Otherwise `numbers` are the ledger's (issuer#number), and `written` what was
   * written to crl.pem: the ledger held a newer CRL of a live issuer. Nothing is written
   * when crl.pem is current already, or for a CRL stored by an svcca older than schema 3
   * (the replica's own refresh re-signs then).
   */
  async poll(now = Date.now()): Promise<{ numbers: string[]; written: PublishedCrlInfo[] | undefined } | undefined> {
    const { dir, ledger, authority } = this.ca();
    const numbers = [...(await ledger.publishedCrlNumbers())].map(([k, n]) => `${k}#${n}`).sort();
    const state = numbers.join(',');
    if (state === this.#seen) return undefined;
    const written = await this.follow(dir, ledger, authority, now);
    this.#seen = state;
    return { numbers, written };
  }

  private async follow(dir: CaDir, ledger: Ledger, authority: Authority, now: number): Promise<PublishedCrlInfo[] | undefined> {
    const { rootKeyId } = rootKeyIdOf(dir);
    const published = readPublishedCrls(dir, rootKeyId);
    if (!published.rootPem) return undefined;
    const currentKeyId = requireKeyId(authority.intermediate);
    const { live } = await retiredIssuers(dir, ledger, currentKeyId, now);
    // The order publishIntermediateCrls writes: current intermediate first, then retired ones.
    const issuers = [authority.intermediate, ...live];
    const stored: SignedCrl[] = [];
    for (const cert of issuers) {
      const keyId = requireKeyId(cert);
      const crl = await ledger.publishedCrl(keyId);
      if (!crl) return undefined;
      stored.push(storedCrl(keyId, crl.number, crl.pem));
    }
    const newer = stored.some((c) => c.number > (published.byIssuer.get(c.issuerKeyId)?.number ?? 0n));
    if (!newer) return undefined;
    const wrote = await writeCrlBundleIfNewer(
      ledger,
      dir,
      rootKeyId,
      published.rootPem,
      stored,
      issuers.map((c) => c.pem),
    );
    if (!wrote) return undefined;
    return stored.map((c, i) => ({
      issuer: issuers[i]!.info.subject,
      issuerKeyId: c.issuerKeyId,
      number: c.number.toString(),
      entries: c.entries,
      nextUpdate: c.nextUpdate.toISOString(),
    }));
  }
}
