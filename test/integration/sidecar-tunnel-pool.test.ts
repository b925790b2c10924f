/**
 * The outbound's tunnel pool over time, between real sidecars: an idle tunnel is closed at
 * `idleTimeout`; a target that goes down makes app connections fail at once and cleanly
 * while dials back off (counted as TCP connections at a relay in front of the inbound) and
 * a tunnel is made again when it returns; and the inbound counts tunnel streams in
 * `maxConnections`, refusing one more stream, logged, while the others flow.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startSidecarProcess,
  within,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import { AppConn, metric, startModalService, type ModalService } from './sidecar-tunnel-harness.js';
import { rotateNow } from './sidecar-reload-helpers.js';
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS } from '../../sidecar/proxy/tunnel-pool.js';

const TD = 'spiffe://example.org';
/** The limited inbound's maxConnections: its one tunnel + (LIMIT − 1) streams. */
const LIMIT = 4;
/**
 * Bytes a paused app reader may have in flight between the service and itself: socket
 * buffers on three loopback hops (the kernel grows a receive buffer to several MiB while
 * its reader keeps up), a stream's HTTP/2 window (1 MiB) and each pipe's high-water mark.
 * About 9 MiB measured; without back-pressure, all of the transfer.
 */
const IN_FLIGHT_BOUND = 24 * 1024 * 1024;

/**
 * A TCP relay in front of a sidecar: `up`, it passes each connection through; `down`, it
 * cuts the ones open and resets each new one at once — a host whose sidecar went away —
 * counting them: every TLS dial the outbound makes is one.
 */
class Relay {
  readonly server: Server;
  address = '';
  up = true;
  refused = 0;
  passed = 0;
  /** Holding, the server's bytes wait at the relay (a handshake that cannot finish) until release(). */
  holding = false;
  /** The relay's own address on each connection it made to the target, in order: what the target logs. */
  readonly dialed: string[] = [];
  readonly #held: (() => void)[] = [];
  readonly #open = new Set<Socket>();
  constructor(readonly target: string) {
    const [host, port] = splitHostPort(target);
    this.server = createServer((s) => {
      s.on('error', () => undefined);
      if (!this.up) {
        this.refused++;
        s.resetAndDestroy();
        return;
      }
      this.passed++;
      const t = netConnect({ host, port }, () => this.dialed.push(`${t.localAddress}:${t.localPort}`));
      t.on('error', () => s.destroy());
      s.on('error', () => t.destroy());
      for (const x of [s, t]) {
        this.#open.add(x);
        x.once('close', () => this.#open.delete(x));
      }
      s.pipe(t);
      if (this.holding) this.#held.push(() => t.pipe(s));
      else t.pipe(s);
    });
  }
  release(): void {
    this.holding = false;
    for (const flow of this.#held.splice(0)) flow();
  }
  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.address = `127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
  down(): void {
    this.up = false;
    for (const s of this.#open) s.resetAndDestroy();
  }
  close(): Promise<void> {
    this.down();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The most dials the back-off schedule allows in `ms` after the first failure (each wait ≥ ½ its ceiling). */
function dialsAllowed(ms: number): number {
  let dials = 1;
  let t = 0;
  for (let failures = 1; ; failures++) {
    t += Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (failures - 1)) / 2;
    if (t > ms) return dials;
    dials++;
  }
}

describe('sidecar tunnel pool: idle close, back-off, maxConnections', () => {
  let ca: TestCa;
  let service: ModalService;
  let payment: RunningSidecar;
  let limited: RunningSidecar;
  let order: RunningSidecar;
  let relay: Relay;
  let slowRelay: Relay;
  let orderSet = '';

  before(async () => {
    ca = makeCa();
    orderSet = ca.issue('order-service');
    const paymentSet = ca.issue('payment-service');
    const crl = join(ca.dir, 'crl.pem');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    service = await startModalService('payment');
    const admin = 'admin:\n  listen: 127.0.0.1:0\nlog:\n  level: debug';
    [payment, limited] = await Promise.all([
      startSidecarProcess(
        ca.root,
        sidecarYaml({ setDir: paymentSet, crl, policy, forward: service.address, extra: admin }),
        'payment.yaml',
      ),
      startSidecarProcess(
        ca.root,
        sidecarYaml({ setDir: paymentSet, crl, policy, forward: service.address, extra: `  maxConnections: ${LIMIT}\n${admin}` }),
        'limited.yaml',
      ),
    ]);
    relay = new Relay(payment.inbound!);
    await relay.listen();
    slowRelay = new Relay(payment.inbound!);
    await slowRelay.listen();
    const out = (connect: string, extra: string) =>
      `  - listen: 127.0.0.1:0\n    connect: ${connect}\n    serverId: ${TD}/payment-service\n${extra}`;
    order = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: orderSet,
        crl,
        inbound: false,
        extra: [
          'outbound:',
          // [0] idle close: only this one has a short idleTimeout.
          out(payment.inbound!, '    idleTimeout: 1s'),
          // [1] through the relay: back-off and reconnect.
          out(relay.address, ''),
          // [2] to the limited inbound, one tunnel: every stream on it counts there.
          out(limited.inbound!, '    tunnelConnections: 1'),
          // [3] back-pressure: default limits.
          out(payment.inbound!, ''),
          // [4] a tunnel dial held at a relay across a reload of order's own certificate.
          // (a long handshake timeout: the dial waits at the relay while the CLI rotates)
          out(slowRelay.address, '    handshakeTimeout: 60s'),
          admin,
        ].join('\n'),
      }),
      'order.yaml',
    );
  });

  after(async () => {
    for (const s of [order, payment, limited]) await s?.stop();
    await relay?.close();
    await slowRelay?.close();
    await service?.close();
    ca?.cleanup();
  });

  it('closes a tunnel idle for idleTimeout, on both sides, and opens a new one when needed', async () => {
    const echo = async (line: string) => {
      const c = new AppConn(order.outbound[0]!);
      c.socket.end(`E${line}`);
      await c.closed;
      return c.text();
    };
    // Looked at while a stream is open (no idle clock running), then the stream ends.
    const first = new AppConn(order.outbound[0]!);
    first.socket.write('E');
    await first.until((t) => t.startsWith('hello payment\n'));
    assert.equal(await metric(order.admin!, 'svcca_sidecar_tunnels_open', { direction: 'outbound' }), 1);
    first.socket.end();
    await first.closed;
    const address = payment.inbound!;
    await within(
      'the idle tunnel closed',
      15_000,
      order.waitForLine((l) => l.event === 'tunnel-closed' && l.address === address),
      () => JSON.stringify(order.lines.slice(-5)),
    );
    assert.equal(await metric(order.admin!, 'svcca_sidecar_tunnels_open', { direction: 'outbound' }), 0);
    // The inbound (idleTimeout 1h) let it go because the outbound closed it (GOAWAY).
    await within(
      "the inbound's side closed",
      10_000,
      payment.waitForLine((l) => l.event === 'tunnel-closed'),
    );
    assert.equal(await metric(payment.admin!, 'svcca_sidecar_tunnels_open', { direction: 'inbound' }), 0);
    assert.equal(await echo('two\n'), 'hello payment\ntwo\n');
    assert.equal(order.lines.filter((l) => l.event === 'tunnel-open' && l.address === address).length, 2, 'a new tunnel');
  });

  it('backs off while the target is down (app connections fail at once, cleanly), and reconnects when it returns', async () => {
    const echo = (line: string) => {
      const c = new AppConn(order.outbound[1]!);
      c.socket.end(`E${line}`);
      return c.closed.then(() => c.text());
    };
    assert.equal(await echo('up\n'), 'hello payment\nup\n');
    relay.down();
    await within(
      'the tunnel seen to go',
      10_000,
      order.waitForLine((l) => l.event === 'tunnel-closed' && l.address === relay.address),
    );
    // App connections, one every 20 ms, until the pool has dialed 5 times (0.75-1.5 s of
    // back-off): each fails at once and cleanly; without back-off, each would have dialed.
    let apps = 0;
    const t0 = Date.now();
    await within(
      'five dials',
      20_000,
      (async () => {
        while (relay.refused < 5) {
          assert.equal(await echo(`down ${apps++}\n`), '', 'closed without a byte');
          await new Promise((r) => setTimeout(r, 20));
        }
      })(),
    );
    const elapsed = Date.now() - t0;
    const dials = relay.refused;
    assert.ok(
      dials <= dialsAllowed(elapsed),
      `${dials} dials for ${apps} app connections in ${elapsed} ms (the back-off allows ${dialsAllowed(elapsed)})`,
    );
    const refusals = order.lines.filter((l) => l.event === 'refused' && l.address === relay.address);
    assert.ok(refusals.length >= apps - 1, `every app connection refused and logged (${refusals.length})`);
    assert.ok(
      refusals.every((l) => l.reason === 'connect-failed' && l.peer === `${TD}/payment-service` && typeof l.client === 'string'),
      JSON.stringify(refusals.at(-1)),
    );
    assert.ok(
      refusals.some((l) => /next attempt in \d+ ms/.test(String(l.detail))),
      'a refusal while backing off says when the next dial is',
    );

    relay.up = true;
    const passedBefore = relay.passed;
    const back = await within(
      'a tunnel again once the target is back',
      20_000,
      (async () => {
        for (;;) {
          const text = await echo('back\n');
          if (text) return text;
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
    );
    assert.equal(back, 'hello payment\nback\n');
    assert.equal(relay.passed, passedBefore + 1, 'one new tunnel carries it');
  });

  it(`counts tunnel streams in inbound.maxConnections: with ${LIMIT}, the tunnel and ${LIMIT - 1} streams; one more is refused, logged, the others flow`, async () => {
    const open = Array.from({ length: LIMIT - 1 }, () => new AppConn(order.outbound[2]!));
    for (const c of open) c.socket.write('E');
    await within('streams up', 10_000, Promise.all(open.map((c) => c.until((t) => t.startsWith('hello payment\n')))), () =>
      JSON.stringify([...limited.lines.slice(-6), ...order.lines.slice(-6)], null, 1),
    );
    assert.equal(await metric(limited.admin!, 'svcca_sidecar_tunnel_streams_open', { direction: 'inbound' }), LIMIT - 1);

    const before = service.connections();
    const extra = new AppConn(order.outbound[2]!);
    extra.socket.write('Eextra\n');
    // The outbound ends it: FIN, nothing before it.
    await within(
      'the extra app connection ended',
      10_000,
      extra.until(() => extra.ended),
    );
    extra.socket.destroy();
    assert.equal(extra.text(), '', 'the stream over the limit got nothing');
    assert.equal(service.connections(), before, 'and never reached the service');
    const refused = await within(
      'the refusal logged',
      10_000,
      limited.waitForLine((l) => l.event === 'refused' && l.reason === 'too-many-connections'),
    );
    assert.equal(refused.peer, `${TD}/order-service`);
    assert.match(String(refused.address), /^127\.0\.0\.1:\d+$/);
    assert.match(String(refused.detail), /tunnel streams count/);
    assert.ok((await metric(limited.admin!, 'svcca_sidecar_tunnel_streams_total', { direction: 'inbound', result: 'refused' })) >= 1);
    const outboundSaid = await within(
      "the outbound's refusal logged",
      10_000,
      order.waitForLine((l) => l.event === 'refused' && l.address === limited.inbound),
    );
    assert.equal(outboundSaid.reason, 'closed-by-server');

    // The streams within the limit flow on, every byte there.
    for (const [i, c] of open.entries()) c.socket.end(`still ${i}\n`);
    await Promise.all(open.map((c) => c.closed));
    for (const [i, c] of open.entries()) assert.equal(c.text(), `hello payment\nstill ${i}\n`);
    // Their room is given back.
    const later = new AppConn(order.outbound[2]!);
    later.socket.end('Elater\n');
    await later.closed;
    assert.equal(later.text(), 'hello payment\nlater\n');
  });

  it('holds a service back to what a paused app reader takes: bytes in flight stay bounded, then every byte arrives', async () => {
    const total = 96 * 1024 * 1024;
    const [host, port] = splitHostPort(order.outbound[3]!);
    const app = netConnect({ host, port });
    let received = 0;
    app.on('data', (d: Buffer) => (received += d.length));
    const ended = new Promise<void>((r) => app.once('end', () => r()));
    app.pause();
    app.write(`P${total}\n`);
    // Held: the service waits for 'drain' and nothing more left it over several looks.
    await within(
      'the service held back',
      30_000,
      (async () => {
        let last = -1;
        let still = 0;
        while (still < 5 && !service.pump.done) {
          await new Promise((r) => setTimeout(r, 100));
          still = service.pump.waiting && service.pump.written === last ? still + 1 : 0;
          last = service.pump.written;
        }
      })(),
    );
    const inFlight = service.pump.written - received;
    assert.equal(service.pump.done, false, `the service sent all ${total} bytes into a reader that took ${received}`);
    assert.ok(inFlight <= IN_FLIGHT_BOUND, `${inFlight} bytes in flight between the service and a paused reader`);
    app.resume();
    await within('every byte arrives once the app reads', 60_000, ended);
    assert.equal(received, total);
    app.destroy();
  });

  // Last: it rotates order's certificate.
  it('a tunnel dialed with the certificate a reload then replaced is closed unused; the waiting app connection gets a tunnel made with the new one', async () => {
    slowRelay.holding = true;
    const app = new AppConn(order.outbound[4]!);
    app.socket.write('E');
    await within(
      'the tunnel dial reached the relay',
      10_000,
      (async () => {
        while (slowRelay.passed < 1) await new Promise((r) => setTimeout(r, 20));
      })(),
    );
    const before = serialOfSet(orderSet);
    await rotateNow(ca.dir, 'order-service');
    const rotated = serialOfSet(orderSet);
    assert.notEqual(rotated, before);
    await within(
      "order's reload",
      30_000,
      order.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated),
    );
    // The held handshake now finishes — with the certificate the reload replaced.
    slowRelay.release();
    assert.equal(
      await within(
        'the echo',
        15_000,
        app.until((t) => t.startsWith('hello payment\n')),
      ),
      'hello payment\n',
      JSON.stringify(order.lines.slice(-6)),
    );
    const [oldTunnel, newTunnel] = slowRelay.dialed;
    assert.ok(newTunnel, `a second tunnel was dialed (relay saw ${slowRelay.dialed.length})`);
    // Payment judged the stream on the second tunnel, made after the reload: the first was
    // closed without carrying it.
    const streamLine = await within(
      "the stream in payment's log",
      10_000,
      payment.waitForLine((l) => l.event === 'allowed' && l.tunnel === true && (l.address === oldTunnel || l.address === newTunnel)),
    );
    assert.equal(streamLine.address, newTunnel, 'the app connection went out on the tunnel made with the replaced certificate');
    app.socket.destroy();
  });
});
