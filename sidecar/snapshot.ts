/**
 * What a connection is judged by, and the read-only port through which the proxies and
 * the admin endpoint see it. The reload store (reload/store.ts) builds and swaps
 * snapshots; everyone else reads `current` and is told when it changed or time passed,
 * so a proxy can run on a fake source in tests and reload can change without touching it.
 */
import type { SecureContext, SecureContextOptions } from 'node:tls';
import type { CrlSet } from '../common/crl.js';
import type { Policy } from '../common/policy/index.js';
import type { SpiffeId } from '../common/spiffe-id.js';
import type { CertInfo } from '../common/x509.js';

/** The sidecar's own credential set, checked usable (reload/identity.ts). */
export interface Identity {
  readonly id: SpiffeId;
  readonly leaf: CertInfo;
  /** tls.crt as read: leaf then intermediates. */
  readonly chainPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly roots: readonly Buffer[];
  /** Changes whenever the certificate, key or trust bundle changes (never logged with the key). */
  readonly fingerprint: string;
  /** The folder the files were read from. */
  readonly sourceDir: string;
}

export interface CrlState {
  readonly path: string;
  readonly set: CrlSet;
  /** sha256 of the file, to skip re-verifying an unchanged file. */
  readonly hash: string;
}

export interface PolicyState {
  readonly path: string;
  readonly policy: Policy;
  readonly hash: string;
}

/**
 * One immutable snapshot of everything a connection is judged by: identity (and the TLS
 * options made from it), the verified CRLs, the policy. A reload builds a whole new one
 * and swaps one pointer.
 */
export interface Snapshot {
  /** Grows by one per swap. */
  readonly generation: number;
  readonly identity: Identity;
  readonly crl: CrlState | undefined;
  readonly policy: PolicyState | undefined;
  /** For tls.createServer / setSecureContext. */
  readonly serverOptions: SecureContextOptions;
  /** For outbound tls.connect. */
  readonly clientContext: SecureContext;
  /** Changes when the certificate, key, trust bundle or CRLs change: outbound TLS
   *  sessions are kept only under the key they were verified with. */
  readonly trustKey: string;
}

export type SwapListener = (next: Snapshot, previous: Snapshot) => void;

/** The read-only side of the snapshot store: all a proxy or the admin endpoint needs. */
export interface SnapshotSource {
  /** The snapshot in force; read once per connection (and per request in http mode). */
  readonly current: Snapshot;
  /** "Something changed": called after a new snapshot is swapped in, with the one it replaced. */
  onSwap(listener: SwapListener): void;
  /** "Time passed": called every tick (about 1 s) with the current snapshot, so that open
   *  connections whose peer reached notAfter are found without any file change. */
  onTick(listener: (snap: Snapshot) => void): void;
}

/** Why `leaf` cannot be used right now, or undefined when it is within its validity. */
export function validityProblem(leaf: CertInfo, now: Date): string | undefined {
  if (now < leaf.notBefore) return `the certificate is not valid before ${leaf.notBefore.toISOString()}`;
  if (now > leaf.notAfter) return `the certificate expired at ${leaf.notAfter.toISOString()}`;
  return undefined;
}
