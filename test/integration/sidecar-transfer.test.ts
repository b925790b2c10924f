/**
 * Bytes through the inbound proxy: a 10 MB upload and a 10 MB download with half-close
 * arrive intact (each direction finishes on its own); a download to a caller that keeps
 * stopping reading arrives intact (the service's bytes are read into one shared buffer,
 * net/shared-read.ts, which must be copied whenever the caller's socket has a queue); a
 * unix-socket `forward`; 200 concurrent callers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  useOrderPayment,
} from './sidecar-harness.js';

const TEN_MB = 10 * 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('sidecar transfers', () => {
  const pair = useOrderPayment();

  it('carries a 10 MB upload, then a 10 MB download, across half-close', async () => {
    const download = randomBytes(TEN_MB);
    let uploadHash = '';
    let uploadLen = 0;
    // The service reads the whole upload until the caller's FIN, and only then answers.
    const service: Server = createServer({ allowHalfOpen: true }, (s) => {
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => {
        h.update(d);
        uploadLen += d.length;
      });
      s.on('end', () => {
        uploadHash = h.digest('hex');
        s.end(download);
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
    pair.closers.push(() => new Promise((r) => service.close(r)));
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: `127.0.0.1:${(service.address() as { port: number }).port}` }),
      'half-close.yaml',
    );
    pair.closers.push(() => sidecar.stop());

    const upload = randomBytes(TEN_MB);
    const creds = credsFromDir(pair.order);
    const [host, port] = splitHostPort(sidecar.inbound!);
    const received = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = tlsConnect({
        host,
        port,
        cert: creds.cert,
        key: creds.key,
        ca: creds.ca,
        checkServerIdentity: () => undefined,
        allowHalfOpen: true,
      } as never);
      s.on('secureConnect', () => s.end(upload));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
    });
    assert.equal(uploadLen, TEN_MB);
    assert.equal(uploadHash, sha(upload));
    assert.equal(received.length, TEN_MB);
    assert.equal(sha(received), sha(download));
  });

  it('carries an 8 MB download intact to a caller that keeps stopping reading', async () => {
    const download = randomBytes(8 * 1024 * 1024);
    // The service writes in small pieces, one per turn of its event loop, so the sidecar
    // reads small chunks and keeps reading while its writes to the caller are queued.
    const service: Server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      let at = 0;
      const next = () => {
        while (at < download.length) {
          const piece = download.subarray(at, at + 3000);
          at += piece.length;
          if (!s.write(piece)) return void s.once('drain', next);
          if (at % 48_000 === 0) return void setImmediate(next);
        }
        s.end();
      };
      next();
    });
    await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
    pair.closers.push(() => new Promise((r) => service.close(r)));
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: `127.0.0.1:${(service.address() as { port: number }).port}` }),
      'slow-reader.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const creds = credsFromDir(pair.order);
    const [host, port] = splitHostPort(sidecar.inbound!);
    let pauses = 0;
    const received = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let sinceStop = 0;
      const s = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined } as never);
      // Every 256 KiB the caller stops reading long enough for the kernel buffers between
      // it and the sidecar to fill, so the sidecar's writes queue behind each other.
      s.on('data', (d: Buffer) => {
        chunks.push(d);
        sinceStop += d.length;
        if (sinceStop >= 256 * 1024) {
          sinceStop = 0;
          pauses++;
          s.pause();
          setTimeout(() => s.resume(), 15);
        }
      });
      s.on('end', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
    });
    assert.ok(pauses >= 30, `the caller stopped ${pauses} times`);
    assert.equal(received.length, download.length);
    assert.equal(sha(received), sha(download), 'the download arrived altered');
  });

  it('forwards to a unix socket', async () => {
    const path = join(pair.ca.root, 'payment.sock');
    const echo = await startEchoService('payment-unix', { path });
    pair.closers.push(() => echo.close());
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: `unix:${path}` }),
      'unix.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const r = await tlsExchange(sidecar.inbound!, credsFromDir(pair.order), { payload: 'over unix\n' });
    assert.equal(r.data, 'hello payment-unix\nover unix\n');
  });

  it('serves 200 concurrent callers', async () => {
    const echo = await startEchoService('payment');
    pair.closers.push(() => echo.close());
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: echo.address }),
      'concurrent.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const creds = credsFromDir(pair.order);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => tlsExchange(sidecar.inbound!, creds, { payload: `caller ${i}\n` })),
    );
    results.forEach((r, i) => {
      assert.equal(r.data, `hello payment\ncaller ${i}\n`, `caller ${i}: ${r.error ?? ''}`);
    });
    assert.equal(echo.connections(), 200);
  });
});
