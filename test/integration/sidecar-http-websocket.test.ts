/**
 * http mode passes a WebSocket upgrade through when the policy allows its path (the
 * service's 101 comes back, then bytes flow both ways), refuses it with 403 when the path
 * is denied (the service never sees it), and closes an open tunnel when a policy change
 * takes its path away. The handshake is written by hand: no WebSocket library needed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, linesFromNow, refusalFrom, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  expectedXfcc,
  headerValues,
  httpSidecarYaml,
  RawHttpConnection,
  startRecordingBackend,
  type RecordingBackend,
} from './sidecar-http-harness.js';

const POLICY = `services:
  inventory-service:
    allow:
      - from: notification-service
        methods: [GET]
        paths: [/ws/*]
`;

function upgradeRequest(path: string, key: string): string {
  return [
    `GET ${path} HTTP/1.1`,
    'Host: inventory.internal',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    'X-Forwarded-Client-Cert: By=forged',
    '',
    '',
  ].join('\r\n');
}

describe('sidecar http mode: WebSocket upgrades', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let notification: string;
  let policy: string;

  before(async () => {
    ca = makeCa();
    notification = ca.issue('notification-service');
    const inventory = ca.issue('inventory-service');
    policy = writePolicy(ca.root, POLICY);
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(ca.root, httpSidecarYaml({ setDir: inventory, policy, forward: backend.address }));
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  it('passes an allowed upgrade through and pipes bytes both ways', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      const key = randomBytes(16).toString('base64');
      const r = await c.send(upgradeRequest('/ws/../ws/feed', key));
      assert.equal(r.status, 101);
      assert.equal(r.headers.upgrade, 'websocket');
      assert.match(r.headers.connection ?? '', /upgrade/i);
      assert.equal(
        r.headers['sec-websocket-accept'],
        createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'),
      );
      const seen = backend.received.at(-1)!;
      assert.equal(seen.upgrade, true);
      assert.equal(seen.url, '/ws/feed', 'the service sees the normalized path');
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-client-cert'), [
        expectedXfcc('spiffe://example.org/inventory-service', notification, 'spiffe://example.org/notification-service'),
      ]);
      const payload = randomBytes(256 * 1024);
      c.write(payload);
      const echoed = await c.readBytes(payload.length);
      assert.ok(echoed.equals(payload), 'the tunnel corrupted bytes');
    } finally {
      c.close();
    }
  });

  it('refuses an upgrade to a denied path with 403, and the service never sees it', async () => {
    const seen = backend.received.length;
    const fresh = linesFromNow(sidecar);
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    const localPort = c.localPort; // gone once closed
    try {
      const r = await c.send(upgradeRequest('/admin/ws', randomBytes(16).toString('base64')));
      assert.equal(r.status, 403);
      assert.match(r.body.toString(), /no rule allows spiffe:\/\/example\.org\/notification-service to GET \/admin\/ws/);
      await c.waitClosed();
      assert.equal(backend.received.length, seen);
      const line = await sidecar.waitForLine(fresh(refusalFrom(localPort)));
      assert.equal(line.reason, 'policy-denied');
      assert.equal(line.path, '/admin/ws');
    } finally {
      c.close();
    }
  });

  it('refuses any upgrade but WebSocket (h2c would tunnel requests nobody judged), even on an allowed path', async () => {
    const seen = backend.received.length;
    const fresh = linesFromNow(sidecar);
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    const localPort = c.localPort;
    try {
      const r = await c.send(
        [
          'GET /ws/feed HTTP/1.1',
          'Host: inventory.internal',
          'Connection: Upgrade, HTTP2-Settings',
          'Upgrade: h2c',
          'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
          '',
          '',
        ].join('\r\n'),
      );
      assert.equal(r.status, 400);
      assert.match(r.body.toString(), /only WebSocket upgrades pass the sidecar, not "h2c"/);
      assert.equal(backend.received.length, seen, 'the service never saw it');
      const line = await sidecar.waitForLine(fresh(refusalFrom(localPort)));
      assert.equal(line.reason, 'bad-upgrade');
    } finally {
      c.close();
    }
  });

  it('closes an open tunnel when the policy no longer allows its path', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      const r = await c.send(upgradeRequest('/ws/live', randomBytes(16).toString('base64')));
      assert.equal(r.status, 101);
      c.write('ping');
      assert.equal((await c.readBytes(4)).toString(), 'ping');
      const seen = sidecar.lines.length;
      writeFileSync(policy, POLICY.replace('/ws/*', '/other'));
      sidecar.proc.kill('SIGHUP');
      await c.waitClosed(15_000);
      const line = await sidecar.waitForLine((l) => sidecar.lines.indexOf(l) >= seen && l.event === 'refused' && l.open === true);
      assert.equal(line.reason, 'policy-denied');
      assert.match(String(line.detail), /GET \/ws\/live/);
    } finally {
      c.close();
      writeFileSync(policy, POLICY);
    }
  });
});
