/**
 * The outbound's one way of reaching its target: a TLS connection under this service's
 * identity whose server is judged as an X509-SVID (chain, validity, CRL) and must present
 * exactly `serverId` — no host-name matching: the SPIFFE ID is the identity. Used for a
 * direct connection per app connection and for a tunnel alike, so both get every check.
 *
 * A resumed client session carries no peer certificate and skips checkServerIdentity, so
 * a session is cached only after its server passed the check, together with the leaf it
 * showed, keyed by target, serverId and the snapshot's trust key; the cache is dropped
 * on every swap. A resumed connection is re-judged from that leaf (validity, CRL).
 */
import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { CertInfo } from '../../common/x509.js';
import type { OutboundConfig } from '../config/schema.js';
import { CIPHERS } from '../net/ciphers.js';
import { NO_DELAY } from '../net/socket.js';
import type { Snapshot, SnapshotSource } from '../snapshot.js';
import { ownCertificateRefusal } from './verdict.js';
import { type CertCache, stillValid, verifyPeer, type RefusalReason } from './verify-peer.js';
import { peerLeafDer } from '../../common/tls-peer.js';

export type DialResult =
  | {
      readonly ok: true;
      readonly tls: TLSSocket;
      readonly leaf: CertInfo;
      readonly resumed: boolean;
      readonly seconds: number;
      readonly ownNotAfter: Date;
    }
  | { readonly ok: false; readonly reason: RefusalReason; readonly detail: string; readonly peer: string };

export interface DialAttempt {
  readonly result: Promise<DialResult>;
  /** Gives up (the app went away): the TLS connection is destroyed, the result never comes. */
  cancel(): void;
}

interface CachedSession {
  readonly session: Buffer;
  readonly leaf: CertInfo;
}

export interface DialerDeps {
  readonly config: OutboundConfig;
  readonly snapshots: SnapshotSource;
  readonly certs: CertCache;
  readonly now: () => Date;
}

export class ServerDialer {
  readonly #deps: DialerDeps;
  readonly #sessions = new Map<string, CachedSession>();

  constructor(deps: DialerDeps) {
    this.#deps = deps;
    deps.snapshots.onSwap(() => this.#sessions.clear());
  }

  /** One key whether ALPN is offered or not: a session proves the server, not a protocol
   *  (ALPN is negotiated afresh on resumption). */
  private sessionKey(snap: Snapshot): string {
    const { connect, serverId } = this.#deps.config;
    return `${connect.text}|${serverId}|${snap.trustKey}`;
  }

  /** Connects and judges the server; `alpn` is offered when given. */
  dial(alpn?: readonly string[]): DialAttempt {
    const { config } = this.#deps;
    const snap = this.#deps.snapshots.current;
    const own = ownCertificateRefusal(snap, this.#deps.now());
    if (own)
      return {
        result: Promise.resolve({ ok: false, reason: own.reason, detail: own.detail, peer: config.serverId }),
        cancel: () => undefined,
      };
    const key = this.sessionKey(snap);
    const cached = this.#sessions.get(key);
    const started = process.hrtime.bigint();
    const host = config.connect.host;
    // allowHalfOpen is honoured by tls.connect though @types/node does not list it.
    const tls = tlsConnect({
      host,
      port: config.connect.port,
      ...(isIP(host) ? {} : { servername: host }),
      secureContext: snap.clientContext,
      minVersion: 'TLSv1.2',
      ciphers: CIPHERS,
      rejectUnauthorized: false,
      // The SPIFFE ID is checked in verifyPeer; host names mean nothing here.
      checkServerIdentity: () => undefined,
      allowHalfOpen: true,
      ...NO_DELAY,
      ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
      ...(cached ? { session: cached.session } : {}),
    } as ConnectionOptions);
    // tls.connect does not hand noDelay to the socket it makes: set it on the TLS socket.
    tls.setNoDelay(true);
    let verified: CertInfo | undefined;
    let pendingSession: Buffer | undefined;
    let settled = false;
    const remember = (session: Buffer) => {
      if (verified && this.#deps.snapshots.current.trustKey === snap.trustKey) this.#sessions.set(key, { session, leaf: verified });
    };
    tls.on('session', (session: Buffer) => {
      if (verified) remember(session);
      else pendingSession = session;
    });
    let resolveResult!: (r: DialResult) => void;
    const result = new Promise<DialResult>((resolve) => (resolveResult = resolve));
    const settle = (r: DialResult) => {
      settled = true;
      clearTimeout(timer);
      resolveResult(r);
    };
    const timer = setTimeout(() => {
      if (settled) return;
      tls.destroy();
      settle({
        ok: false,
        reason: 'handshake-timeout',
        detail: `no TLS handshake with ${config.connect.text} within ${config.handshakeTimeoutMs} ms`,
        peer: config.serverId,
      });
    }, config.handshakeTimeoutMs);
    tls.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settle({ ok: false, reason: 'connect-failed', detail: connectFailure(config.connect.text, err), peer: config.serverId });
    });
    tls.once('secureConnect', () => {
      if (settled) {
        tls.destroy();
        return;
      }
      tls.disableRenegotiation();
      const current = this.#deps.snapshots.current;
      let refusal: { reason: RefusalReason; detail: string; peer: string } | undefined;
      let leaf: CertInfo | undefined;
      if (tls.isSessionReused() && cached) {
        // Resumed: no certificate on the wire; the session was cached only after its
        // server proved serverId, so re-judge the leaf it showed then.
        const still = stillValid(cached.leaf, current, this.#deps.now());
        if (still.ok) leaf = cached.leaf;
        else refusal = { reason: still.reason, detail: still.detail, peer: config.serverId };
      } else {
        const verdict = verifyPeer(
          { leafDer: peerLeafDer(tls), authorized: tls.authorized, authorizationError: tls.authorizationError?.toString(), role: 'server' },
          current,
          this.#deps.now(),
          this.#deps.certs,
        );
        if (!verdict.ok) refusal = { reason: verdict.reason, detail: verdict.detail, peer: verdict.peer };
        else if (verdict.id.uri !== config.serverId)
          refusal = {
            reason: 'wrong-server-id',
            detail: `the server presented ${verdict.id.uri}, not ${config.serverId}`,
            peer: verdict.id.uri,
          };
        else leaf = verdict.leaf;
      }
      if (refusal || !leaf) {
        this.#sessions.delete(key);
        tls.destroy();
        settle({
          ok: false,
          ...(refusal ?? { reason: 'untrusted-chain' as const, detail: 'no certificate to judge', peer: config.serverId }),
        });
        return;
      }
      verified = leaf;
      if (pendingSession) remember(pendingSession);
      settle({
        ok: true,
        tls,
        leaf,
        resumed: tls.isSessionReused(),
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        ownNotAfter: snap.identity.leaf.notAfter,
      });
    });
    return {
      result,
      cancel: () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        tls.destroy();
      },
    };
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT', 'EACCES']);

/** Why an outbound handshake never completed, worded for what the operator should check. */
function connectFailure(target: string, err: NodeJS.ErrnoException): string {
  const code = err.code ?? err.message;
  if (UNREACHABLE.has(code)) return `cannot reach ${target} (${code})`;
  if (/ALERT/.test(code))
    return `${target} refused the handshake (${code}): it does not accept this sidecar's certificate (another CA, or revoked?)`;
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH|HTTP_REQUEST|RECORD_LAYER/.test(code) || code === 'EPROTO') {
    return `${target} answered, but not with TLS (${code}): is connect the service itself rather than its sidecar?`;
  }
  return `the TLS handshake with ${target} failed (${code})`;
}
