/**
 * The local service spoken to over cleartext HTTP/2 with prior knowledge (`inbound.upstream:
 * h2c`), as gRPC servers listen. One session carries every request, whatever the number of
 * callers (HTTP/2 multiplexes); a session that closes, errors or receives GOAWAY is replaced
 * by a new one on the next request, while its open streams finish.
 */
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Address } from '../config/schema.js';
import { dial } from '../net/socket.js';

export class H2cUpstream {
  #session: ClientHttp2Session | undefined;
  readonly #all = new Set<ClientHttp2Session>();

  constructor(readonly address: Address) {}

  /** Opens a stream; `headers` carries the pseudo-headers (h2cRequestHeaders). */
  request(headers: OutgoingHttpHeaders, opts: { endStream: boolean; waitForTrailers: boolean }): ClientHttp2Stream {
    return this.session().request(headers, opts);
  }

  /** Closes every session (shutdown). */
  destroy(): void {
    for (const s of this.#all) s.destroy();
    this.#all.clear();
    this.#session = undefined;
  }

  private session(): ClientHttp2Session {
    const current = this.#session;
    if (current && !current.closed && !current.destroyed) return current;
    const authority =
      this.address.kind === 'unix'
        ? 'http://localhost'
        : `http://${this.address.kind === 'tcp' && this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host}:${this.address.port}`;
    const session = http2Connect(authority, { createConnection: () => dial(this.address) });
    this.#session = session;
    this.#all.add(session);
    const retire = () => {
      if (this.#session === session) this.#session = undefined;
    };
    // Each stream reports its own failure; the session's error only retires it.
    session.on('error', retire);
    session.on('goaway', retire);
    session.once('close', () => {
      retire();
      this.#all.delete(session);
    });
    // An idle session must not keep a draining sidecar alive.
    session.unref();
    return session;
  }
}
