/**
 * `svcca serve` running: the HTTPS endpoint, the admin listener, and the upkeep a CA
 * server needs with no cron beside it — its own certificate renewed in process, crl.pem
 * republished when due, the intermediate reloaded after `svcca rotate --intermediate`
 * rolled it on disk. SIGTERM (via `stop`) drains: no new connections, requests in flight
 * finish within the grace period, then the ledger is closed.
 */
import { createHash } from 'node:crypto';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import { errorLine } from '../../common/errors.js';
import { readCappedText, FILE_CAPS } from '../../common/capped-file.js';
import { CA_FILES } from '../store/ca-dir.js';
import type { CaSession } from '../ca/ca-session.js';
import { issueServerCredential, serverServiceFor, type OnlineCa, type ServerCredential } from '../ca/online-issuance.js';
import { refreshCrl } from '../ca/rotation.js';
import { CaServer } from './ca-server.js';
import { ServeAdmin, type Readiness } from './admin-server.js';
import { CrlFollowLoop } from './crl-follow-loop.js';
import { createServeMetrics, type ServeMetrics } from './serve-metrics.js';
import type { RateLimit } from './rate-limiter.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface ServeSettings {
  readonly listen: HostPort;
  readonly admin?: HostPort;
  readonly rateLimit: RateLimit;
  /** Lifetime of the server's own certificate (ms). */
  readonly certTtlMs: number;
  /** How long SIGTERM lets requests in flight finish (ms). */
  readonly drainMs: number;
  /** This replica's name: its own certificate is recorded as svcca/replica/<name>. */
  readonly replica: string;
  readonly actor: string;
}

export interface RunningServe {
  /** host:port the HTTPS endpoint listens on (port 0 resolved). */
  readonly address: string;
  readonly adminAddress: string | undefined;
  readonly credential: () => ServerCredential;
  /** Stops accepting, lets requests finish (up to the grace period), closes everything. */
  stop(): Promise<void>;
}

/** The server renews its own certificate when a third of its TTL is left (the back-dated minute not counted). */
const OWN_RENEWAL_SHARE = 1 / 3;
const MAX_UPKEEP_INTERVAL_MS = 30_000;

function listenOn(server: Server, at: HostPort): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(
        a && typeof a === 'object'
          ? a.family === 'IPv6'
            ? `[${a.address}]:${a.port}`
            : `${a.address}:${a.port}`
          : `${at.host}:${at.port}`,
      );
    });
  });
}

function fileHash(path: string): string {
  try {
    return createHash('sha256').update(readCappedText(path, FILE_CAPS.pemBundle)).digest('hex');
  } catch {
    return '';
  }
}

export async function startServe(session: CaSession, settings: ServeSettings, logger: Logger): Promise<RunningServe> {
  const metrics: ServeMetrics = createServeMetrics();
  const online = (): OnlineCa => ({ dir: session.dir, ledger: session.ledger, authority: session.authority, actor: settings.actor });
  let credential = await issueServerCredential(online(), settings.certTtlMs, settings.replica);
  metrics.certExpiry.set(credential.info.notAfter.getTime() / 1000);
  logger.info(
    {
      event: 'certificate',
      serial: credential.serial,
      spiffeId: credential.info.uris[0],
      replica: settings.replica,
      notAfter: credential.info.notAfter.toISOString(),
    },
    'issued its own server certificate',
  );

  const ca = new CaServer({ ca: online, credential, logger, metrics, rateLimit: settings.rateLimit });
  let draining = false;
  const readiness = async (): Promise<Readiness> => {
    const now = Date.now();
    const lines: string[] = [];
    let ready = !draining;
    if (draining) lines.push('shutting down');
    const own = credential.info.notAfter.getTime();
    if (own <= now) {
      ready = false;
      lines.push(`server certificate: expired ${new Date(own).toISOString()}`);
    } else lines.push(`server certificate: ${credential.info.uris[0]} valid until ${new Date(own).toISOString()}`);
    const inter = session.authority.intermediate.info.notAfter.getTime();
    if (inter <= now) {
      ready = false;
      lines.push('intermediate: expired; run `svcca rotate --intermediate`');
    } else lines.push(`intermediate: valid until ${new Date(inter).toISOString()}`);
    try {
      await session.ledger.getService(serverServiceFor(settings.replica));
      lines.push('ledger: ok');
    } catch (err) {
      ready = false;
      lines.push(`ledger: ${errorLine(err)}`);
    }
    return { ready, lines };
  };
  const admin = settings.admin ? new ServeAdmin({ registry: metrics.registry, readiness }) : undefined;

  const address = await listenOn(ca.server, settings.listen);
  const adminAddress = admin && settings.admin ? await listenOn(admin.server, settings.admin) : undefined;
  logger.info(
    { event: 'start', listen: address, admin: adminAddress ?? null, trustDomain: session.config.trustDomain },
    'svcca serve is listening',
  );

  // crl.pem follows the CRLs other hosts publish in the ledger (several replicas, a revoke elsewhere).
  const crlFollow = new CrlFollowLoop(() => session, logger, metrics);
  crlFollow.start();

  let intermediateHash = fileHash(session.dir.file(CA_FILES.intermediateCert));
  let upkeepRunning = false;
  const upkeep = async () => {
    if (upkeepRunning || draining) return;
    upkeepRunning = true;
    try {
      const nowHash = fileHash(session.dir.file(CA_FILES.intermediateCert));
      if (nowHash && nowHash !== intermediateHash) {
        session.reload();
        intermediateHash = nowHash;
        logger.info(
          { event: 'intermediate', serial: session.authority.intermediate.info.serialHex },
          'the intermediate was rolled: signing with the new one',
        );
      }
      const c = credential.info;
      // Due, or signed by an intermediate that was rolled away since.
      const rolled = session.authority.intermediate.info.subjectKeyId !== c.authorityKeyId;
      if (rolled || c.notAfter.getTime() - Date.now() < settings.certTtlMs * OWN_RENEWAL_SHARE) {
        const next = await issueServerCredential(online(), settings.certTtlMs, settings.replica, credential.serial);
        ca.useCredential(next);
        credential = next;
        metrics.certExpiry.set(next.info.notAfter.getTime() / 1000);
        logger.info(
          { event: 'certificate', serial: next.serial, notAfter: next.info.notAfter.toISOString() },
          'renewed its own server certificate',
        );
      }
      await crlFollow.tick();
      const crl = await refreshCrl(session, settings.actor);
      if (crl && 'error' in crl) {
        metrics.crlRefreshes.inc({ result: 'failed' });
        logger.error({ event: 'crl', result: 'failure', reason: crl.error }, 'could not republish crl.pem');
      } else if (crl) {
        metrics.crlRefreshes.inc({ result: 'published' });
        logger.info({ event: 'crl', result: 'success', reason: crl.reason, crls: crl.crls.map((x) => x.number) }, 'republished crl.pem');
      }
    } catch (err) {
      logger.error({ event: 'upkeep', reason: errorLine(err) }, 'upkeep failed; retrying at the next tick');
    } finally {
      upkeepRunning = false;
    }
  };
  const interval = Math.max(1_000, Math.min(MAX_UPKEEP_INTERVAL_MS, Math.floor(settings.certTtlMs / 10)));
  const timer = setInterval(() => void upkeep(), interval);
  void upkeep();

  return {
    address,
    adminAddress,
    credential: () => credential,
    async stop() {
      if (draining) return;
      draining = true;
      clearInterval(timer);
      await crlFollow.stop();
      logger.info({ event: 'drain', graceMs: settings.drainMs }, 'SIGTERM: draining');
      const closed = new Promise<void>((resolve) => ca.server.close(() => resolve()));
      ca.server.closeIdleConnections();
      const grace = new Promise<void>((resolve) => setTimeout(resolve, settings.drainMs).unref());
      await Promise.race([ca.idle(), grace]);
      ca.server.closeAllConnections();
      await closed;
      if (admin) await admin.close();
      await session.close();
      logger.info({ event: 'stop' }, 'stopped');
    },
  };
}
