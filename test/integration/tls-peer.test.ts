/**
 * peerLeafDer reads the peer's leaf out of the connection's encoded session. It must give
 * exactly the certificate getPeerCertificate(false).raw gives — the one OpenSSL verified —
 * on both ends, for full and resumed TLS 1.3 and TLS 1.2 handshakes, and nothing when the
 * client sent no certificate. Certificates from the real CLI, real sockets on 127.0.0.1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { peerLeafDer, sessionPeerDer } from '../../common/tls-peer.js';

interface Seen {
  readonly fromSession: Buffer | undefined;
  readonly fromLegacy: Buffer | undefined;
  readonly reused: boolean;
}

function seen(s: TLSSocket): Seen {
  return { fromSession: peerLeafDer(s), fromLegacy: (s.getPeerCertificate(false) as { raw?: Buffer }).raw, reused: s.isSessionReused() };
}

describe('peerLeafDer', () => {
  let ca: TestCa;
  let server: Server;
  let port: number;
  let serverSet: string;
  let clientSet: string;
  let otherSet: string;
  const serverSide: Seen[] = [];

  before(async () => {
    ca = makeCa();
    serverSet = ca.issue('peer-server', ['--ip', '127.0.0.1']);
    clientSet = ca.issue('peer-client');
    otherSet = ca.issue('peer-other');
    const file = (set: string, name: string) => readFileSync(join(set, name));
    server = createServer(
      {
        key: file(serverSet, 'tls.key'),
        cert: file(serverSet, 'tls.crt'),
        ca: file(serverSet, 'ca.crt'),
        requestCert: true,
        rejectUnauthorized: false,
        maxVersion: 'TLSv1.3',
      },
      (s) => {
        serverSide.push(seen(s));
        s.end('x');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  after(() => {
    server?.close();
    ca?.cleanup();
  });

  /** One connection; resolves with what the client saw once the server has answered. */
  function dial(
    opts: { set?: string; session?: Buffer; maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {},
  ): Promise<{ client: Seen; server: Seen; session: Buffer | undefined }> {
    const before = serverSide.length;
    return new Promise((resolve, reject) => {
      let session: Buffer | undefined;
      const s = connect({
        host: '127.0.0.1',
        port,
        ca: readFileSync(join(serverSet, 'ca.crt')),
        ...(opts.set ? { key: readFileSync(join(opts.set, 'tls.key')), cert: readFileSync(join(opts.set, 'tls.crt')) } : {}),
        ...(opts.session ? { session: opts.session } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
        checkServerIdentity: () => undefined,
      });
      s.on('session', (sess: Buffer) => (session = sess));
      let client: Seen | undefined;
      s.on('secureConnect', () => (client = seen(s)));
      s.on('error', reject);
      s.resume();
      s.on('close', () => {
        const srv = serverSide[before];
        if (!client || !srv) return reject(new Error('the connection ended before both ends were seen'));
        resolve({ client, server: srv, session: session ?? s.getSession() });
      });
    });
  }

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${maxVersion}: both ends read the leaf getPeerCertificate describes, full and resumed`, async () => {
      const full = await dial({ set: clientSet, maxVersion });
      assert.equal(full.server.reused, false);
      const clientLeaf = readFileSync(join(clientSet, 'tls.crt'), 'utf8');
      assert.ok(full.server.fromSession, 'the server read no client leaf');
      assert.deepEqual(full.server.fromSession, full.server.fromLegacy);
      assert.ok(clientLeaf.includes(full.server.fromSession.toString('base64').slice(0, 60)), 'not the client leaf the CLI issued');
      assert.ok(full.client.fromSession);
      assert.deepEqual(full.client.fromSession, full.client.fromLegacy);

      // Resumed: the session carries the peer; both ends still name the original leaf.
      assert.ok(full.session, 'no session to resume');
      const resumed = await dial({ set: clientSet, session: full.session, maxVersion });
      assert.equal(resumed.server.reused, true, 'the session was not resumed');
      assert.deepEqual(resumed.server.fromSession, full.server.fromSession);
      assert.deepEqual(resumed.server.fromSession, resumed.server.fromLegacy);
      // The client end of a resumed session saw no certificate on the wire, and
      // getPeerCertificate says nothing; the session still names the server leaf its
      // first handshake verified (the outbound judges a resumed session by isSessionReused).
      assert.equal(resumed.client.reused, true);
      assert.equal(resumed.client.fromLegacy, undefined);
      assert.deepEqual(resumed.client.fromSession, full.client.fromSession);
    });
  }

  it('another client certificate is read as that certificate', async () => {
    const a = await dial({ set: clientSet });
    const b = await dial({ set: otherSet });
    assert.ok(a.server.fromSession && b.server.fromSession);
    assert.notDeepEqual(a.server.fromSession, b.server.fromSession);
    assert.deepEqual(b.server.fromSession, b.server.fromLegacy);
  });

  it('no client certificate: undefined', async () => {
    const none = await dial({});
    assert.equal(none.server.fromSession, undefined);
    assert.equal(none.server.fromLegacy, undefined);
  });

  it('sessionPeerDer refuses what is not an encoded session with a peer', () => {
    assert.equal(sessionPeerDer(Buffer.alloc(0)), undefined);
    assert.equal(sessionPeerDer(Buffer.from('30030201', 'hex')), undefined); // truncated
    assert.equal(sessionPeerDer(Buffer.from('3003020101', 'hex')), undefined); // no [3]
    assert.equal(sessionPeerDer(Buffer.from('3005a303020101', 'hex')), undefined); // [3] without a certificate
    assert.equal(sessionPeerDer(Buffer.from('3007a3053003020101ff', 'hex')), undefined); // trailing byte
    assert.deepEqual(sessionPeerDer(Buffer.from('3007a3053003020101', 'hex')), Buffer.from('3003020101', 'hex'));
  });
});
