/**
 * `svcca token SERVICE [--ttl 10m] [--cert-ttl 24h] [--dns N]… [--ip A]…` prints a
 * one-time bootstrap token for `svcca bootstrap` / `POST /v1/bootstrap`;
 * `svcca token SERVICE --revoke` revokes the service's unused ones.
 */
import { assertServiceName } from '../../common/spiffe-id.js';
import { requireDurationMs, formatDuration } from '../../common/duration.js';
import { UsageError } from '../../common/errors.js';
import { assertDnsName, assertIp } from '../names.js';
import { intermediatePassphraseSource, openCaForReading, openCaSession } from '../ca/ca-session.js';
import { assertSetSafeServiceName, assertWholeSecondTtl, chooseTtlMs } from '../ca/issuance.js';
import { makeBootstrapToken, revokeBootstrapTokens } from '../ca/bootstrap-tokens.js';
import { assertNotServerService } from '../ca/online-issuance.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';

export interface TokenOptions {
  readonly service: string;
  /** How long the token may be used; default 10m. */
  readonly ttl?: string;
  /** Lifetime of the certificate it buys; default the CA's. */
  readonly certTtl?: string;
  readonly dns: readonly string[];
  readonly ip: readonly string[];
  readonly revoke?: boolean;
  readonly passphraseFile?: string;
}

const DEFAULT_TOKEN_TTL = '10m';
/** A token is for handing over now, not for storing: a day at most. */
const MAX_TOKEN_TTL_MS = 24 * 3_600_000;

export async function runToken(opts: TokenOptions, ctx: CommandContext): Promise<void> {
  const service = assertServiceName(opts.service);
  assertSetSafeServiceName(service);
  assertNotServerService(service);
  if (opts.revoke) {
    if (opts.ttl !== undefined || opts.certTtl !== undefined || opts.dns.length || opts.ip.length)
      throw new UsageError('--revoke takes no other flag', `run \`svcca token ${service} --revoke\``);
    // Revoking only takes access away: the ledger alone, no passphrase.
    const ca = await openCaForReading(ctx.global.dir);
    try {
      const n = await revokeBootstrapTokens(ca.ledger, service, actor());
      ctx.out.line(n === 0 ? `${service} had no unused bootstrap token` : `Revoked ${n} unused bootstrap token(s) of ${service}`);
      ctx.out.result({ service, revoked: n });
    } finally {
      await ca.close();
    }
    return;
  }
  const ttlText = opts.ttl ?? DEFAULT_TOKEN_TTL;
  const ttlMs = requireDurationMs('--ttl', ttlText);
  if (ttlMs < 1000 || ttlMs > MAX_TOKEN_TTL_MS)
    throw new UsageError(
      `--ttl ${ttlText}: a token lives between 1s and 24h`,
      'make it when the service is about to start, e.g. --ttl 10m',
    );
  const certTtlFlag = opts.certTtl === undefined ? undefined : requireDurationMs('--cert-ttl', opts.certTtl);
  if (certTtlFlag !== undefined) assertWholeSecondTtl(opts.certTtl!, certTtlFlag);
  const dnsNames = [...new Set(opts.dns.map(assertDnsName))];
  const ips = [...new Set(opts.ip.map(assertIp))];

  // A token buys a certificate, so making one takes what issuing takes: the intermediate's
  // passphrase (write access to the ledger alone must not be enough).
  const ca = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const certTtlMs = chooseTtlMs(certTtlFlag, ca.config, ca.authority.intermediate.info.notAfter.getTime(), Date.now());
    const made = await makeBootstrapToken({ trustDomain: ca.config.trustDomain, rootPem: ca.authority.rootPem }, ca.ledger, {
      service,
      ttlMs,
      certTtlMs,
      dnsNames,
      ips,
      actor: actor(),
    });
    if (ctx.out.json)
      ctx.out.result({
        service,
        token: made.token,
        expiresAt: new Date(made.expiresAt).toISOString(),
        rootSha256: made.rootSha256,
        certTtl: formatDuration(certTtlMs),
      });
    else {
      process.stdout.write(`${made.token}\n`);
      process.stderr.write(
        `one-time token for ${service}, valid until ${new Date(made.expiresAt).toISOString()}; use it with \`svcca bootstrap --ca https://HOST:PORT --token TOKEN --out DIR\`\n`,
      );
    }
  } finally {
    await ca.close();
  }
}
