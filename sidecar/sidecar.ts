/**
 * Wiring: one snapshot store, the listeners the config names, the admin endpoint, the
 * periodic reload check. Exported for `make demo`, `make bench` and in-process tests;
 * the binary's entry is main.ts.
 */
import type { Logger } from 'pino';
import { crlSetExpired } from '../common/crl.js';
import { ConfigError } from '../common/errors.js';
import { tcpModeWarnings } from '../common/policy/index.js';
import { AdminServer } from './admin/server.js';
import { createMetrics, type Metrics } from './metrics.js';
import type { SidecarConfig } from './config/schema.js';
import { InboundProxy } from './proxy/inbound.js';
import { OutboundProxy } from './proxy/outbound.js';
import { CertCache } from './proxy/verify-peer.js';
import { SnapshotStore, type ReloadOutcome, type ReloadTrigger } from './reload/store.js';
import { ReloadWatcher, watchTargets } from './reload/watcher.js';
import { validityProblem } from './snapshot.js';
import { CrlFetcher } from './reload/crl-fetcher.js';
import { SelfRenewal } from './reload/self-renewal.js';
import { caTlsFor } from './reload/ca-tls.js';
import { loadIdentity } from './reload/identity.js';

export interface SidecarHandle {
  readonly store: SnapshotStore;
  readonly metrics: Metrics;
  /** Bound addresses (port 0 resolved). */
  readonly addresses: { readonly inbound?: string; readonly outbound: readonly string[]; readonly admin?: string };
  /** Re-reads identity, CRL and policy now; SIGHUP passes 'signal'. */
  reload(trigger?: ReloadTrigger): ReloadOutcome;
  /** Stops accepting, waits up to `graceMs` for open connections, then closes them. */
  shutdown(graceMs?: number): Promise<void>;
}

export interface SidecarDeps {
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** File-system events trigger a check (default true; the bench turns it off to
   *  measure the timers alone). */
  readonly watch?: boolean;
  /** Quiet time after a burst of file events. Default 200 ms. */
  readonly watchDebounceMs?: number;
}

/**
 * Starts the sidecar; throws a one-line error (SvccaError) when the identity, CRL or
 * policy is unusable or a listener cannot bind. An expired own certificate is logged and
 * tolerated: the sidecar runs, refuses every connection, and /readyz fails.
 */
export async function startSidecar(config: SidecarConfig, deps: SidecarDeps): Promise<SidecarHandle> {
  const { logger } = deps;
  const metrics = deps.metrics ?? createMetrics();
  // An https identity.crl is fetched before the first snapshot, trusting the set's ca.crt.
  let store: SnapshotStore | undefined;
  const crlFetcher = config.identity.crlUrl
    ? new CrlFetcher(
        config.identity.crlUrl,
        () => caTlsFor(store?.current.identity ?? loadIdentity(config.identity.dir)),
        logger,
        metrics,
        config.identity.crlIntervalMs,
      )
    : undefined;
  await crlFetcher?.first();
  store = SnapshotStore.open(config, logger, metrics, crlFetcher ? { readCrl: crlFetcher.read } : {});
  const current = store;
  const snap = store.current;
  const self = snap.identity.id;

  if (config.inbound && snap.policy) {
    if (!snap.policy.policy.services.has(self.service)) {
      logger.warn(
        { event: 'policy', service: self.service, policy: snap.policy.path },
        `${self.service} is not in the policy: every caller will be refused; add it under services:`,
      );
    }
    if (config.inbound.mode === 'tcp')
      for (const w of tcpModeWarnings(snap.policy.policy, self.service)) logger.warn({ event: 'policy', policy: snap.policy.path }, w);
  }
  if (!config.identity.crl)
    logger.warn({ event: 'crl' }, "identity.crl is not set: revoked certificates are not refused; point it at the CA's crl.pem");
  const own = validityProblem(snap.identity.leaf, new Date());
  if (own)
    logger.error(
      { event: 'identity', identity: self.uri, reason: own },
      'own certificate unusable: refusing every connection until a valid one arrives',
    );

  const selfRenewal = config.identity.renew
    ? new SelfRenewal({ dir: config.identity.dir, renew: config.identity.renew, store, logger, metrics })
    : undefined;
  const certs = new CertCache();
  let accepting = true;
  // Every inbound line names the callee (`self`), so that logs gathered from many sidecars say who was called: `svcca policy learn` reads it.
  const inbound = config.inbound
    ? new InboundProxy({
        config: config.inbound,
        snapshots: store,
        logger: logger.child({ self: self.uri }),
        metrics,
        certs,
        drainGraceMs: config.shutdownGraceMs,
      })
    : undefined;
  const outbound = config.outbound.map(
    (o) => new OutboundProxy({ config: o, snapshots: store, logger, metrics, certs, drainGraceMs: config.shutdownGraceMs }),
  );
  const admin = config.admin
    ? new AdminServer({ listen: config.admin.listen, snapshots: store, metrics, accepting: () => accepting })
    : undefined;

  const started: { stop: () => Promise<void> }[] = [];
  let watcher: ReloadWatcher | undefined;
  try {
    const inboundAddr = inbound ? await bind('inbound.listen', config.inbound!.listen.text, () => inbound.start()) : undefined;
    if (inbound) started.push({ stop: () => inbound.stopAccepting() });
    const outboundAddrs: string[] = [];
    for (const [i, o] of outbound.entries()) {
      outboundAddrs.push(await bind(`outbound[${i}].listen`, config.outbound[i]!.listen.text, () => o.start()));
      started.push({ stop: () => o.stopAccepting() });
    }
    const adminAddr = admin ? await bind('admin.listen', config.admin!.listen.text, () => admin.start()) : undefined;
    store.startTimers({ statIntervalMs: config.reloadIntervalMs, hashIntervalMs: config.reloadHashIntervalMs });
    crlFetcher?.start(() => current.reload('fetch'));
    selfRenewal?.start();
    if (deps.watch !== false) {
      watcher = await ReloadWatcher.start({
        targets: watchTargets(config.identity.dir, [config.identity.crlUrl ? undefined : config.identity.crl, config.policy]),
        onChange: () => store.reload('watch'),
        logger,
        ...(deps.watchDebounceMs !== undefined ? { debounceMs: deps.watchDebounceMs } : {}),
      });
    }

    logger.info(
      {
        event: 'started',
        identity: self.uri,
        certificateExpiry: snap.identity.leaf.notAfter.toISOString(),
        inbound: inbound ? { listen: inboundAddr, forward: config.inbound!.forward.text, mode: config.inbound!.mode } : undefined,
        outbound: config.outbound.map((o, i) => ({
          listen: outboundAddrs[i],
          connect: o.connect.text,
          serverId: o.serverId,
          tunnel: o.tunnel,
        })),
        admin: adminAddr,
        crl: snap.crl ? { path: snap.crl.path, revoked: snap.crl.set.revoked.size, expired: crlSetExpired(snap.crl.set) } : undefined,
        renew: config.identity.renew ? { ca: config.identity.renew.ca.origin, before: config.identity.renew.before.text } : undefined,
        policy: snap.policy?.path,
        pid: process.pid,
      },
      `svcca-sidecar started as ${self.uri}`,
    );

    const addresses = {
      ...(inboundAddr ? { inbound: inboundAddr } : {}),
      outbound: outboundAddrs,
      ...(adminAddr ? { admin: adminAddr } : {}),
    };
    let shuttingDown: Promise<void> | undefined;
    return {
      store,
      metrics,
      addresses,
      reload: (trigger = 'api') => store.reload(trigger),
      shutdown(graceMs = config.shutdownGraceMs) {
        shuttingDown ??= (async () => {
          accepting = false;
          store.stopTimers();
          crlFetcher?.stop();
          selfRenewal?.stop();
          await watcher?.close();
          const open = () => (inbound?.activeConnections ?? 0) + outbound.reduce((n, o) => n + o.activeConnections, 0);
          const closed = Promise.all([inbound?.stopAccepting(), ...outbound.map((o) => o.stopAccepting())]);
          // Logged once the listeners are closed, so that whoever reads it finds them closed.
          logger.info({ event: 'shutdown', open: open(), graceMs }, 'stopping: no new connections; waiting for open ones');
          const deadline = Date.now() + graceMs;
          while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
          const left = open();
          if (left > 0) logger.warn({ event: 'shutdown', open: left }, 'grace period over: closing the remaining connections');
          inbound?.destroyAll();
          for (const o of outbound) o.destroyAll();
          await closed;
          await admin?.close();
          logger.info({ event: 'stopped' }, 'svcca-sidecar stopped');
        })();
        return shuttingDown;
      },
    };
  } catch (err) {
    store.stopTimers();
    crlFetcher?.stop();
    selfRenewal?.stop();
    await watcher?.close().catch(() => undefined);
    for (const s of started) await s.stop();
    await admin?.close().catch(() => undefined);
    throw err;
  }
}

async function bind(key: string, text: string, start: () => Promise<string>): Promise<string> {
  try {
    return await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'the address is already in use'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EADDRNOTAVAIL'
            ? 'no such local address'
            : (code ?? String(err));
    throw new ConfigError(`${key}: cannot listen on ${text}: ${why}`, 'pick another address or stop what holds it', err);
  }
}
