/**
 * The re-check of open connections, driven through a fake SnapshotSource: a swap
 * ("something changed") re-judges every open connection, a tick ("time passed") closes
 * those whose peer reached notAfter. No store, no files, no sockets.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { subjectNameDer } from '../../../../common/crl.js';
import { parseCertificate, type CertInfo } from '../../../../common/x509.js';
import { OpenConnections, type Rejudged } from '../../../../sidecar/proxy/open-connections.js';
import type { Snapshot, SnapshotSource, SwapListener } from '../../../../sidecar/snapshot.js';
import { createIntermediate, createRootCa, issueSvid, type Signer } from '../../../helpers/attacker-ca.js';

const MINUTE = 60_000;

/** A snapshot source whose swaps and ticks the test makes happen. */
class FakeSnapshots implements SnapshotSource {
  readonly #swapListeners: SwapListener[] = [];
  readonly #tickListeners: ((snap: Snapshot) => void)[] = [];
  constructor(public current: Snapshot) {}
  onSwap(listener: SwapListener): void {
    this.#swapListeners.push(listener);
  }
  onTick(listener: (snap: Snapshot) => void): void {
    this.#tickListeners.push(listener);
  }
  swap(next: Snapshot): void {
    const previous = this.current;
    this.current = next;
    for (const l of this.#swapListeners) l(next, previous);
  }
  tick(): void {
    for (const l of this.#tickListeners) l(this.current);
  }
}

/** Just what the re-check reads: a CRL from `issuer` listing `revoked`, and a generation. */
function snapshot(issuer: Signer, generation: number, revoked: string[] = []): Snapshot {
  const info = parseCertificate(issuer.certDer);
  const crl = {
    issuerNameHex: subjectNameDer(issuer.certDer).toString('hex'),
    issuerSubject: info.subject,
    issuerKeyId: info.subjectKeyId,
    authorityKeyId: info.subjectKeyId,
    crlNumber: BigInt(generation),
    thisUpdate: new Date(),
    nextUpdate: undefined,
    revokedCount: revoked.length,
  };
  return {
    generation,
    crl: { path: 'crl.pem', hash: String(generation), set: { crls: [crl], issuers: [], revoked: new Set(revoked) } },
  } as unknown as Snapshot;
}

interface FakeConnection {
  readonly name: string;
  readonly leaf: CertInfo;
  readonly ownNotAfter: Date;
}

/** Far enough ahead that our own certificate never ends a connection unless a test says so. */
const OWN_FAR = new Date(Date.now() + 365 * 86_400_000);

describe('OpenConnections (re-check through the snapshot source)', () => {
  let inter: Signer;
  let orderLeaf: CertInfo;
  let shortLeaf: CertInfo;
  before(async () => {
    inter = await createIntermediate(await createRootCa(), { permittedUriHost: 'example.org' });
    const now = Date.now();
    orderLeaf = parseCertificate((await issueSvid(inter, 'spiffe://example.org/order-service')).certDer);
    shortLeaf = parseCertificate(
      (
        await issueSvid(inter, 'spiffe://example.org/billing-service', {
          notBefore: new Date(now - MINUTE),
          notAfter: new Date(now + 5 * MINUTE),
        })
      ).certDer,
    );
  });

  function setUp(rejudge?: (c: FakeConnection, snap: Snapshot) => Rejudged | undefined, ownNotAfter: Date = OWN_FAR) {
    let clock = new Date();
    const snapshots = new FakeSnapshots(snapshot(inter, 1));
    const refused: { name: string; reason: string; detail: string }[] = [];
    const open = new OpenConnections<FakeConnection>({
      snapshots,
      ...(rejudge ? { rejudge } : {}),
      onRefused: (c, r) => refused.push({ name: c.name, reason: r.reason, detail: r.detail }),
      now: () => clock,
    });
    const order: FakeConnection = { name: 'order', leaf: orderLeaf, ownNotAfter };
    const billing: FakeConnection = { name: 'billing', leaf: shortLeaf, ownNotAfter: OWN_FAR };
    open.add(order);
    open.add(billing);
    return { snapshots, open, refused, order, billing, setClock: (d: Date) => (clock = d) };
  }

  it('a swap to a CRL that revokes one caller refuses that one, and only it', () => {
    const t = setUp();
    t.snapshots.swap(snapshot(inter, 2, [orderLeaf.serialHex]));
    assert.deepEqual(t.refused, [
      { name: 'order', reason: 'revoked', detail: `serial ${orderLeaf.serialHex} is revoked; closing the open connection` },
    ]);
  });

  it('a swap asks the proxy to re-judge the callers still valid (the policy), and refuses whom it names', () => {
    const t = setUp((c) => (c.name === 'billing' ? { reason: 'policy-denied', detail: 'no rule allows billing' } : undefined));
    t.snapshots.swap(snapshot(inter, 2));
    assert.deepEqual(t.refused, [
      { name: 'billing', reason: 'policy-denied', detail: 'no rule allows billing; closing the open connection' },
    ]);
  });

  it('a revoked caller is refused as revoked, before the proxy is asked', () => {
    let asked = 0;
    const t = setUp(() => {
      asked++;
      return { reason: 'policy-denied', detail: 'denied' };
    });
    t.snapshots.swap(snapshot(inter, 2, [orderLeaf.serialHex, shortLeaf.serialHex]));
    assert.deepEqual(
      t.refused.map((r) => r.reason),
      ['revoked', 'revoked'],
    );
    assert.equal(asked, 0);
  });

  it('a tick closes nothing before notAfter, and the caller past it once the clock gets there', () => {
    const t = setUp();
    t.snapshots.tick();
    assert.equal(t.refused.length, 0);
    t.setClock(new Date(shortLeaf.notAfter.getTime() + 1000));
    t.snapshots.tick();
    assert.deepEqual(
      t.refused.map((r) => [r.name, r.reason]),
      [['billing', 'expired']],
    );
  });

  it("a tick closes a connection once the sidecar's own certificate it was made with reached notAfter", () => {
    const own = new Date(Date.now() + 60_000);
    const t = setUp(undefined, own);
    t.snapshots.tick();
    assert.equal(t.refused.length, 0);
    t.setClock(new Date(own.getTime() + 1000));
    t.snapshots.tick();
    assert.deepEqual(
      t.refused.map((r) => [r.name, r.reason]),
      [['order', 'own-certificate-invalid']],
    );
    // A swap (say a CRL) also finds it.
    const u = setUp(undefined, own);
    u.setClock(new Date(own.getTime() + 1000));
    u.snapshots.swap(snapshot(inter, 2));
    assert.deepEqual(
      u.refused.map((r) => [r.name, r.reason]),
      [['order', 'own-certificate-invalid']],
    );
  });

  it('a connection no longer open is not judged again', () => {
    const t = setUp();
    t.open.delete(t.order);
    assert.equal(t.open.size, 1);
    t.snapshots.swap(snapshot(inter, 2, [orderLeaf.serialHex]));
    assert.deepEqual(t.refused, []);
  });
});
