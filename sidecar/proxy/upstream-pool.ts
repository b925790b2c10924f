/**
 * Keep-alive connections to the local service for http mode. One pool per inbound
 * listener, whatever the number of callers: the service sees a handful of long-lived
 * connections instead of one per caller connection.
 */
import { Agent, request as httpRequest, type ClientRequest } from 'node:http';
import type { Address } from '../config/schema.js';

export interface UpstreamRequest {
  readonly method: string;
  /** Normalized path plus `?query`: what the policy allowed. */
  readonly path: string;
  /** Flat name/value list (upstreamRequestHeaders). */
  readonly headers: string[];
  /** false for an upgrade: the socket leaves the pool once it is a tunnel. */
  readonly pooled: boolean;
}

export class UpstreamPool {
  readonly #agent: Agent;
  readonly #target: { host: string; port: number } | { socketPath: string };

  constructor(readonly address: Address) {
    // Node's Agent leaves a free socket a little before the server's announced
    // `Keep-Alive: timeout=` runs out, which keeps the reuse race (a request written to a
    // socket the server is closing) rare; the caller retries the bodyless ones that hit it.
    this.#agent = new Agent({ keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 256, scheduling: 'lifo' });
    this.#target = address.kind === 'unix' ? { socketPath: address.path } : { host: address.host, port: address.port };
  }

  /** The Host to send when the caller sent none (HTTP/1.0). */
  get fallbackHost(): string {
    return this.address.kind === 'unix' ? 'localhost' : this.address.text;
  }

  request(r: UpstreamRequest): ClientRequest {
    const req = httpRequest({
      ...this.#target,
      method: r.method,
      path: r.path,
      headers: r.headers,
      // The caller's Host is passed on as sent; Node must not add a second one.
      setHost: false,
      agent: r.pooled ? this.#agent : false,
    });
    // Nagle off (see NO_DELAY): a new pooled socket is set once, a reused one already is.
    req.once('socket', (s) => s.setNoDelay(true));
    return req;
  }

  /** Closes the idle connections (shutdown). */
  destroy(): void {
    this.#agent.destroy();
  }
}
