/**
 * No TLS 1.2 renegotiation inbound: a caller judged at the handshake must not swap its
 * certificate (or anything else) afterwards. The connection is cut and nothing sent
 * after the attempt reaches the service.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';

describe('sidecar: TLS renegotiation', () => {
  let ca: TestCa;
  let order: string;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const payment = ca.issue('payment-service');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: payment, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  it('a client-initiated renegotiation cuts the connection; bytes after it never arrive', async () => {
    const [host, port] = splitHostPort(sidecar.inbound!);
    const creds = credsFromDir(order);
    const result = await new Promise<{ data: string; renegotiated: boolean | undefined }>((resolve) => {
      let data = '';
      let renegotiated: boolean | undefined;
      const s = tlsConnect({
        host,
        port,
        ...creds,
        maxVersion: 'TLSv1.2',
        rejectUnauthorized: false,
        checkServerIdentity: () => undefined,
      });
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        data += d;
        if (data.includes('before\n') && renegotiated === undefined) {
          renegotiated = false;
          s.renegotiate({ rejectUnauthorized: false }, (err) => {
            renegotiated = !err;
            // Whatever the outcome, try to send more: it must not reach the service.
            if (!s.destroyed) s.write('after\n');
            setTimeout(() => s.destroy(), 1500);
          });
        }
      });
      s.on('secureConnect', () => s.write('before\n'));
      s.on('error', () => undefined);
      s.on('close', () => resolve({ data, renegotiated }));
      s.setTimeout(15_000, () => s.destroy());
    });
    assert.match(result.data, /hello payment\nbefore\n/, 'the connection worked before the attempt');
    assert.notEqual(result.renegotiated, true, 'the renegotiation succeeded');
    assert.doesNotMatch(result.data, /after/, 'bytes sent after the renegotiation attempt reached the service');
  });
});
