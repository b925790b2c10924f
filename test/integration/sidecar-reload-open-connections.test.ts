/**
 * Open connections are judged again, not only new ones (envoy#24111 is what happens
 * otherwise): a caller revoked by a new crl.pem, a caller the new policy no longer allows,
 * and a caller whose certificate reaches notAfter are each cut, with a refusal line
 * marked `open: true`; every other open connection keeps flowing. The files change with
 * the stat poll off, so the file watcher (CRL, policy) and the 1 s tick (notAfter) are
 * what notice.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  revokeSerials,
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import { eventually, svccaAsync, WATCH_ONLY } from './sidecar-reload-helpers.js';

interface OpenConn {
  readonly socket: TLSSocket;
  readonly closed: Promise<void>;
  received(): string;
}

describe('sidecar reload: open connections re-judged', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let policy: string;
  let sets: Record<string, string>;
  let order: OpenConn;
  const opened: OpenConn[] = [];

  async function openAs(set: string): Promise<OpenConn> {
    const creds = credsFromDir(set);
    const [host, port] = splitHostPort(sidecar.inbound!);
    const socket = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    const c = { socket, closed, received: () => data };
    opened.push(c);
    await eventually('greeting', () => (data.startsWith('hello payment\n') ? true : undefined));
    return c;
  }

  /** The long-lived caller is unaffected: it still gets its bytes echoed. */
  async function orderStillFlows(tag: string): Promise<void> {
    const before = order.received().length;
    order.socket.write(`${tag}\n`);
    await eventually(`echo of ${tag}`, () => (order.received().slice(before) === `${tag}\n` ? true : undefined));
  }

  before(async () => {
    ca = makeCa();
    const payment = ca.issue('payment-service');
    sets = {
      order: ca.issue('order-service'),
      leaked: ca.issue('leaked-service'),
      retired: ca.issue('retired-service'),
    };
    policy = writePolicy(
      ca.root,
      'services:\n  payment-service:\n    allow: [order-service, leaked-service, retired-service, brief-service]\n',
    );
    echo = await startEchoService('payment');
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: payment, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address, extra: WATCH_ONLY }),
    );
    order = await openAs(sets.order);
  });
  after(async () => {
    for (const c of opened) c.socket.destroy();
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  const cutLine = (peer: string) =>
    sidecar.waitForLine((l) => l.event === 'refused' && l.open === true && l.peer === `spiffe://example.org/${peer}`);

  it('closes a caller revoked by a new crl.pem', async () => {
    const conn = await openAs(sets.leaked!);
    await revokeSerials(ca, [serialOfSet(sets.leaked!)], TEST_PASSPHRASE);
    await conn.closed;
    const line = await cutLine('leaked-service');
    assert.equal(line.reason, 'revoked');
    await orderStillFlows('after-crl');
  });

  it('closes a caller the changed policy no longer allows', async () => {
    const conn = await openAs(sets.retired!);
    writeFileSync(policy, 'services:\n  payment-service:\n    allow: [order-service, brief-service]\n');
    await conn.closed;
    const line = await cutLine('retired-service');
    assert.equal(line.reason, 'policy-denied');
    await orderStillFlows('after-policy');
  });

  it('closes a caller whose certificate reaches notAfter', async () => {
    const out = join(ca.root, 'sets', 'brief-service');
    const r = await svccaAsync(ca.dir, ['issue', 'brief-service', '--ttl', '4s', '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    const conn = await openAs(out);
    await conn.closed;
    const line = await cutLine('brief-service');
    assert.equal(line.reason, 'expired');
    assert.match(String(line.detail), /closing the open connection/);
    await orderStillFlows('after-expiry');
    assert.equal(order.socket.destroyed, false);
  });
});
