/**
 * http mode judges the caller again on every request (gate() → stillValid), not only
 * through the reload re-check that closes open connections. In the running sidecar the
 * re-check closes a revoked connection before its next request can arrive, so this test
 * takes it out of the way: the inbound proxy is built in-process on a store whose
 * snapshot is replaced without any swap listener running (revocation), or with an
 * injected clock moved past the caller's notAfter and no tick timer (expiry). The next
 * request on the same keep-alive connection must then get 403 from the per-request check,
 * and the next HTTP/2 stream likewise (gRPC-shaped for a gRPC call).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as http2Connect, type IncomingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import { createMetrics } from '../../sidecar/metrics.js';
import { parseConfig, type SidecarConfig } from '../../sidecar/config/schema.js';
import { createLogger } from '../../sidecar/logging.js';
import { InboundProxy } from '../../sidecar/proxy/inbound.js';
import { CertCache } from '../../sidecar/proxy/verify-peer.js';
import type { Snapshot, SnapshotSource } from '../../sidecar/snapshot.js';
import { SnapshotStore } from '../../sidecar/reload/store.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { credsFromDir, revokeSerials, serialOfSet, writePolicy } from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  RawHttpConnection,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

type LogEntry = Record<string, unknown>;

interface InProcess {
  readonly proxy: InboundProxy;
  readonly address: string;
  readonly lines: LogEntry[];
  /** Replaces the snapshot in force without telling anyone (no swap listener runs). */
  setSnapshot(snap: Snapshot): void;
}

describe('sidecar http mode: the per-request validity check on its own', () => {
  let ca: TestCa;
  let backend: RecordingBackend;
  let config: SidecarConfig;
  let order: string;
  let notification: string;
  const started: InProcess[] = [];

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    notification = ca.issue('notification-service');
    const inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, STOCK_POLICY);
    backend = await startRecordingBackend();
    config = parseConfig(
      httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, crl: join(ca.dir, 'crl.pem') }),
      join(ca.root, 'sidecar.yaml'),
    );
  });
  after(async () => {
    for (const s of started) {
      s.proxy.destroyAll();
      await s.proxy.stopAccepting();
    }
    await backend?.close();
    ca?.cleanup();
  });

  /** An inbound proxy whose snapshot source never calls its swap or tick listeners. */
  async function startInbound(now?: () => Date): Promise<InProcess> {
    const lines: LogEntry[] = [];
    const logger = createLogger('warn', { write: (s: string) => void lines.push(JSON.parse(s) as LogEntry) });
    const metrics = createMetrics({ defaultMetrics: false });
    let snap = SnapshotStore.open(config, logger, metrics).current;
    const snapshots: SnapshotSource = {
      get current() {
        return snap;
      },
      onSwap: () => undefined,
      onTick: () => undefined,
    };
    const proxy = new InboundProxy({
      config: config.inbound!,
      snapshots,
      logger,
      metrics,
      certs: new CertCache(),
      ...(now ? { now } : {}),
    });
    const address = await proxy.start();
    const s: InProcess = { proxy, address, lines, setSnapshot: (next) => (snap = next) };
    started.push(s);
    return s;
  }

  it('refuses the next request on an open keep-alive connection once the caller is revoked', { timeout: 60_000 }, async () => {
    const inbound = await startInbound();
    const c = await RawHttpConnection.open(inbound.address, credsFromDir(order));
    try {
      const first = await c.send(getRequest('/stock/1'));
      assert.equal(first.status, 200, first.body.toString());
      const seen = backend.received.length;

      await revokeSerials(ca, [serialOfSet(order)], TEST_PASSPHRASE);
      // A fresh snapshot with the new CRL, swapped in behind the proxy's back.
      const quiet = createLogger('silent');
      const revokedSnap = SnapshotStore.open(config, quiet, createMetrics({ defaultMetrics: false })).current;
      assert.ok(revokedSnap.crl?.set.revoked.has(serialOfSet(order)), 'the new CRL lists the caller');
      inbound.setSnapshot(revokedSnap);
      assert.equal(c.closed, false, 'nothing closed the connection: only the next request can be judged');

      const second = await c.send(getRequest('/stock/2'));
      assert.equal(second.status, 403, second.body.toString());
      assert.match(second.body.toString(), /order-service is no longer accepted \(revoked\)/);
      assert.equal(second.headers.connection, 'close');
      assert.equal(backend.received.length, seen, 'the service saw the request of a revoked caller');
      await c.waitClosed();
      const line = inbound.lines.find((l) => l.event === 'refused' && l.mode === 'http' && l.path === undefined && l.status === 403);
      assert.ok(line, JSON.stringify(inbound.lines));
      assert.equal(line.reason, 'revoked');
      assert.equal(line.peer, 'spiffe://example.org/order-service');
    } finally {
      c.close();
    }
  });

  it('refuses the next request on an open keep-alive connection once the caller has expired', { timeout: 60_000 }, async () => {
    const notAfter = parseCertificate(decodeCertificates(readFileSync(join(notification, 'tls.crt'), 'utf8'), 'tls.crt')[0]!).notAfter;
    let clock = new Date();
    const inbound = await startInbound(() => clock);
    const c = await RawHttpConnection.open(inbound.address, credsFromDir(notification));
    try {
      const first = await c.send(getRequest('/stock/1'));
      assert.equal(first.status, 200, first.body.toString());
      const seen = backend.received.length;

      clock = new Date(notAfter.getTime() + 60_000);
      const second = await c.send(getRequest('/stock/2'));
      assert.equal(second.status, 403, second.body.toString());
      assert.match(second.body.toString(), /notification-service is no longer accepted \(expired\)/);
      assert.equal(second.headers.connection, 'close');
      assert.equal(backend.received.length, seen, 'the service saw the request of an expired caller');
      await c.waitClosed();
      const line = inbound.lines.find((l) => l.event === 'refused' && l.mode === 'http' && l.status === 403);
      assert.ok(line, JSON.stringify(inbound.lines));
      assert.equal(line.reason, 'expired');
      assert.equal(line.peer, 'spiffe://example.org/notification-service');
    } finally {
      c.close();
    }
  });

  it('HTTP/2: the next stream of an expired caller is refused (gRPC: UNAUTHENTICATED), and the connection gets GOAWAY', {
    timeout: 60_000,
  }, async () => {
    const notAfter = parseCertificate(decodeCertificates(readFileSync(join(notification, 'tls.crt'), 'utf8'), 'tls.crt')[0]!).notAfter;
    let clock = new Date();
    const inbound = await startInbound(() => clock);
    const session = http2Connect(`https://${inbound.address}`, { ...credsFromDir(notification), checkServerIdentity: () => undefined });
    const get = (headers: Record<string, string>) =>
      new Promise<IncomingHttpHeaders>((resolve, reject) => {
        const r = session.request({ ':path': '/stock/1', ...headers });
        r.on('response', resolve);
        r.on('error', reject);
        r.resume();
      });
    try {
      assert.equal((await get({}))[':status'], 200);
      const seen = backend.received.length;
      const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
      clock = new Date(notAfter.getTime() + 60_000);
      const refused = await get({ ':method': 'POST', 'content-type': 'application/grpc' });
      assert.equal(refused[':status'], 200);
      assert.equal(refused['grpc-status'], '16');
      assert.match(decodeURIComponent(String(refused['grpc-message'])), /notification-service is no longer accepted \(expired\)/);
      await goaway;
      assert.equal(backend.received.length, seen, 'the service saw the request of an expired caller');
      const line = inbound.lines.find((l) => l.event === 'refused' && l.protocol === 'h2' && l.reason === 'expired');
      assert.ok(line, JSON.stringify(inbound.lines));
    } finally {
      session.destroy();
    }
  });
});
