/**
 * `svcca serve --listen HOST:PORT [--admin HOST:PORT]`: the CA as a long-running HTTPS
 * endpoint (renewal over mTLS, bootstrap tokens, CRL and trust bundle). Only the
 * intermediate key is opened; the root key is never needed. Runs until SIGTERM or SIGINT,
 * then drains. See cli/serve/ for the server and cli/ca/online-issuance.ts for the rules.
 */
import { UsageError } from '../../common/errors.js';
import { requireDurationMs } from '../../common/duration.js';
import { intermediatePassphraseSource, openCaSession } from '../ca/ca-session.js';
import { startServe, type HostPort } from '../serve/serve-runtime.js';
import { createServeLogger } from '../serve/serve-logger.js';
import { defaultReplicaName, parseReplicaName } from '../serve/replica-name.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';

export interface ServeOptions {
  readonly listen: string;
  readonly admin?: string;
  /** Requests per minute per caller (a service, or an address for bootstrap). */
  readonly rateLimit?: string;
  /** Lifetime of the server's own certificate (default: the CA's default TTL). */
  readonly certTtl?: string;
  /** Grace period for requests in flight at SIGTERM. */
  readonly drain?: string;
  readonly passphraseFile?: string;
  /** This replica's name (default SVCCA_REPLICA, else the host name). */
  readonly replica?: string;
}

/** Parses HOST:PORT or [IPv6]:PORT. */
export function parseHostPort(flag: string, text: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not HOST:PORT`, `e.g. ${flag} 0.0.0.0:9443 (or [::]:9443)`);
  return { host: m[1] ?? m[2]!, port };
}

export async function runServe(opts: ServeOptions, ctx: CommandContext): Promise<void> {
  const listen = parseHostPort('--listen', opts.listen);
  const admin = opts.admin === undefined ? undefined : parseHostPort('--admin', opts.admin);
  const perMinute = opts.rateLimit === undefined ? 30 : Number(opts.rateLimit);
  if (!Number.isInteger(perMinute) || perMinute < 1 || perMinute > 1_000_000)
    throw new UsageError(`--rate-limit ${opts.rateLimit}: give whole requests per minute per caller`, 'e.g. --rate-limit 30');
  const certTtlFlag = opts.certTtl === undefined ? undefined : requireDurationMs('--cert-ttl', opts.certTtl);
  if (certTtlFlag !== undefined && (certTtlFlag < 10_000 || certTtlFlag % 1000 !== 0))
    throw new UsageError(`--cert-ttl ${opts.certTtl}: use whole seconds, 10s or more`, 'e.g. --cert-ttl 24h');
  const drainMs = opts.drain === undefined ? 10_000 : requireDurationMs('--drain', opts.drain);
  const replica =
    opts.replica !== undefined
      ? parseReplicaName(opts.replica, '--replica')
      : ctx.env.SVCCA_REPLICA
        ? parseReplicaName(ctx.env.SVCCA_REPLICA, 'SVCCA_REPLICA')
        : defaultReplicaName();

  const session = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  let running: Awaited<ReturnType<typeof startServe>>;
  try {
    running = await startServe(
      session,
      {
        listen,
        ...(admin ? { admin } : {}),
        rateLimit: { perMinute, burst: Math.min(10, perMinute) },
        certTtlMs: Math.min(certTtlFlag ?? session.config.defaultTtlMs, session.config.maxTtlMs),
        drainMs,
        replica,
        actor: actor(),
      },
      createServeLogger(ctx.env.SVCCA_LOG_LEVEL ?? 'info'),
    );
  } catch (err) {
    await session.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL')
      throw new UsageError(`cannot listen: ${(err as Error).message}`, 'choose another --listen / --admin address');
    throw err;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await running.stop();
}
