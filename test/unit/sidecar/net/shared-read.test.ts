/**
 * net/shared-read.ts: a plain socket read into one shared buffer and written to a TLS
 * socket. The buffer is overwritten by the next read, so whatever the TLS socket has not
 * taken yet must have been copied: here the TLS peer stops reading until its buffers are
 * full, while the plain side keeps sending small pieces (small reads, each written while
 * earlier writes are still queued). Every byte must arrive as sent.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as netServer, type Server as NetServer } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { createRootCa, issueCert } from '../../../helpers/attacker-ca.js';
import { dialSharedRead, isSharedRead, pipeSharedRead } from '../../../../sidecar/net/shared-read.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const portOf = (s: NetServer) => (s.address() as { port: number }).port;

describe('shared-buffer reads into a TLS socket', () => {
  let tlsOpts: { cert: string; key: string; ca: string };
  const servers: NetServer[] = [];
  before(async () => {
    const root = await createRootCa('shared-read test root');
    const leaf = await issueCert(root, { cn: 'localhost', ips: ['127.0.0.1'] });
    tlsOpts = { cert: leaf.chainPem, key: leaf.keyPem, ca: root.certPem };
  });
  after(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
  });

  it('delivers every byte in order when the TLS reader keeps stopping', async () => {
    const payload = randomBytes(24 * 1024 * 1024);
    // The plain side: one 1,000-byte piece per turn of the event loop, so the sidecar's
    // reads stay small while it keeps reading: when the TLS side blocks, the next small
    // reads are written behind a queued one (its write still returns true), whatever the
    // machine's speed. (Sending a few pieces per turn let a fast sender build a backlog
    // that was read 64 KiB at a time, each such write returning false, and on CI's machine
    // no write was ever queued behind another.)
    const source = netServer((s) => {
      s.on('error', () => undefined);
      let at = 0;
      const next = () => {
        if (at >= payload.length) return void s.end();
        const piece = payload.subarray(at, at + 1000);
        at += piece.length;
        if (!s.write(piece)) return void s.once('drain', next);
        setImmediate(next);
      };
      next();
    });
    servers.push(source);
    await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
    // The TLS side's far end: stops reading for a while every 4 MiB (the first time long
    // enough for the kernel's buffers behind it to fill, whatever their size).
    let stops = 0;
    let queuedWrites = 0;
    const received = new Promise<Buffer>((resolve, reject) => {
      const sink: TlsServer = tlsServer({ cert: tlsOpts.cert, key: tlsOpts.key }, (s) => {
        const chunks: Buffer[] = [];
        let since = 0;
        s.on('data', (d: Buffer) => {
          chunks.push(d);
          since += d.length;
          if (since >= 4 * 1024 * 1024) {
            since = 0;
            stops++;
            s.pause();
            setTimeout(() => s.resume(), stops === 1 ? 600 : 150);
          }
        });
        s.on('end', () => resolve(Buffer.concat(chunks)));
        s.on('error', reject);
      });
      servers.push(sink);
      sink.listen(0, '127.0.0.1', () => {
        const dest: TLSSocket = tlsConnect({ host: '127.0.0.1', port: portOf(sink), ca: tlsOpts.ca }, () => {
          // Counts the writes made while earlier ones were still queued: the case under test.
          const write = dest.write.bind(dest) as (chunk: Buffer) => boolean;
          dest.write = ((chunk: Buffer) => {
            if (dest.writableLength > 0) queuedWrites++;
            return write(chunk);
          }) as typeof dest.write;
          const plain = dialSharedRead({ kind: 'tcp', host: '127.0.0.1', port: portOf(source), text: `127.0.0.1:${portOf(source)}` });
          assert.ok(isSharedRead(plain));
          plain.on('error', reject);
          // The test's stand-in for pipe.ts's other direction: nothing flows that way.
          plain.on('end', () => plain.end());
          plain.once('connect', () => pipeSharedRead(plain, dest));
        });
        dest.on('error', reject);
      });
    });
    const got = await received;
    assert.ok(stops >= 5, `the reader stopped ${stops} times`);
    assert.ok(queuedWrites > 0, 'no write was made while others were queued: the test did not reach the case it is for');
    assert.equal(got.length, payload.length);
    assert.equal(sha(got), sha(payload), 'the bytes arrived altered');
  });
});
