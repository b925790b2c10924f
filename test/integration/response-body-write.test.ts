/**
 * writeResponsePiece (sidecar/proxy/response-body-write.ts) over a real TLS connection
 * with certificates the CLI issued: a piece handed over as a slice of a reused buffer
 * must reach the caller as it was when handed over, whether the caller's socket takes it
 * at once or is backed up. Each case overwrites the buffer right after the call, as the
 * next read of the local service would: a piece kept by reference would arrive altered.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir } from './sidecar-harness.js';
import { writeResponsePiece } from '../../sidecar/proxy/response-body-write.js';

const PIECES = 200;
const PIECE = 1000;

/** The bytes piece i carries: i repeated (and never the 0xee the buffer is overwritten with). */
function pieceValue(i: number): number {
  return i % 200;
}

describe('writeResponsePiece: a slice of a reused buffer reaches the caller unaltered', () => {
  let ca: TestCa;
  let server: Server;
  let port: number;
  let serve: (res: ServerResponse) => Promise<void>;
  let caPem: Buffer | string;

  before(async () => {
    ca = makeCa();
    const set = credsFromDir(ca.issue('inventory-service'));
    caPem = set.ca;
    server = createServer({ cert: set.cert, key: set.key }, (_req, res) => void serve(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  after(() => {
    server?.close();
    ca?.cleanup();
  });

  /** Writes the pieces from one scratch buffer, overwriting it after each; the last ends the response. */
  function pieces(res: ServerResponse): void {
    const tls = res.socket as TLSSocket;
    const scratch = Buffer.alloc(PIECE);
    for (let i = 0; i < PIECES; i++) {
      scratch.fill(pieceValue(i));
      // The last piece ends the response, as a Content-Length body's final bytes do.
      writeResponsePiece(res, tls, scratch, true, i === PIECES - 1);
      scratch.fill(0xee);
    }
  }

  function expected(lead: Buffer | undefined): string {
    const h = createHash('sha256');
    if (lead) h.update(lead);
    for (let i = 0; i < PIECES; i++) h.update(Buffer.alloc(PIECE, pieceValue(i)));
    return h.digest('hex');
  }

  /** GET /, waiting `holdMs` before reading anything: the body's sha256. */
  function download(holdMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca: caPem, checkServerIdentity: () => undefined });
      const h = createHash('sha256');
      let head: Buffer | undefined = Buffer.alloc(0);
      s.once('secureConnect', () => {
        s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        if (holdMs > 0) {
          s.pause();
          setTimeout(() => s.resume(), holdMs);
        }
      });
      s.on('data', (d: Buffer) => {
        if (head !== undefined) {
          head = Buffer.concat([head, d]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          d = head.subarray(end + 4);
          head = undefined;
        }
        h.update(d);
      });
      s.on('error', reject);
      s.on('close', () => resolve(h.digest('hex')));
    });
  }

  it('when the socket takes it at once (the write is corked by node:http until the next tick)', async () => {
    serve = async (res) => {
      res.writeHead(200, { 'content-length': PIECES * PIECE });
      // The head goes out first, so that the pieces find nothing queued.
      res.flushHeaders();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(res.writableLength, 0, 'precondition: nothing queued, the case this test is for');
      pieces(res);
    };
    assert.equal(await download(0), expected(undefined));
  });

  it('when the socket is backed up behind a caller that is not reading', async () => {
    const lead = randomBytes(24 * 1024 * 1024);
    serve = async (res) => {
      res.writeHead(200, { 'content-length': lead.length + PIECES * PIECE });
      res.write(lead);
      await new Promise((r) => setTimeout(r, 50));
      assert.ok(res.writableLength > 0, 'precondition: writes queued, the case this test is for');
      pieces(res);
    };
    assert.equal(await download(300), expected(lead));
  });
});
