/**
 * The sidecar config's strict schema: YAML → a normalized, validated SidecarConfig.
 * Every problem is reported as `<file>: <key.path>: <what is wrong>; <what to do>`, an
 * unknown or misspelt key included (a misspelt optional key silently ignored would run
 * with a default the user meant to change). All problems are collected, so `--check`
 * can list them at once; start-up prints the first.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, type SvccaError } from '../../common/errors.js';
import { parseCaUrl } from '../../common/ca-client.js';
import { DEFAULT_THRESHOLD, parseThreshold, type Threshold } from '../../common/renewal-threshold.js';
import { formatDuration, parseDurationMs } from '../../common/duration.js';
import { closestKey } from '../../common/policy/suggest.js';
import { parseSpiffeId } from '../../common/spiffe-id.js';
import { readConfigYaml } from './yaml.js';

export type Address =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly text: string }
  | { readonly kind: 'unix'; readonly path: string; readonly text: string };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type InboundMode = 'tcp' | 'http';
/** How http mode speaks to the local service: HTTP/1.1, or cleartext HTTP/2 with prior knowledge (gRPC servers). */
export type UpstreamProtocol = 'http1' | 'h2c';

/** Limits shared by inbound and outbound listeners. */
export interface ConnectionLimits {
  /** A peer that has not finished the TLS handshake by then is dropped. Default 10s. */
  readonly handshakeTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed. Default 1h. */
  readonly idleTimeoutMs: number;
  /** Connections beyond this are refused at accept. Default 10,000. */
  readonly maxConnections: number;
}

export interface InboundConfig extends ConnectionLimits {
  readonly listen: Address;
  readonly forward: Address;
  /** Default tcp. */
  readonly mode: InboundMode;
  /**
   * http mode: how long the local service may stay silent after a request was sent before
   * the caller gets 504 (once it has started answering, the idle timeout applies). Default 30s.
   */
  readonly upstreamTimeoutMs: number;
  /**
   * TLS handshakes in progress at once, and from one source address: sockets that have not
   * finished their handshake cannot crowd out established callers or new valid ones
   * (a flood of silent sockets). Defaults 1,024 and 256: a busy client host (one outbound sidecar
   * opening a connection per request) bursts into the hundreds from one address.
   */
  readonly maxHandshakes: number;
  readonly maxHandshakesPerAddress: number;
  /**
   * http mode: a request with more header fields than this is refused with 431 and its
   * connection closed, so every fact about a request (framing, headers, XFCC) comes from
   * one complete parse, well under Node's own limit of 1,000. Default 100.
   */
  readonly maxRequestHeaders: number;
  /** http mode: the local service's protocol. Default http1. */
  readonly upstream: UpstreamProtocol;
  /** Tunnels (ALPN svcca-tunnel/1): concurrent streams one tunnel may carry. Default 100. */
  readonly maxTunnelStreams: number;
  /** Tunnels open at once from one caller (SPIFFE ID). Default 8. */
  readonly maxTunnelsPerCaller: number;
}

/** auto: offer svcca-tunnel/1 and carry app connections as streams when the peer selects it; off: one mTLS connection per app connection. */
export type TunnelMode = 'auto' | 'off';

export interface OutboundConfig extends ConnectionLimits {
  readonly listen: Address;
  readonly connect: { readonly host: string; readonly port: number; readonly text: string };
  /** The exact SPIFFE ID the server must present. */
  readonly serverId: string;
  /**
   * ALPN protocols offered to the server's sidecar, e.g. [h2] for an app speaking h2c
   * (prior knowledge) to this listener: an http-mode inbound then serves it as HTTP/2.
   * Default: none offered (the inbound reads HTTP/1.1, or pipes bytes in tcp mode).
   */
  readonly alpn?: readonly ('h2' | 'http/1.1')[];
  /** Default auto; off when alpn is set (an app's HTTP/2 needs a connection of its own). */
  readonly tunnel: TunnelMode;
  /** Tunnel connections kept open to the target at most. Default 2. */
  readonly tunnelConnections: number;
}

/** `identity.renew`: the sidecar renews its own set through `svcca serve`. */
export interface RenewConfig {
  /** The CA server, https://HOST:PORT. */
  readonly ca: URL;
  /** Renew when less than this is left (default 33% of the lifetime). */
  readonly before: Threshold;
}

export interface IdentityConfig {
  readonly dir: string;
  /** A crl.pem path, or (with `crlUrl`) the URL's text, for messages. */
  readonly crl: string | undefined;
  /** Set when identity.crl is an https:// URL (a CA's /v1/crl.pem): fetched, not read from disk. */
  readonly crlUrl: URL | undefined;
  /** How often an https CRL is fetched (ETag makes an unchanged one cheap). Default 60s. */
  readonly crlIntervalMs: number;
  readonly renew: RenewConfig | undefined;
}

export interface SidecarConfig {
  /** The config file, for messages. */
  readonly source: string;
  readonly identity: IdentityConfig;
  readonly policy: string | undefined;
  readonly inbound: InboundConfig | undefined;
  readonly outbound: readonly OutboundConfig[];
  readonly admin: { readonly listen: Address } | undefined;
  /** Default info. */
  readonly logLevel: LogLevel;
  /** How long SIGTERM waits for open connections. Default 30s. */
  readonly shutdownGraceMs: number;
  /** How often identity, CRL and policy files are checked for changes. Default 2s. */
  readonly reloadIntervalMs: number;
  /**
   * How often every file is re-read and compared by content hash, for changes that leave
   * inode, size and mtime as they were (a copy that preserves mtime). Default 60s.
   */
  readonly reloadHashIntervalMs: number;
}

export const DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 3_600_000,
  maxConnections: 10_000,
  shutdownGraceMs: 30_000,
  reloadIntervalMs: 2_000,
  reloadHashIntervalMs: 60_000,
  crlIntervalMs: 60_000,
  upstreamTimeoutMs: 30_000,
  maxHandshakes: 1024,
  maxHandshakesPerAddress: 256,
  maxRequestHeaders: 100,
  maxTunnelStreams: 100,
  maxTunnelsPerCaller: 8,
  tunnelConnections: 2,
  logLevel: 'info' as LogLevel,
} as const;

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const MAX_STRING = 4096;
const MAX_OUTBOUND = 256;
/** 127.0.0.0/8, ::1 (also as ::ffff:127.x) and `localhost`: what only this host reaches. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || /^0{0,4}(:0{0,4}){6}:0{0,3}1$/.test(h)) return true;
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return v4 !== null && Number(v4[1]) === 127 && v4.slice(2).every((o) => Number(o) <= 255);
}

/** sockaddr_un.sun_path is 108 bytes on Linux, including the NUL. */
const MAX_UNIX_PATH = 107;

const KEYS = {
  root: ['identity', 'policy', 'inbound', 'outbound', 'admin', 'log', 'shutdown', 'reload'],
  identity: ['dir', 'crl', 'crlInterval', 'renew'],
  renew: ['ca', 'before'],
  inbound: [
    'listen',
    'forward',
    'mode',
    'handshakeTimeout',
    'idleTimeout',
    'maxConnections',
    'upstreamTimeout',
    'maxHandshakes',
    'maxHandshakesPerAddress',
    'maxRequestHeaders',
    'upstream',
    'maxTunnelStreams',
    'maxTunnelsPerCaller',
  ],
  outbound: ['listen', 'connect', 'serverId', 'tunnel', 'tunnelConnections', 'handshakeTimeout', 'idleTimeout', 'maxConnections', 'alpn'],
  admin: ['listen'],
  log: ['level'],
  shutdown: ['grace'],
  reload: ['interval', 'hashInterval'],
} as const;

export interface ConfigProblem {
  readonly message: string;
  readonly hint: string;
}

export interface ConfigResult {
  readonly config: SidecarConfig | undefined;
  readonly problems: readonly ConfigProblem[];
}

/** Throws the first problem as a ConfigError; see validateConfigText for all of them. */
export function parseConfig(text: string, source: string): SidecarConfig {
  const { config, problems } = validateConfigText(text, source);
  if (!config) {
    const first = problems[0]!;
    const more =
      problems.length > 1
        ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''}: run with --check to list them)`
        : '';
    throw new ConfigError(first.message, `${first.hint}${more}`);
  }
  return config;
}

/** Every problem in the config text; `config` is set only when there is none. */
export function validateConfigText(text: string, source: string): ConfigResult {
  let root: unknown;
  try {
    root = readConfigYaml(text, source);
  } catch (err) {
    if (err instanceof ConfigError) return { config: undefined, problems: [{ message: err.message, hint: err.hint }] };
    throw err;
  }
  const v = new Validator(source, dirname(resolve(source)));
  const config = v.root(root);
  return { config: v.problems.length === 0 ? config : undefined, problems: v.problems };
}

class Validator {
  readonly problems: ConfigProblem[] = [];
  constructor(
    private readonly source: string,
    private readonly baseDir: string,
  ) {}

  private fail(path: string, problem: string, hint: string): undefined {
    this.problems.push({ message: path ? `${this.source}: ${path}: ${problem}` : `${this.source}: ${problem}`, hint });
    return undefined;
  }

  private map(value: unknown, path: string, keys: readonly string[], example: string): Map<string, unknown> | undefined {
    if (!(value instanceof Map)) {
      return this.fail(path, `expected a map, got ${describe(value)}`, `write ${path}: then indented keys, e.g. ${example}`);
    }
    const out = new Map<string, unknown>();
    for (const [k, val] of value as Map<unknown, unknown>) {
      if (typeof k !== 'string') {
        this.fail(path, 'has a key that is not a plain name', `keys are ${keys.join(', ')}`);
        continue;
      }
      if (!keys.includes(k)) {
        const near = closestKey(k, keys);
        const key = path ? `${path}.${clip(k)}` : clip(k);
        this.fail(
          key,
          'unknown key',
          near ? `did you mean ${near}? (known: ${keys.join(', ')})` : `the known keys here are ${keys.join(', ')}`,
        );
        continue;
      }
      out.set(k, val);
    }
    return out;
  }

  private str(value: unknown, path: string, hint: string): string | undefined {
    if (typeof value !== 'string' || value.length === 0) return this.fail(path, `expected a string, got ${describe(value)}`, hint);
    if (value.length > MAX_STRING) return this.fail(path, `is ${value.length} characters long; the limit is ${MAX_STRING}`, hint);
    return value;
  }

  private filePath(value: unknown, path: string, hint: string): string | undefined {
    const s = this.str(value, path, hint);
    if (s === undefined) return undefined;
    if (s.includes('\0')) return this.fail(path, 'contains a NUL character', hint);
    // Relative paths are taken from the config file's folder, so a config and its
    // files can move together.
    return isAbsolute(s) ? s : resolve(this.baseDir, s);
  }

  /** An https:// URL of svcca serve (for identity.renew.ca and an https identity.crl). */
  private url(value: unknown, path: string): URL | undefined {
    const s = this.str(value, path, 'write it like https://ca.internal:9443');
    if (s === undefined) return undefined;
    try {
      const url = parseCaUrl(s, path);
      if (path === 'identity.crl' && url.pathname === '/') url.pathname = '/v1/crl.pem';
      return url;
    } catch (err) {
      return this.fail(
        path,
        (err as SvccaError).message.replace(`${path} `, ''),
        path === 'identity.crl' ? 'write it like https://ca.internal:9443/v1/crl.pem, or give a file path' : (err as SvccaError).hint,
      );
    }
  }

  private duration(value: unknown, path: string, fallback: number, minMs = 1): number {
    if (value === undefined) return fallback;
    const hint = 'write it like 500ms, 10s, 5m or 1h';
    const s = this.str(value, path, hint);
    if (s === undefined) return fallback;
    const ms = parseDurationMs(s);
    if (ms === undefined || ms <= 0) return this.fail(path, `expected a positive duration, got ${quote(s)}`, hint) ?? fallback;
    if (ms < minMs)
      return (
        this.fail(path, `${quote(s)} is shorter than ${formatDuration(minMs)}`, `use a duration of at least ${formatDuration(minMs)}`) ??
        fallback
      );
    if (ms > 7 * 86_400_000) return this.fail(path, `${quote(s)} is longer than a week`, 'use a duration of at most 7d') ?? fallback;
    return ms;
  }

  /** `alpn: [h2]` (or [h2, http/1.1]): the protocols an outbound offers, in order of preference. */
  private alpn(value: unknown, path: string): ('h2' | 'http/1.1')[] | undefined {
    const hint = 'write alpn: [h2] for an app that speaks h2c (HTTP/2 with prior knowledge) to this listener';
    if (!Array.isArray(value) || value.length === 0) return this.fail(path, `expected a list such as [h2], got ${describe(value)}`, hint);
    const out: ('h2' | 'http/1.1')[] = [];
    for (const item of value as unknown[]) {
      if (item !== 'h2' && item !== 'http/1.1')
        return this.fail(path, `${describe(item)} is not a protocol the sidecar speaks (h2, http/1.1)`, hint);
      if (!out.includes(item)) out.push(item);
    }
    return out;
  }

  private positiveInt(value: unknown, path: string, fallback: number, max: number): number {
    if (value === undefined) return fallback;
    const hint = `write a whole number between 1 and ${max}`;
    const s = this.str(value, path, hint);
    if (s === undefined) return fallback;
    if (!/^\d{1,9}$/.test(s) || Number(s) < 1 || Number(s) > max)
      return this.fail(path, `expected a whole number between 1 and ${max}, got ${quote(s)}`, hint) ?? fallback;
    return Number(s);
  }

  /**
   * `opts.local`: the address must be loopback (or a unix socket), with the reason a
   * wider one is refused. The plaintext side of the sidecar is only as private as that.
   */
  private address(value: unknown, path: string, opts: { listen: boolean; unix: boolean; local?: string }): Address | undefined {
    const forms = opts.unix ? 'host:port or unix:/path' : 'host:port';
    const hint = opts.unix ? `e.g. 127.0.0.1:8080 or unix:/run/app.sock` : 'e.g. payment.internal:8443';
    if (typeof value !== 'string') return this.fail(path, `expected ${forms}, got ${describe(value)}`, hint);
    if (value.startsWith('unix:')) {
      if (!opts.unix) return this.fail(path, `expected ${forms}, got ${quote(value)}`, 'a unix socket is not allowed here');
      const p = value.slice('unix:'.length);
      if (!p.startsWith('/'))
        return this.fail(path, `expected unix:/absolute/path, got ${quote(value)}`, 'give the socket an absolute path');
      if (Buffer.byteLength(p) > MAX_UNIX_PATH || p.includes('\0'))
        return this.fail(
          path,
          `socket path ${quote(value)} is longer than ${MAX_UNIX_PATH} bytes`,
          'use a shorter path (the kernel limits socket paths)',
        );
      return { kind: 'unix', path: p, text: value };
    }
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(value);
    if (!m) return this.fail(path, `expected ${forms}, got ${quote(value)}`, hint);
    const port = Number(m[2]);
    const minPort = opts.listen ? 0 : 1;
    if (port < minPort || port > 65535) return this.fail(path, `port ${m[2]} is out of range`, `use a port between ${minPort} and 65535`);
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
    if (opts.local !== undefined && !isLoopbackHost(host)) {
      return this.fail(
        path,
        `${quote(value)} is not a loopback address: ${opts.local}`,
        'use 127.0.0.1:PORT, [::1]:PORT or a unix:/path socket',
      );
    }
    return { kind: 'tcp', host, port, text: value };
  }

  root(value: unknown): SidecarConfig {
    const top = value === null || value === undefined || value === '' ? undefined : this.map(value, '', KEYS.root, 'identity:');
    if (value === null || value === undefined || value === '')
      this.fail('', 'is empty', 'a config needs at least identity.dir and one of inbound or outbound');
    const m = top ?? new Map<string, unknown>();

    let identity: IdentityConfig = { dir: '', crl: undefined, crlUrl: undefined, crlIntervalMs: DEFAULTS.crlIntervalMs, renew: undefined };
    if (!m.has('identity'))
      this.fail('identity', 'missing', 'add identity: with dir: <the credential set folder> (tls.crt, tls.key, ca.crt)');
    else {
      const im = this.map(m.get('identity'), 'identity', KEYS.identity, 'dir: /etc/svcca/payment-service');
      if (im) {
        const dir = im.has('dir')
          ? this.filePath(im.get('dir'), 'identity.dir', 'the folder holding tls.crt, tls.key and ca.crt')
          : this.fail('identity.dir', 'missing', 'name the folder holding tls.crt, tls.key and ca.crt');
        const rawCrl = im.get('crl');
        const crlUrl = typeof rawCrl === 'string' && /^[a-z]+:\/\//i.test(rawCrl) ? this.url(rawCrl, 'identity.crl') : undefined;
        const crl = crlUrl
          ? (rawCrl as string)
          : im.has('crl')
            ? this.filePath(rawCrl, 'identity.crl', 'the path of crl.pem (from ca-data/), or https://CA:PORT/v1/crl.pem')
            : undefined;
        const crlIntervalMs = this.duration(im.get('crlInterval'), 'identity.crlInterval', DEFAULTS.crlIntervalMs, 1_000);
        if (im.has('crlInterval') && !crlUrl)
          this.fail(
            'identity.crlInterval',
            'applies only to an https:// identity.crl',
            'remove it, or set identity.crl to https://CA:PORT/v1/crl.pem',
          );
        let renew: RenewConfig | undefined;
        if (im.has('renew')) {
          const rm = this.map(im.get('renew'), 'identity.renew', KEYS.renew, 'ca: https://ca.internal:9443');
          if (rm) {
            const ca = rm.has('ca')
              ? this.url(rm.get('ca'), 'identity.renew.ca')
              : this.fail('identity.renew.ca', 'missing', 'write ca: https://HOST:PORT (where svcca serve listens)');
            let before: Threshold | undefined;
            try {
              before = parseThreshold(rm.has('before') ? String(rm.get('before')) : DEFAULT_THRESHOLD, 'identity.renew.before');
            } catch (err) {
              this.fail(
                'identity.renew.before',
                (err as SvccaError).message.replace(/^identity\.renew\.before /, ''),
                (err as SvccaError).hint,
              );
            }
            if (ca && before) renew = { ca, before };
          }
        }
        identity = { dir: dir ?? '', crl, crlUrl, crlIntervalMs, renew };
      }
    }

    const policy = m.has('policy') ? this.filePath(m.get('policy'), 'policy', 'the path of the mesh policy YAML') : undefined;

    let inbound: InboundConfig | undefined;
    if (m.has('inbound')) {
      const im = this.map(m.get('inbound'), 'inbound', KEYS.inbound, 'listen: 0.0.0.0:8443');
      if (im) {
        const listen = im.has('listen')
          ? this.address(im.get('listen'), 'inbound.listen', { listen: true, unix: true })
          : this.fail('inbound.listen', 'missing', 'write listen: 0.0.0.0:8443');
        const forward = im.has('forward')
          ? this.address(im.get('forward'), 'inbound.forward', {
              listen: false,
              unix: true,
              local: 'the plaintext leg to the service would cross the network unauthenticated',
            })
          : this.fail('inbound.forward', 'missing', 'write forward: 127.0.0.1:8080 (where the service listens)');
        let mode: InboundMode = 'tcp';
        if (im.has('mode')) {
          const raw = im.get('mode');
          if (raw === 'tcp' || raw === 'http') mode = raw;
          else
            this.fail(
              'inbound.mode',
              `expected tcp or http, got ${describe(raw)}`,
              'write mode: tcp (bytes) or mode: http (per-request policy)',
            );
        }
        const upstreamTimeoutMs = this.duration(im.get('upstreamTimeout'), 'inbound.upstreamTimeout', DEFAULTS.upstreamTimeoutMs);
        const maxHandshakes = this.positiveInt(im.get('maxHandshakes'), 'inbound.maxHandshakes', DEFAULTS.maxHandshakes, 100_000);
        // Unset, it follows a lowered maxHandshakes down.
        const maxHandshakesPerAddress = this.positiveInt(
          im.get('maxHandshakesPerAddress'),
          'inbound.maxHandshakesPerAddress',
          Math.min(DEFAULTS.maxHandshakesPerAddress, maxHandshakes),
          100_000,
        );
        // Node keeps at most 1,000 header pairs in req.headers: the limit stays well under it.
        const maxRequestHeaders = this.positiveInt(
          im.get('maxRequestHeaders'),
          'inbound.maxRequestHeaders',
          DEFAULTS.maxRequestHeaders,
          500,
        );
        let upstream: UpstreamProtocol = 'http1';
        if (im.has('upstream')) {
          const raw = im.get('upstream');
          if (raw === 'http1' || raw === 'h2c') upstream = raw;
          else
            this.fail(
              'inbound.upstream',
              `expected http1 or h2c, got ${describe(raw)}`,
              'write upstream: http1 (HTTP/1.1) or upstream: h2c (cleartext HTTP/2, as gRPC servers listen)',
            );
          if (mode !== 'http')
            this.fail(
              'inbound.upstream',
              'applies to mode: http only',
              'set inbound.mode: http, or remove upstream (tcp mode forwards bytes)',
            );
        }
        const maxTunnelStreams = this.positiveInt(
          im.get('maxTunnelStreams'),
          'inbound.maxTunnelStreams',
          DEFAULTS.maxTunnelStreams,
          10_000,
        );
        const maxTunnelsPerCaller = this.positiveInt(
          im.get('maxTunnelsPerCaller'),
          'inbound.maxTunnelsPerCaller',
          DEFAULTS.maxTunnelsPerCaller,
          1_000,
        );
        const limits = this.limits(im, 'inbound');
        if (maxHandshakesPerAddress > maxHandshakes) {
          this.fail(
            'inbound.maxHandshakesPerAddress',
            `is ${maxHandshakesPerAddress}, above inbound.maxHandshakes (${maxHandshakes})`,
            'make it at most maxHandshakes',
          );
        }
        if (listen && forward) {
          inbound = {
            listen,
            forward,
            mode,
            upstreamTimeoutMs,
            maxHandshakes,
            maxHandshakesPerAddress,
            maxRequestHeaders,
            upstream,
            maxTunnelStreams,
            maxTunnelsPerCaller,
            ...limits,
          };
        }
      }
      if (!policy && !m.has('policy'))
        this.fail(
          'policy',
          'missing',
          'an inbound listener needs the mesh policy file (policy: /etc/svcca/policy.yaml); without one every caller would be refused',
        );
    }

    const outbound: OutboundConfig[] = [];
    if (m.has('outbound')) {
      const list = m.get('outbound');
      if (!Array.isArray(list))
        this.fail('outbound', `expected a list, got ${describe(list)}`, 'write one "- listen: …" entry per upstream service');
      else if (list.length > MAX_OUTBOUND)
        this.fail('outbound', `has ${list.length} entries; the limit is ${MAX_OUTBOUND}`, 'split the sidecar');
      else {
        list.forEach((entry: unknown, i: number) => {
          const path = `outbound[${i}]`;
          const om = this.map(entry, path, KEYS.outbound, 'listen: 127.0.0.1:15001');
          if (!om) return;
          const listen = om.has('listen')
            ? this.address(om.get('listen'), `${path}.listen`, {
                listen: true,
                unix: true,
                local: 'anything that reaches it could call out as this service without a credential',
              })
            : this.fail(`${path}.listen`, 'missing', 'write listen: 127.0.0.1:15001 or unix:/run/svcca/app.sock');
          const connect = om.has('connect')
            ? this.address(om.get('connect'), `${path}.connect`, { listen: false, unix: false })
            : this.fail(`${path}.connect`, 'missing', "write connect: <host>:<port> of the other service's sidecar");
          let serverId: string | undefined;
          if (!om.has('serverId'))
            this.fail(
              `${path}.serverId`,
              'missing',
              'write serverId: spiffe://<trust-domain>/<service>, the identity the server must present',
            );
          else {
            const s = this.str(om.get('serverId'), `${path}.serverId`, 'write serverId: spiffe://<trust-domain>/<service>');
            if (s !== undefined) {
              const parsed = parseSpiffeId(s);
              if (parsed.ok) serverId = s;
              else
                this.fail(
                  `${path}.serverId`,
                  `${quote(s)} is not a SPIFFE ID: ${parsed.reason}`,
                  'write serverId: spiffe://<trust-domain>/<service>',
                );
            }
          }
          const alpn = om.has('alpn') ? this.alpn(om.get('alpn'), `${path}.alpn`) : undefined;
          // An app's own HTTP/2 (alpn: [h2]) is served by the inbound on a connection of its
          // own; inside a tunnel stream the inbound reads HTTP/1.1 or bytes.
          let tunnel: TunnelMode = alpn ? 'off' : 'auto';
          if (om.has('tunnel')) {
            const raw = om.get('tunnel');
            if (raw === 'auto' || raw === 'off') tunnel = raw;
            else
              this.fail(
                `${path}.tunnel`,
                `expected auto or off, got ${describe(raw)}`,
                'write tunnel: auto (streams over a few warm mTLS connections when the peer is an svcca sidecar) or tunnel: off (one mTLS connection per app connection)',
              );
            if (raw === 'auto' && alpn)
              this.fail(
                `${path}.tunnel`,
                'auto cannot carry an app speaking HTTP/2 (alpn is set): its connection must reach the inbound as its own',
                'remove tunnel (it is off when alpn is set), or remove alpn',
              );
          }
          const tunnelConnections = this.positiveInt(
            om.get('tunnelConnections'),
            `${path}.tunnelConnections`,
            DEFAULTS.tunnelConnections,
            64,
          );
          const limits = this.limits(om, path);
          if (listen && connect && connect.kind === 'tcp' && serverId)
            outbound.push({ listen, connect, serverId, ...(alpn && { alpn }), tunnel, tunnelConnections, ...limits });
        });
      }
    }

    let admin: SidecarConfig['admin'];
    if (m.has('admin')) {
      const am = this.map(m.get('admin'), 'admin', KEYS.admin, 'listen: 127.0.0.1:15000');
      if (am) {
        const listen = am.has('listen')
          ? this.address(am.get('listen'), 'admin.listen', { listen: true, unix: true })
          : this.fail('admin.listen', 'missing', 'write listen: 127.0.0.1:15000');
        if (listen) admin = { listen };
      }
    }

    let logLevel: LogLevel = DEFAULTS.logLevel;
    if (m.has('log')) {
      const lm = this.map(m.get('log'), 'log', KEYS.log, 'level: info');
      if (lm?.has('level')) {
        const raw = lm.get('level');
        if (typeof raw === 'string' && (LOG_LEVELS as readonly string[]).includes(raw)) logLevel = raw as LogLevel;
        else
          this.fail(
            'log.level',
            `expected one of ${LOG_LEVELS.join(', ')}, got ${describe(raw)}`,
            'write level: info (debug also logs every allowed connection)',
          );
      }
    }
    let shutdownGraceMs: number = DEFAULTS.shutdownGraceMs;
    if (m.has('shutdown')) {
      const sm = this.map(m.get('shutdown'), 'shutdown', KEYS.shutdown, 'grace: 30s');
      if (sm) shutdownGraceMs = this.duration(sm.get('grace'), 'shutdown.grace', DEFAULTS.shutdownGraceMs);
    }
    let reloadIntervalMs: number = DEFAULTS.reloadIntervalMs;
    let reloadHashIntervalMs: number = DEFAULTS.reloadHashIntervalMs;
    if (m.has('reload')) {
      const rm = this.map(m.get('reload'), 'reload', KEYS.reload, 'interval: 2s');
      if (rm) {
        reloadIntervalMs = this.duration(rm.get('interval'), 'reload.interval', DEFAULTS.reloadIntervalMs);
        // Each hash check re-reads every file (a CRL can be megabytes): not more than once a second.
        reloadHashIntervalMs = this.duration(rm.get('hashInterval'), 'reload.hashInterval', DEFAULTS.reloadHashIntervalMs, 1_000);
      }
    }

    if (top && !inbound && outbound.length === 0 && !m.has('inbound') && !m.has('outbound')) {
      this.fail('', 'has neither inbound nor outbound', 'add inbound: (to accept calls) or outbound: (to make them), or both');
    }
    this.checkDistinctListeners(inbound, outbound, admin);
    return {
      source: this.source,
      identity,
      policy,
      inbound,
      outbound,
      admin,
      logLevel,
      shutdownGraceMs,
      reloadIntervalMs,
      reloadHashIntervalMs,
    };
  }

  private limits(m: Map<string, unknown>, path: string): ConnectionLimits {
    return {
      handshakeTimeoutMs: this.duration(m.get('handshakeTimeout'), `${path}.handshakeTimeout`, DEFAULTS.handshakeTimeoutMs),
      idleTimeoutMs: this.duration(m.get('idleTimeout'), `${path}.idleTimeout`, DEFAULTS.idleTimeoutMs),
      maxConnections: this.positiveInt(m.get('maxConnections'), `${path}.maxConnections`, DEFAULTS.maxConnections, 1_000_000),
    };
  }

  private checkDistinctListeners(
    inbound: InboundConfig | undefined,
    outbound: readonly OutboundConfig[],
    admin: SidecarConfig['admin'],
  ): void {
    const seen = new Map<string, string>();
    const add = (addr: Address | undefined, path: string) => {
      if (!addr) return;
      if (addr.kind === 'tcp' && addr.port === 0) return; // port 0: the kernel picks distinct ports
      const key = addr.kind === 'unix' ? `unix:${addr.path}` : `${addr.host}:${addr.port}`;
      const other = seen.get(key);
      if (other) this.fail(path, `${addr.text} is also ${other}`, 'give each listener its own address');
      else seen.set(key, path);
    };
    add(inbound?.listen, 'inbound.listen');
    outbound.forEach((o, i) => {
      add(o.listen, `outbound[${i}].listen`);
    });
    add(admin?.listen, 'admin.listen');
  }
}

function describe(value: unknown): string {
  if (value === null || value === undefined || value === '') return 'nothing';
  if (typeof value === 'string') return quote(value);
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Map) return 'a map';
  return typeof value;
}

function quote(s: string): string {
  return JSON.stringify(clip(s));
}

function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}
