/**
 * PKCS#12 for Java/.NET clients: the key, the leaf and the intermediate. The only
 * module that loads node-forge (for the PKCS#12 key derivation and the legacy 3DES
 * key encryption); forge's own PFX writer handles RSA keys only (FACTS), so the PFX
 * is assembled here from DER pieces, for every key type alike.
 *
 * Default: the key bag is PBES2 (PBKDF2-SHA256) + AES-256-CBC and the MAC is
 * HMAC-SHA-256, which OpenSSL 3 reads without -legacy. `legacy`: the key bag is
 * pbeWithSHAAnd3-KeyTripleDES-CBC and the MAC HMAC-SHA-1, for old Java and macOS.
 */
import { createHash, createHmac, randomBytes, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { bmpString, explicit, integer, nullValue, octetString, oid, seq, setOf } from '../../common/der.js';

const OID = {
  data: '1.2.840.113549.1.7.1',
  keyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  localKeyId: '1.2.840.113549.1.9.21',
  friendlyName: '1.2.840.113549.1.9.20',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
};

export const PKCS12_ITERATIONS = 2048;

export interface Pkcs12Input {
  readonly key: KeyObject;
  /** Leaf first, then the intermediate(s), DER. */
  readonly certs: readonly Buffer[];
  readonly password: string;
  readonly friendlyName: string;
  readonly legacy: boolean;
}

function attributes(localKeyId: Buffer, friendlyName: string): Buffer {
  return setOf(seq(oid(OID.localKeyId), setOf(octetString(localKeyId))), seq(oid(OID.friendlyName), setOf(bmpString(friendlyName))));
}

function encryptedKeyInfo(input: Pkcs12Input): Buffer {
  if (!input.legacy) {
    // node:crypto writes PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC.
    return input.key.export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: input.password }) as Buffer;
  }
  const pkcs8 = input.key.export({ type: 'pkcs8', format: 'der' }) as Buffer;
  const info = forge.asn1.fromDer(forge.util.createBuffer(pkcs8.toString('binary')));
  const encrypted = forge.pki.encryptPrivateKeyInfo(info, input.password, { algorithm: '3des', count: PKCS12_ITERATIONS });
  return Buffer.from(forge.asn1.toDer(encrypted).getBytes(), 'binary');
}

function contentInfoData(safeContents: Buffer): Buffer {
  return seq(oid(OID.data), explicit(0, octetString(safeContents)));
}

/** The DER of a PFX holding the key and certificate chain. */
export function buildPkcs12(input: Pkcs12Input): Buffer {
  const leaf = input.certs[0];
  if (!leaf) throw new Error('buildPkcs12 needs at least the leaf certificate');
  // Java and OpenSSL pair the key with its certificate through localKeyId.
  const localKeyId = createHash('sha1').update(leaf).digest();
  const certBags = input.certs.map((der, i) =>
    seq(
      oid(OID.certBag),
      explicit(0, seq(oid(OID.x509Certificate), explicit(0, octetString(der)))),
      ...(i === 0 ? [attributes(localKeyId, input.friendlyName)] : []),
    ),
  );
  const keyBag = seq(oid(OID.keyBag), explicit(0, encryptedKeyInfo(input)), attributes(localKeyId, input.friendlyName));
  const authSafe = seq(contentInfoData(seq(...certBags)), contentInfoData(seq(keyBag)));

  const macSalt = randomBytes(input.legacy ? 8 : 16);
  const hash = input.legacy ? 'sha1' : 'sha256';
  const macKeyLength = input.legacy ? 20 : 32;
  const md = input.legacy ? forge.md.sha1.create() : forge.md.sha256.create();
  const macKeyBytes = forge.pkcs12.generateKey(
    input.password,
    forge.util.createBuffer(macSalt.toString('binary')),
    3,
    PKCS12_ITERATIONS,
    macKeyLength,
    md,
  );
  const macKey = Buffer.from(macKeyBytes.getBytes(), 'binary');
  const mac = createHmac(hash, macKey).update(authSafe).digest();
  const macData = seq(
    seq(seq(oid(input.legacy ? OID.sha1 : OID.sha256), nullValue()), octetString(mac)),
    octetString(macSalt),
    integer(BigInt(PKCS12_ITERATIONS)),
  );
  return seq(integer(3n), contentInfoData(authSafe), macData);
}
