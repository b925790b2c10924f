/**
 * The plain-Node floor: what a Node process costs when it does the sidecar's job with
 * nothing else — `node:tls` + `net.connect` + `pipe`. The sidecar's ratio columns are
 * measured against this (issue 12). Deliberately no CRL, no policy file, no metrics, no
 * logging, no reload: only the checks a minimal mTLS proxy cannot skip.
 *
 *   inbound   mTLS in (requestCert + rejectUnauthorized against ca.crt; the leaf must carry
 *             exactly one URI SAN, equal to --peer-id), plaintext to --forward
 *   outbound  plaintext in, mTLS out to --connect with the given credential set; the server
 *             must present exactly one URI SAN equal to --peer-id (no host-name check)
 *
 * setNoDelay(true) on every socket: without it Nagle + delayed ACK hold a new connection's
 * first small write ~40 ms (../../shared/FACTS.md), and a floor that had that bug would
 * flatter the sidecar.
 *
 * Usage: node plain-node-proxy.js inbound|outbound --listen PORT --forward|--connect PORT --dir SET_DIR --peer-id ID
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect, createServer as netServer, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, createServer as tlsServer, type ConnectionOptions, type TLSSocket } from 'node:tls';

const argv = process.argv.slice(2);
const opt = (name: string): string => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0 || !argv[i + 1]) throw new Error(`missing --${name}`);
  return argv[i + 1]!;
};
const mode = argv[0];
const dir = opt('dir');
const peerId = opt('peer-id');
const creds = { cert: readFileSync(join(dir, 'tls.crt')), key: readFileSync(join(dir, 'tls.key')), ca: readFileSync(join(dir, 'ca.crt')) };

/**
 * Node writes `URI:a, URI:b, DNS:c`; an ID holding ", " would fool this split: enough for a
 * floor. getPeerCertificate, not getPeerX509Certificate, which keeps native memory per
 * connection on Node 20 (common/tls-peer.ts): the floor must not carry a leak svcca avoids.
 */
const hasOnlyId = (s: TLSSocket) => {
  const uris = ((s.getPeerCertificate(false) as { subjectaltname?: string }).subjectaltname ?? '')
    .split(', ')
    .filter((n) => n.startsWith('URI:'));
  return uris.length === 1 && uris[0] === `URI:${peerId}`;
};

function join2(a: Socket, b: Socket): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

const ready = (port: number) => () => process.stdout.write(`ready ${port}\n`);
const listen = Number(opt('listen'));
if (mode === 'inbound') {
  const forward = Number(opt('forward'));
  const server = tlsServer({ ...creds, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', allowHalfOpen: true }, (s) => {
    if (!hasOnlyId(s)) return void s.destroy();
    join2(s, netConnect({ host: '127.0.0.1', port: forward, allowHalfOpen: true }));
  });
  server.on('tlsClientError', () => {});
  server.listen(listen, '127.0.0.1', ready(listen));
} else if (mode === 'outbound') {
  const target = Number(opt('connect'));
  const context = createSecureContext(creds); // once, not per connection
  // Resumption as the sidecar does it: a ticket is kept only from a server whose ID was checked
  // (a resumed client session has no peer certificate to check again).
  let ticket: Buffer | undefined;
  netServer({ allowHalfOpen: true }, (app) => {
    app.pause();
    const up = tlsConnect({
      host: '127.0.0.1',
      port: target,
      secureContext: context,
      session: ticket,
      checkServerIdentity: () => undefined,
      allowHalfOpen: true,
    } as ConnectionOptions);
    let checked = false;
    up.on('session', (t: Buffer) => {
      if (checked) ticket = t;
    });
    up.once('secureConnect', () => {
      checked = up.isSessionReused() || hasOnlyId(up);
      if (checked) {
        join2(app, up);
        app.resume();
      } else {
        up.destroy();
        app.destroy();
      }
    });
    up.once('error', () => app.destroy());
  }).listen(listen, '127.0.0.1', ready(listen));
} else throw new Error('usage: plain-node-proxy.js inbound|outbound ...');
process.on('SIGTERM', () => process.exit(0));
