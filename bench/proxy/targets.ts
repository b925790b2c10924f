/**
 * The targets the client is pointed at, each started from the same certificates (made by
 * the real `svcca` CLI) and forwarding to the same local service:
 *
 *   direct        the service itself, plaintext (the baseline)
 *   floor         plain-node-proxy.ts: node:tls + net.connect + pipe, the plain-Node floor
 *   svcca-tcp     svcca-sidecar, inbound mode tcp
 *   svcca-http    svcca-sidecar, inbound mode http (when the sidecar accepts it)
 *   svcca-tcp-load  svcca-sidecar, mode tcp, with a 10,000-entry CRL and a 1,000-service policy
 *   floor-mesh, svcca-mesh  app → outbound proxy (plaintext in) → inbound proxy → service:
 *                 plain-node outbound → floor, and svcca-sidecar outbound → svcca-tcp
 *   haproxy       mode tcp, `verify required` against ca.crt          (if installed)
 *   nginx         stream module, `ssl_verify_client on` against ca.crt (if installed)
 *   stunnel       `verifyChain`/`requireCert` against ca.crt           (if installed)
 *   s_server      `openssl s_server -Verify`: handshakes only, it serves files itself
 *
 * Peers get one worker (nginx worker_processes 1, HAProxy nbthread 1) to match the
 * single-threaded sidecar; stunnel keeps its thread per connection. They check the chain
 * only, not the SPIFFE ID, the CRL or a policy, which the sidecar does on every connection.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { processTree } from './procfs.js';
import { binaryNodeFlags, exitWithin, freePort, runCommand, spawnLogged, stopChild, tail, waitListening, which } from './processes.js';

export type TargetId =
  | 'direct'
  | 'floor'
  | 'svcca-tcp'
  | 'svcca-http'
  | 'svcca-tcp-load'
  | 'haproxy'
  | 'nginx'
  | 'stunnel'
  | 's_server'
  | 'floor-mesh'
  | 'svcca-mesh';

export const TARGET_LABEL: Record<TargetId, string> = {
  direct: 'direct',
  floor: 'node floor',
  'svcca-tcp': 'svcca tcp',
  'svcca-http': 'svcca http',
  'svcca-tcp-load': 'tcp+10k CRL',
  'floor-mesh': 'floor mesh',
  'svcca-mesh': 'svcca mesh',
  haproxy: 'haproxy',
  nginx: 'nginx',
  stunnel: 'stunnel',
  s_server: 's_server',
};

export const PEERS: readonly TargetId[] = ['haproxy', 'nginx', 'stunnel'];

export interface Pki {
  readonly dir: string;
  /** The server's credential set (tls.crt = leaf + intermediate, tls.key, ca.crt = root). */
  readonly server: { readonly dir: string; readonly crt: string; readonly key: string; readonly ca: string };
  readonly client: { readonly dir: string; readonly crt: string; readonly key: string; readonly ca: string };
  /** A copy of crl.pem as `svcca init` wrote it (no revocations): what the plain targets load. */
  readonly crl: string;
  readonly policy: string;
  readonly trustDomain: string;
  /** Split files for tools that want them. */
  readonly leaf: string;
  readonly intermediate: string;
  /** cert + key in one file (HAProxy). */
  readonly combined: string;
  /** root + intermediate: s_time sends only its leaf and builds the chain from -CAfile. */
  readonly bundle: string;
}

export interface Target {
  readonly id: TargetId;
  readonly port: number;
  readonly tls: boolean;
  readonly version: string;
  readonly child: ChildProcess | undefined;
  readonly log: string;
  /** The process tree to measure (empty for direct: the service is not a proxy). */
  pids(): number[];
  stop(): Promise<void>;
}

export type Started = { ok: true; target: Target } | { ok: false; id: TargetId; skipped: boolean; reason: string };

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** Writes the split files the peers need, from the credential sets the CLI wrote. */
export function preparePki(dir: string, serverDir: string, clientDir: string, caDir: string, policy: string, trustDomain: string): Pki {
  const crt = readFileSync(join(serverDir, 'tls.crt'), 'utf8');
  const key = readFileSync(join(serverDir, 'tls.key'), 'utf8');
  const ca = readFileSync(join(serverDir, 'ca.crt'), 'utf8');
  const [leaf, intermediate] = pemBlocks(crt);
  if (!leaf || !intermediate) throw new Error(`${serverDir}/tls.crt: expected leaf then intermediate`);
  const files = {
    leaf: join(dir, 'server-leaf.pem'),
    intermediate: join(dir, 'intermediate.pem'),
    combined: join(dir, 'server-combined.pem'),
    bundle: join(dir, 'root-and-intermediate.pem'),
  };
  writeFileSync(files.leaf, leaf);
  writeFileSync(files.intermediate, intermediate);
  writeFileSync(files.combined, `${crt.trimEnd()}\n${key}`, { mode: 0o600 });
  writeFileSync(files.bundle, `${ca.trimEnd()}\n${intermediate}`);
  const crl = join(dir, 'crl-plain.pem');
  copyFileSync(join(caDir, 'crl.pem'), crl);
  return {
    dir,
    server: { dir: serverDir, crt: join(serverDir, 'tls.crt'), key: join(serverDir, 'tls.key'), ca: join(serverDir, 'ca.crt') },
    client: { dir: clientDir, crt: join(clientDir, 'tls.crt'), key: join(clientDir, 'tls.key'), ca: join(clientDir, 'ca.crt') },
    crl,
    policy,
    trustDomain,
    ...files,
  };
}

function target(
  id: TargetId,
  port: number,
  child: ChildProcess | undefined,
  log: string,
  version: string,
  measure = true,
  also: readonly Target[] = [],
): Target {
  return {
    id,
    port,
    tls: id !== 'direct' && !id.endsWith('-mesh'),
    version,
    child,
    log,
    // A mesh path is measured as both of its proxies: the outbound here and the inbound it feeds.
    pids: () => [...(measure && child?.pid ? processTree(child.pid) : []), ...also.flatMap((t) => t.pids())],
    stop: () => (child ? stopChild(child) : Promise.resolve()),
  };
}

async function failed(id: TargetId, child: ChildProcess, log: string, what: string): Promise<Started> {
  await stopChild(child);
  return { ok: false, id, skipped: false, reason: `${what} did not start: ${tail(log, 3).replace(/\n/g, ' | ') || 'no output'}` };
}

/** The direct baseline: the service the proxies forward to. */
export function directTarget(servicePort: number, child: ChildProcess, log: string): Target {
  return target('direct', servicePort, child, log, `node ${process.version} http`, false);
}

function readyz(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/readyz', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

export async function startSidecar(
  mode: 'tcp' | 'http',
  pki: Pki,
  servicePort: number,
  sidecarBin: string,
  variant?: { id: TargetId; crl: string; policy: string; note: string },
): Promise<Started> {
  const id: TargetId = variant?.id ?? (mode === 'tcp' ? 'svcca-tcp' : 'svcca-http');
  const port = await freePort();
  const admin = await freePort();
  const config = join(pki.dir, `sidecar-${id}.yaml`);
  const log = join(pki.dir, `sidecar-${id}.log`);
  writeFileSync(
    config,
    [
      'identity:',
      `  dir: ${pki.server.dir}`,
      `  crl: ${variant?.crl ?? pki.crl}`,
      `policy: ${variant?.policy ?? pki.policy}`,
      'inbound:',
      `  listen: 127.0.0.1:${port}`,
      `  forward: 127.0.0.1:${servicePort}`,
      `  mode: ${mode}`,
      'admin:',
      `  listen: 127.0.0.1:${admin}`,
      '',
    ].join('\n'),
  );
  const child = spawnLogged(process.execPath, [...binaryNodeFlags(sidecarBin), sidecarBin, '--config', config], { log, pin: 'proxy' });
  if (mode === 'http') {
    // The sidecar refuses a mode it does not implement at start-up: one line, exit 1.
    const code = await exitWithin(child, 1500);
    if (code !== undefined) {
      const line = tail(log, 1);
      return {
        ok: false,
        id,
        skipped: true,
        reason:
          /http/i.test(line) && /not (implemented|available|supported)/i.test(line)
            ? `not available yet (${line})`
            : `refused the config: ${line}`,
      };
    }
  }
  if (!(await waitListening(port, child))) return failed(id, child, log, `svcca-sidecar (mode ${mode})`);
  for (let i = 0; i < 50 && !(await readyz(admin)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await readyz(admin))) return failed(id, child, log, `svcca-sidecar (mode ${mode}) /readyz`);
  return { ok: true, target: target(id, port, child, log, `svcca-sidecar, node ${process.version}${variant ? `, ${variant.note}` : ''}`) };
}

/**
 * The mesh path's outbound half: a second svcca-sidecar with the bench-client set and one
 * `outbound:` entry (plaintext listener on 127.0.0.1) to `inbound` with serverId bench-server.
 */
export async function startSidecarOutbound(pki: Pki, inbound: Target, sidecarBin: string): Promise<Started> {
  const id: TargetId = 'svcca-mesh';
  const port = await freePort();
  const admin = await freePort();
  const config = join(pki.dir, 'sidecar-outbound.yaml');
  const log = join(pki.dir, 'sidecar-outbound.log');
  writeFileSync(
    config,
    [
      'identity:',
      `  dir: ${pki.client.dir}`,
      `  crl: ${pki.crl}`,
      'outbound:',
      `  - listen: 127.0.0.1:${port}`,
      `    connect: 127.0.0.1:${inbound.port}`,
      `    serverId: spiffe://${pki.trustDomain}/bench-server`,
      'admin:',
      `  listen: 127.0.0.1:${admin}`,
      '',
    ].join('\n'),
  );
  const child = spawnLogged(process.execPath, [...binaryNodeFlags(sidecarBin), sidecarBin, '--config', config], { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed(id, child, log, 'svcca-sidecar (outbound)');
  for (let i = 0; i < 50 && !(await readyz(admin)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await readyz(admin))) return failed(id, child, log, 'svcca-sidecar (outbound) /readyz');
  return { ok: true, target: target(id, port, child, log, `svcca-sidecar outbound → ${TARGET_LABEL[inbound.id]}`, true, [inbound]) };
}

/** The plain-Node floor (plain-node-proxy.ts): inbound in front of the service. */
export async function startFloor(pki: Pki, servicePort: number, script: string): Promise<Started> {
  const port = await freePort();
  const log = join(pki.dir, 'floor.log');
  const args = [
    script,
    'inbound',
    '--listen',
    String(port),
    '--forward',
    String(servicePort),
    '--dir',
    pki.server.dir,
    '--peer-id',
    `spiffe://${pki.trustDomain}/bench-client`,
  ];
  const child = spawnLogged(process.execPath, args, { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed('floor', child, log, 'plain-node-proxy inbound');
  return { ok: true, target: target('floor', port, child, log, `node ${process.version} tls.createServer + net.connect + pipe`) };
}

/** The floor's mesh path: plain-node outbound (bench-client set) → the floor inbound. */
export async function startFloorOutbound(pki: Pki, inbound: Target, script: string): Promise<Started> {
  const port = await freePort();
  const log = join(pki.dir, 'floor-outbound.log');
  const args = [
    script,
    'outbound',
    '--listen',
    String(port),
    '--connect',
    String(inbound.port),
    '--dir',
    pki.client.dir,
    '--peer-id',
    `spiffe://${pki.trustDomain}/bench-server`,
  ];
  const child = spawnLogged(process.execPath, args, { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed('floor-mesh', child, log, 'plain-node-proxy outbound');
  return {
    ok: true,
    target: target('floor-mesh', port, child, log, `node ${process.version} net.createServer + tls.connect + pipe → node floor`, true, [
      inbound,
    ]),
  };
}

export async function startHaproxy(pki: Pki, servicePort: number): Promise<Started> {
  const bin = await which('haproxy');
  if (!bin) return { ok: false, id: 'haproxy', skipped: true, reason: 'not installed (apt-get install haproxy)' };
  const port = await freePort();
  const cfg = join(pki.dir, 'haproxy.cfg');
  const log = join(pki.dir, 'haproxy.log');
  writeFileSync(
    cfg,
    `global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend bench
  bind 127.0.0.1:${port} ssl crt ${pki.combined} ca-file ${pki.server.ca} verify required
  default_backend service
backend service
  server s1 127.0.0.1:${servicePort}
`,
  );
  const version =
    (await runCommand(bin, ['-v'], { timeoutMs: 5000 })).stdout
      .split('\n')[0]
      ?.replace(/^HAProxy version (\S+?)(-\S+)? .*$/, 'HAProxy $1') ?? 'haproxy';
  const child = spawnLogged(bin, ['-db', '-f', cfg], { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed('haproxy', child, log, 'haproxy');
  return { ok: true, target: target('haproxy', port, child, log, version) };
}

const NGINX_STREAM_MODULES = [
  '/usr/lib/nginx/modules/ngx_stream_module.so',
  '/usr/lib64/nginx/modules/ngx_stream_module.so',
  '/usr/share/nginx/modules/ngx_stream_module.so',
  '/etc/nginx/modules/ngx_stream_module.so',
];

export async function startNginx(pki: Pki, servicePort: number): Promise<Started> {
  const bin = await which('nginx');
  if (!bin) return { ok: false, id: 'nginx', skipped: true, reason: 'not installed (apt-get install nginx libnginx-mod-stream)' };
  const info = await runCommand(bin, ['-V'], { timeoutMs: 5000 });
  const flags = info.stderr + info.stdout;
  const version = /nginx version: nginx\/(\S+)/.exec(flags)?.[1] ?? '';
  let loadModule = '';
  if (/--with-stream=dynamic/.test(flags)) {
    const mod = NGINX_STREAM_MODULES.find((m) => existsSync(m));
    if (!mod)
      return { ok: false, id: 'nginx', skipped: true, reason: 'installed without its stream module (apt-get install libnginx-mod-stream)' };
    loadModule = `load_module ${mod};\n`;
  } else if (!/--with-stream(\s|$)/.test(flags)) {
    return { ok: false, id: 'nginx', skipped: true, reason: 'built without the stream module' };
  }
  const port = await freePort();
  const cfg = join(pki.dir, 'nginx.conf');
  const log = join(pki.dir, 'nginx.log');
  writeFileSync(
    cfg,
    `${loadModule}worker_processes 1;
daemon off;
pid ${join(pki.dir, 'nginx.pid')};
error_log ${log} warn;
events { worker_connections 10000; }
stream {
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${pki.server.crt};
    ssl_certificate_key ${pki.server.key};
    ssl_client_certificate ${pki.server.ca};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:${servicePort};
  }
}
`,
  );
  const child = spawnLogged(bin, ['-p', pki.dir, '-c', cfg, '-e', log], { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed('nginx', child, log, 'nginx');
  return { ok: true, target: target('nginx', port, child, log, `nginx ${version}`) };
}

export async function startStunnel(pki: Pki, servicePort: number): Promise<Started> {
  const bin = (await which('stunnel')) ?? (await which('stunnel4'));
  if (!bin) return { ok: false, id: 'stunnel', skipped: true, reason: 'not installed (apt-get install stunnel4)' };
  const port = await freePort();
  const cfg = join(pki.dir, 'stunnel.conf');
  const log = join(pki.dir, 'stunnel.log');
  writeFileSync(
    cfg,
    `foreground = yes
pid =
output = ${log}
debug = 4
[bench]
accept = 127.0.0.1:${port}
connect = 127.0.0.1:${servicePort}
cert = ${pki.server.crt}
key = ${pki.server.key}
CAfile = ${pki.server.ca}
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.2
`,
  );
  const v = await runCommand(bin, ['-version'], { timeoutMs: 5000 });
  const version = /stunnel \S+/.exec(v.stderr + v.stdout)?.[0] ?? 'stunnel';
  const child = spawnLogged(bin, [cfg], { log, pin: 'proxy' });
  if (!(await waitListening(port, child))) return failed('stunnel', child, log, 'stunnel');
  return { ok: true, target: target('stunnel', port, child, log, version) };
}

/** The HTTP/1.0 response `openssl s_server -HTTP` sends for GET /small: the same 64-byte body. */
export function writeSServerFiles(dir: string, body: Buffer): void {
  writeFileSync(
    join(dir, 'small'),
    Buffer.concat([Buffer.from(`HTTP/1.0 200 ok\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), body]),
  );
}

export async function startSServer(pki: Pki, body: Buffer): Promise<Started> {
  const bin = await which('openssl');
  if (!bin) return { ok: false, id: 's_server', skipped: true, reason: 'openssl is not installed' };
  const port = await freePort();
  const www = join(pki.dir, 's_server-www');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(www, { recursive: true });
  writeSServerFiles(www, body);
  const log = join(pki.dir, 's_server.log');
  const version = (await runCommand(bin, ['version'], { timeoutMs: 5000 })).stdout.trim().replace(/ \(Library.*/, '');
  const child = spawnLogged(
    bin,
    [
      's_server',
      '-accept',
      `127.0.0.1:${port}`,
      '-cert',
      pki.leaf,
      '-cert_chain',
      pki.intermediate,
      '-key',
      pki.server.key,
      '-CAfile',
      pki.server.ca,
      '-Verify',
      '2',
      '-verify_return_error',
      '-HTTP',
      '-quiet',
    ],
    { log, cwd: www, pin: 'proxy' },
  );
  if (!(await waitListening(port, child))) return failed('s_server', child, log, 'openssl s_server');
  return { ok: true, target: target('s_server', port, child, log, version) };
}
