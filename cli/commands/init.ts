/**
 * `svcca init`: checks the flags and secrets, has cli/ca/create-ca.ts make the CA, and
 * says where everything went.
 */
import { assertTrustDomain, spiffeIdFor } from '../../common/spiffe-id.js';
import { assertKeyType } from '../../common/keys.js';
import { formatDuration } from '../../common/duration.js';
import { CA_FILES, DEFAULT_TTL_MS } from '../store/ca-dir.js';
import { createCa, type CreatedCa } from '../ca/create-ca.js';
import { intermediatePassphraseSource } from '../ca/ca-session.js';
import { requireSecret } from '../secrets.js';
import { actor } from '../actor.js';
import { parseLedgerUrl } from '../store/ledger-url.js';
import type { CommandContext } from '../context.js';

export interface InitOptions {
  readonly trustDomain: string;
  /** Default ecdsa-p256 (set in program.ts). */
  readonly keyType: string;
  readonly passphraseFile?: string;
  readonly rootPassphraseFile?: string;
  /** postgres://USER@HOST:PORT/DB for a ledger in PostgreSQL (or env SVCCA_LEDGER). */
  readonly ledger?: string;
}

export async function runInit(opts: InitOptions, ctx: CommandContext): Promise<void> {
  // Every input is checked before the first file is written.
  const trustDomain = assertTrustDomain(opts.trustDomain);
  const keyType = assertKeyType(opts.keyType);
  const ledgerText = opts.ledger ?? (ctx.env.SVCCA_LEDGER || undefined);
  const ledger =
    ledgerText === undefined ? undefined : parseLedgerUrl(ledgerText, ctx.env, opts.ledger !== undefined ? '--ledger' : 'SVCCA_LEDGER').url;
  const passphrase = await requireSecret(intermediatePassphraseSource(opts.passphraseFile, ctx.env, true));
  const rootPassphrase =
    opts.rootPassphraseFile !== undefined || ctx.env.SVCCA_ROOT_PASSPHRASE
      ? await requireSecret({
          what: 'passphrase for the root key',
          file: opts.rootPassphraseFile,
          fileFlag: '--root-passphrase-file',
          envVar: 'SVCCA_ROOT_PASSPHRASE',
          env: ctx.env,
        })
      : passphrase;
  const ca = await createCa({ caDir: ctx.global.dir, trustDomain, keyType, passphrase, rootPassphrase, actor: actor(), ledger });
  printCreated(ca, ctx);
}

function printCreated({ dir, config, root, intermediate }: CreatedCa, ctx: CommandContext): void {
  const ledger = config.ledger;
  ctx.out.line(`Created a CA for trust domain ${config.trustDomain} in ${dir.path}`);
  ctx.out.line(
    `  root          ${dir.file(CA_FILES.rootCert)} (${config.keyType}, until ${root.notAfter.toISOString()}; key encrypted, keep it offline)`,
  );
  ctx.out.line(`  intermediate  ${dir.file(CA_FILES.intermediateCert)} (until ${intermediate.notAfter.toISOString()})`);
  ctx.out.line(`  trust bundle  ${dir.file(CA_FILES.trustBundle)}   CRLs ${dir.file(CA_FILES.crl)}`);
  if (ledger) ctx.out.line(`  ledger        ${ledger} (PostgreSQL; kept in ${dir.file(CA_FILES.config)})`);
  ctx.out.line(
    `Next: svcca issue <service>   (e.g. ${spiffeIdFor(config.trustDomain, 'order-service')}, ${formatDuration(DEFAULT_TTL_MS)} certificates)`,
  );
  ctx.out.result({
    dir: dir.path,
    trustDomain: config.trustDomain,
    keyType: config.keyType,
    root: { serial: root.serialHex, notAfter: root.notAfter.toISOString(), file: dir.file(CA_FILES.rootCert) },
    intermediate: {
      serial: intermediate.serialHex,
      notAfter: intermediate.notAfter.toISOString(),
      file: dir.file(CA_FILES.intermediateCert),
    },
    trustBundle: dir.file(CA_FILES.trustBundle),
    crl: dir.file(CA_FILES.crl),
    ledger: ledger ?? dir.file(CA_FILES.ledger),
  });
}
