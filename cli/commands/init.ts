/**
 * `svcca init`: a root (10 y) and an issuing intermediate (1 y) with a name constraint
 * on the trust domain, keys encrypted at rest, an empty ledger and the first crl.pem.
 */
import { rmSync } from 'node:fs';
import { assertTrustDomain, spiffeIdFor } from '../../common/spiffe-id.js';
import { assertKeyType, exportEncryptedKeyPem, generateKey, signingAlgorithm, toSigningCryptoKey, type KeyType } from '../../common/keys.js';
import { writeFileAtomic, fsyncDir } from '../../common/atomic-file.js';
import { encodePem } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import { CA_FILES, createCaDir, writeConfig, DEFAULT_CRL_NEXT_UPDATE_MS, DEFAULT_MAX_TTL_MS, DEFAULT_TTL_MS, type CaConfig } from '../store/ca-dir.js';
import { INTERMEDIATE_LIFETIME_MS, ROOT_LIFETIME_MS, intermediateExtensions, intermediateSubject, randomSerialHex, rootExtensions, rootSubject } from '../ca/profiles.js';
import { signIssuerCrl, writeCrlBundle } from '../ca/crl-publish.js';
import { x509 } from '../ca/x509-lib.js';
import { requireSecret } from '../secrets.js';
import { intermediatePassphraseSource, openLedger } from '../ca/ca-session.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';
import { spkiOf } from '../ca/authority.js';
import { formatDuration } from '../../common/duration.js';

export interface InitOptions {
  readonly trustDomain: string;
  readonly keyType: string;
  readonly passphraseFile?: string;
  readonly rootPassphraseFile?: string;
}

async function selfSignRoot(keyType: KeyType, trustDomain: string, now: Date) {
  const key = generateKey(keyType);
  const { webcrypto } = await import('node:crypto');
  const alg = signingAlgorithm(keyType);
  const publicKey = (await webcrypto.subtle.importKey('spki', spkiOf(key), alg.importAlg, true, ['verify'])) as CryptoKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: rootSubject(trustDomain),
    issuer: rootSubject(trustDomain),
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + ROOT_LIFETIME_MS),
    publicKey,
    signingKey: await toSigningCryptoKey(key, keyType),
    signingAlgorithm: alg.signAlg,
    extensions: await rootExtensions(publicKey),
  });
  return { key, der: Buffer.from(cert.rawData), cert };
}

export async function runInit(opts: InitOptions, ctx: CommandContext): Promise<void> {
  // Every input is checked before the first file is written.
  const trustDomain = assertTrustDomain(opts.trustDomain);
  const keyType = assertKeyType(opts.keyType);
  const passphrase = await requireSecret(intermediatePassphraseSource(opts.passphraseFile, ctx.env, true));
  const rootPassphrase =
    opts.rootPassphraseFile !== undefined || ctx.env.SVCCA_ROOT_PASSPHRASE
      ? await requireSecret({ what: 'passphrase for the root key', file: opts.rootPassphraseFile, fileFlag: '--root-passphrase-file', envVar: 'SVCCA_ROOT_PASSPHRASE', env: ctx.env })
      : passphrase;

  const dir = createCaDir(ctx.global.dir);
  const written: string[] = [];
  try {
    const now = new Date();
    const root = await selfSignRoot(keyType, trustDomain, now);
    const rootInfo = parseCertificate(root.der);
    const intermediateKey = generateKey(keyType);
    const alg = signingAlgorithm(keyType);
    const { webcrypto } = await import('node:crypto');
    const intPublic = (await webcrypto.subtle.importKey('spki', spkiOf(intermediateKey), alg.importAlg, true, ['verify'])) as CryptoKey;
    const intermediate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: intermediateSubject(trustDomain, 1),
      issuer: root.cert.subjectName,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + INTERMEDIATE_LIFETIME_MS),
      publicKey: intPublic,
      signingKey: await toSigningCryptoKey(root.key, keyType),
      signingAlgorithm: alg.signAlg,
      extensions: await intermediateExtensions(intPublic, rootInfo.subjectKeyId!, trustDomain),
    });
    const intDer = Buffer.from(intermediate.rawData);
    const intInfo = parseCertificate(intDer);
    const rootPem = encodePem('CERTIFICATE', root.der);
    const intPem = encodePem('CERTIFICATE', intDer);

    const write = (name: string, data: string, mode: number) => {
      writeFileAtomic(dir.file(name), data, mode);
      written.push(dir.file(name));
    };
    write(CA_FILES.rootKey, exportEncryptedKeyPem(root.key, rootPassphrase), 0o600);
    write(CA_FILES.intermediateKey, exportEncryptedKeyPem(intermediateKey, passphrase), 0o600);
    write(CA_FILES.rootCert, rootPem, 0o644);
    write(CA_FILES.intermediateCert, intPem, 0o644);
    write(CA_FILES.trustBundle, rootPem, 0o644);

    written.push(dir.file(CA_FILES.ledger), dir.file(`${CA_FILES.ledger}-wal`), dir.file(`${CA_FILES.ledger}-shm`));
    const ledger = openLedger(dir, { create: true });
    try {
      const config: CaConfig = {
        version: 1,
        trustDomain,
        keyType,
        defaultTtlMs: DEFAULT_TTL_MS,
        maxTtlMs: DEFAULT_MAX_TTL_MS,
        crlNextUpdateMs: DEFAULT_CRL_NEXT_UPDATE_MS,
      };
      await ledger.transaction(async (tx) => {
        // The root's CRL must outlive the newest intermediate: only init and
        // `rotate --intermediate` hold the root key to re-sign it.
        const rootCrl = await signIssuerCrl(tx, { cert: { pem: rootPem, info: rootInfo }, key: root.key, keyType }, now, new Date(intInfo.notAfter.getTime() + 86_400_000));
        const intCrl = await signIssuerCrl(tx, { cert: { pem: intPem, info: intInfo }, key: intermediateKey, keyType }, now, new Date(now.getTime() + config.crlNextUpdateMs));
        written.push(dir.file(CA_FILES.crl));
        writeCrlBundle(dir, rootCrl.pem, [intCrl.pem], [intPem]);
        await tx.appendEvent({ kind: 'init', actor: actor(), why: `trust domain ${trustDomain}, ${keyType}` });
      });
      // The config is written last: its presence is what makes the directory a CA.
      written.push(dir.file(CA_FILES.config));
      writeConfig(dir, config);
      fsyncDir(dir.path);
    } finally {
      ledger.close();
    }

    ctx.out.line(`Created a CA for trust domain ${trustDomain} in ${dir.path}`);
    ctx.out.line(`  root          ${dir.file(CA_FILES.rootCert)} (${keyType}, until ${rootInfo.notAfter.toISOString()}; key encrypted, keep it offline)`);
    ctx.out.line(`  intermediate  ${dir.file(CA_FILES.intermediateCert)} (until ${intInfo.notAfter.toISOString()})`);
    ctx.out.line(`  trust bundle  ${dir.file(CA_FILES.trustBundle)}   CRLs ${dir.file(CA_FILES.crl)}`);
    ctx.out.line(`Next: svcca issue <service>   (e.g. ${spiffeIdFor(trustDomain, 'order-service')}, ${formatDuration(DEFAULT_TTL_MS)} certificates)`);
    ctx.out.result({
      dir: dir.path,
      trustDomain,
      keyType,
      root: { serial: rootInfo.serialHex, notAfter: rootInfo.notAfter.toISOString(), file: dir.file(CA_FILES.rootCert) },
      intermediate: { serial: intInfo.serialHex, notAfter: intInfo.notAfter.toISOString(), file: dir.file(CA_FILES.intermediateCert) },
      trustBundle: dir.file(CA_FILES.trustBundle),
      crl: dir.file(CA_FILES.crl),
    });
  } catch (err) {
    // Nothing half-written: a failed init leaves no CA behind.
    for (const path of written) rmSync(path, { force: true });
    throw err;
  }
}
