/**
 * Reload under traffic (ghostunnel#253: a reload that drops connections is an outage).
 * For about a minute, at once: one stream runs through the sidecar across ten `svcca
 * rotate`s and must arrive byte-exact (SHA-256 both ways); twenty clients make
 * request/response exchanges without pause, opening a new connection every few requests
 * so new handshakes land on every certificate; the certificate rotates ten times. No
 * request may fail and no byte may differ.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  writePolicy,
  type Creds,
  type RunningSidecar,
} from './sidecar-harness.js';
import { reloadCount, rotateNow } from './sidecar-reload-helpers.js';

const ROTATIONS = 10;
const ROTATION_GAP_MS = 5_500;
const CLIENTS = 20;
const REQUESTS_PER_CONNECTION = 8;
const GREETING = 'hello payment\n';

interface StreamResult {
  readonly sent: number;
  readonly received: number;
  readonly sentHash: string;
  readonly receivedHash: string;
  readonly error: string | undefined;
  readonly serial: string;
}

/**
 * One long connection: writes random chunks (about 1 MB/s) until `stop()`, then
 * half-closes and hashes everything the echo sent back.
 */
function runStream(address: string, creds: Creds): { stop: () => void; done: Promise<StreamResult> } {
  const [host, port] = splitHostPort(address);
  let stopping = false;
  let wake: (() => void) | undefined;
  const done = new Promise<StreamResult>((resolve) => {
    const s = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    const sentHash = createHash('sha256');
    const receivedHash = createHash('sha256');
    let sent = 0;
    let received = 0;
    let head = Buffer.alloc(0);
    let error: string | undefined;
    let serial = '';
    s.on('data', (d: Buffer) => {
      // The service greets first; everything after is the echo.
      if (head.length < GREETING.length) {
        const take = Math.min(GREETING.length - head.length, d.length);
        head = Buffer.concat([head, d.subarray(0, take)]);
        d = d.subarray(take);
      }
      received += d.length;
      receivedHash.update(d);
    });
    s.on('error', (e) => (error = e.message));
    s.on('close', () =>
      resolve({ sent, received, sentHash: sentHash.digest('hex'), receivedHash: receivedHash.digest('hex'), error, serial }),
    );
    s.once('secureConnect', async () => {
      const peer = s.getPeerX509Certificate();
      serial = peer ? BigInt(`0x${peer.serialNumber}`).toString(16) : '';
      while (!stopping && !s.destroyed) {
        const chunk = randomBytes(8 * 1024);
        sentHash.update(chunk);
        sent += chunk.length;
        if (!s.write(chunk)) await new Promise<void>((r) => s.once('drain', r));
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 8);
        });
      }
      s.end();
    });
  });
  return {
    stop: () => {
      stopping = true;
      wake?.();
    },
    done,
  };
}

interface LoadResult {
  requests: number;
  connections: number;
  failures: string[];
  serials: string[];
}

/** One client: connect, do a few request/response echoes, close cleanly, repeat. */
async function loadClient(id: number, address: string, creds: Creds, stopped: () => boolean, out: LoadResult): Promise<void> {
  const [host, port] = splitHostPort(address);
  while (!stopped()) {
    await new Promise<void>((resolve) => {
      const s = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
      s.setEncoding('latin1');
      let buf = '';
      let expect = GREETING;
      let n = 0;
      let finished = false;
      const fail = (why: string) => {
        if (finished) return;
        finished = true;
        out.failures.push(`client ${id} request ${n}: ${why}`);
        s.destroy();
        resolve();
      };
      const next = () => {
        if (n === REQUESTS_PER_CONNECTION || stopped()) {
          finished = true;
          s.end();
          return;
        }
        const req = `req ${id} ${n} ${randomBytes(16 + Math.floor(Math.random() * 500)).toString('hex')}\n`;
        expect = req;
        s.write(req);
      };
      s.on('secureConnect', () => {
        out.connections++;
        const peer = s.getPeerX509Certificate();
        if (peer) out.serials.push(BigInt(`0x${peer.serialNumber}`).toString(16));
      });
      s.on('data', (d: string) => {
        buf += d;
        if (buf.length < expect.length) return;
        if (buf !== expect) return fail(`got ${JSON.stringify(buf.slice(0, 60))}, expected ${JSON.stringify(expect.slice(0, 60))}`);
        buf = '';
        if (expect !== GREETING) {
          out.requests++;
          n++;
        }
        next();
      });
      s.on('error', (e) => fail(`error ${e.message}`));
      s.on('close', () => {
        if (!finished) fail(`closed early after ${JSON.stringify(buf.slice(0, 60))}`);
        resolve();
      });
      s.setTimeout(20_000, () => fail('no answer within 20 s'));
    });
  }
}

describe('sidecar reload under load', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let payment: string;
  const rotatedSerials: string[] = [];
  let firstSerial = '';
  let stream: StreamResult;
  const load: LoadResult = { requests: 0, connections: 0, failures: [], serials: [] };
  let applied = 0;

  before(async () => {
    ca = makeCa();
    payment = ca.issue('payment-service');
    const order = credsFromDir(ca.issue('order-service'));
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    // The default reload settings: watcher, 2 s stat poll, 60 s hash check.
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: payment, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address, extra: 'admin:\n  listen: 127.0.0.1:0' }),
    );
    firstSerial = serialOfSet(payment);

    const s = runStream(sidecar.inbound!, order);
    let stop = false;
    const clients = Array.from({ length: CLIENTS }, (_, i) => loadClient(i, sidecar.inbound!, order, () => stop, load));
    for (let i = 0; i < ROTATIONS; i++) {
      await new Promise((r) => setTimeout(r, ROTATION_GAP_MS));
      await rotateNow(ca.dir, 'payment-service');
      const serial = serialOfSet(payment);
      rotatedSerials.push(serial);
      await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === serial, 30_000);
    }
    // Let new handshakes land on the last certificate too.
    await new Promise((r) => setTimeout(r, 2_000));
    stop = true;
    s.stop();
    await Promise.all(clients);
    stream = await s.done;
    applied = await reloadCount(sidecar.admin!, 'identity', 'applied');
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  it('applied all ten rotations', () => {
    assert.equal(new Set([firstSerial, ...rotatedSerials]).size, ROTATIONS + 1);
    assert.equal(applied, ROTATIONS);
  });

  it('kept one stream open across all of them, byte-exact', (t) => {
    t.diagnostic(`stream: ${stream.sent} bytes each way`);
    assert.equal(stream.error, undefined);
    assert.equal(stream.serial, firstSerial, 'the stream began on the first certificate');
    assert.ok(stream.sent > 0);
    assert.equal(stream.received, stream.sent);
    assert.equal(stream.receivedHash, stream.sentHash);
  });

  it('served twenty clients without pause with no failed request and no corrupted byte', (t) => {
    t.diagnostic(
      `load: ${load.requests} requests on ${load.connections} connections; ${new Set(load.serials).size} certificates seen by new handshakes`,
    );
    assert.deepEqual(load.failures, []);
    assert.ok(load.requests > 0 && load.connections > CLIENTS);
    // New handshakes during the run saw the first certificate and the last one.
    assert.ok(load.serials.includes(firstSerial), 'some connections were made on the first certificate');
    assert.ok(load.serials.includes(rotatedSerials.at(-1)!), 'some connections were made on the last certificate');
  });
});
