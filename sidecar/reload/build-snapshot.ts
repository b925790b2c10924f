/**
 * Building a Snapshot (../snapshot.ts) from the files the config names: the bounded
 * reads, CRL verification against the identity's roots, policy parsing, and the TLS
 * options made from the identity.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { crlCovering, loadCrlPem, type CrlSet } from '../../common/crl.js';
import { ConfigError, InputError, errnoCode } from '../../common/errors.js';
import { MAX_POLICY_BYTES, parsePolicy } from '../../common/policy/index.js';
import type { SidecarConfig } from '../config/schema.js';
import { CIPHERS } from '../net/ciphers.js';
import type { CrlState, Identity, PolicyState, Snapshot } from '../snapshot.js';
import { loadIdentity } from './identity.js';

/** crl.pem of 100,000 entries is about 5 MB; this leaves room and stops /dev/zero. */
const MAX_CRL_BYTES = 64 * 1024 * 1024;

export function tlsOptionsFor(identity: Identity): SecureContextOptions {
  return {
    key: identity.keyPem,
    cert: identity.chainPem,
    ca: identity.caPem,
    minVersion: 'TLSv1.2',
    ciphers: CIPHERS,
    honorCipherOrder: true,
  };
}

/** Reads a file fully, refusing one larger than `max` without reading it all. */
export function readBoundedText(path: string, max: number, what: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = errnoCode(err);
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'is not readable by this user'
          : `cannot be opened (${code ?? String(err)})`;
    throw new ConfigError(`${what}: ${path} ${why}`, 'check the path in the config', err);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new ConfigError(`${what}: ${path} is a directory`, 'name the file itself');
    const buf = Buffer.alloc(Math.min(max + 1, Math.max(fstatSync(fd).size + 1, 4096)));
    let chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      total += n;
      if (total > max) throw new ConfigError(`${what}: ${path} is larger than ${max} bytes`, 'check that this is the right file');
    }
    const text = Buffer.concat(chunks, total).toString('utf8');
    chunks = [];
    return text;
  } finally {
    closeSync(fd);
  }
}

/**
 * Where the CRL text comes from: the file identity.crl names, or (for an https://
 * identity.crl) the last body fetched from the CA; either is verified the same way.
 */
export type CrlReader = () => string;

export function loadCrlState(path: string, identity: Identity, previous?: CrlState, read: CrlReader = () => readCrlText(path)): CrlState {
  const text = read();
  const hash = sha256(text);
  if (previous && previous.hash === hash && previous.path === path) return previous;
  return crlStateFromText(path, text, hash, identity);
}

/** Verifies CRL text already read (and hashed) against `identity`'s roots. */
export function crlStateFromText(path: string, text: string, hash: string, identity: Identity): CrlState {
  let set: CrlSet;
  try {
    set = loadCrlPem(text, identity.roots, path);
  } catch (err) {
    if (err instanceof InputError) throw new ConfigError(`identity.crl: ${err.message}`, err.hint, err);
    throw err;
  }
  // Peers from an issuer without a CRL are refused one by one (revocation-unknown); a
  // file without our own issuer's CRL is refused whole, since that is the CA that issues
  // the mesh's certificates now, and such a file is cut, not merely late.
  if (!crlCovering(set, identity.leaf)) {
    throw new ConfigError(
      `identity.crl: ${path} holds no CRL from ${identity.leaf.issuer}, the CA that issued this sidecar's certificate`,
      'publish it again with `svcca crl` (one CRL per issuing CA): with a CRL cut out, what that CA revoked would be accepted again',
    );
  }
  return { path, set, hash };
}

export function readCrlText(path: string): string {
  return readBoundedText(path, MAX_CRL_BYTES, 'identity.crl');
}

export function loadPolicyState(path: string, previous?: PolicyState): PolicyState {
  const text = readPolicyText(path);
  const hash = sha256(text);
  if (previous && previous.hash === hash && previous.path === path) return previous;
  return policyStateFromText(path, text, hash);
}

/** Parses policy text already read: what was hashed is what is judged. */
export function policyStateFromText(path: string, text: string, hash: string): PolicyState {
  return { path, policy: parsePolicy(text, path), hash };
}

export function readPolicyText(path: string): string {
  // One byte over the limit, so that parsePolicy names the size rather than a read error.
  return readBoundedText(path, MAX_POLICY_BYTES + 1, 'policy');
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Loads identity, CRL and policy as the config names them and builds a snapshot; throws
 * (IdentityError / ConfigError, one line) when any is unusable. Unchanged parts of
 * `previous` are reused, so a poll that finds nothing new costs no parsing.
 */
export function buildSnapshot(config: SidecarConfig, previous?: Snapshot, readCrl?: CrlReader): Snapshot {
  const loaded = loadIdentity(config.identity.dir);
  const identity = previous && previous.identity.fingerprint === loaded.fingerprint ? previous.identity : loaded;
  // A new trust bundle may verify different CRL signers: re-verify from scratch then.
  const sameTrust = previous !== undefined && previous.identity.caPem === identity.caPem;
  const crl = config.identity.crl ? loadCrlState(config.identity.crl, identity, sameTrust ? previous?.crl : undefined, readCrl) : undefined;
  const policy = config.policy ? loadPolicyState(config.policy, previous?.policy) : undefined;
  return composeSnapshot(previous, identity, crl, policy);
}

/**
 * The next snapshot from parts already validated; TLS contexts are rebuilt only when the
 * identity changed (a new context means new handshakes use the new certificate).
 */
export function composeSnapshot(
  previous: Snapshot | undefined,
  identity: Identity,
  crl: CrlState | undefined,
  policy: PolicyState | undefined,
): Snapshot {
  const identityChanged = identity !== previous?.identity;
  const serverOptions = identityChanged ? tlsOptionsFor(identity) : previous!.serverOptions;
  const clientContext = identityChanged ? createSecureContext(serverOptions) : previous!.clientContext;
  const trustKey = createHash('sha256')
    .update(identity.fingerprint)
    .update(crl?.hash ?? '')
    .digest('hex')
    .slice(0, 32);
  return { generation: (previous?.generation ?? 0) + 1, identity, crl, policy, serverOptions, clientContext, trustKey };
}

/** True when `next` differs from `prev` in anything a connection is judged by. */
export function snapshotChanged(prev: Snapshot, next: Snapshot): boolean {
  return prev.identity !== next.identity || prev.crl !== next.crl || prev.policy !== next.policy;
}
