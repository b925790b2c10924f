/**
 * HTTP/2 attacks on the tunnel listener, from a caller with a valid certificate: rapid
 * reset (CVE-2023-44487), a CONTINUATION flood, too many streams, oversized headers, a
 * zero window held open. Each is bounded and cuts the offender; another caller's stream
 * on the same sidecar keeps flowing throughout. Raw frames where Node's own client would
 * refuse to misbehave.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startSidecarProcess,
  within,
  writePolicy,
  type Creds,
  type RunningSidecar,
} from './sidecar-harness.js';
import { metric, startModalService, type ModalService } from './sidecar-tunnel-harness.js';

const TD = 'spiffe://example.org';
const MAX_STREAMS = 8;

function tunnelSocket(address: string, creds: Required<Creds>): TLSSocket {
  const [host, port] = splitHostPort(address);
  return tlsConnect({
    host,
    port,
    cert: creds.cert,
    key: creds.key,
    ca: creds.ca,
    ALPNProtocols: ['svcca-tunnel/1'],
    checkServerIdentity: () => undefined,
  });
}

function session(address: string, creds: Required<Creds>, settings: Record<string, number> = {}): ClientHttp2Session {
  const s = h2Connect(`https://${address}`, { createConnection: () => tunnelSocket(address, creds), settings });
  s.on('error', () => undefined);
  return s;
}

/** A long-lived stream of another caller: it must answer before, during and after each attack. */
class Victim {
  readonly stream: ClientHttp2Stream;
  #data = '';
  #n = 0;
  constructor(readonly session: ClientHttp2Session) {
    this.stream = session.request({ ':method': 'CONNECT', ':authority': 'victim' });
    this.stream.setEncoding('latin1');
    this.stream.on('data', (d: string) => (this.#data += d));
    this.stream.on('error', () => undefined);
    this.stream.write('E');
  }
  async ping(): Promise<void> {
    const line = `ping ${++this.#n}\n`;
    this.stream.write(line);
    await within(
      `the victim's stream answers ${line.trim()}`,
      15_000,
      (async () => {
        while (!this.#data.includes(line)) await new Promise((r) => setTimeout(r, 10));
      })(),
    );
  }
}

// Raw HTTP/2 frames (RFC 9113 §4.1) and just enough HPACK (RFC 7541) to open a CONNECT stream.
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7, CONTINUATION: 9 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK integer with an N-bit prefix (first byte's high bits in `mask`). */
function hpackInt(n: number, prefixBits: number, mask = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (n < max) return Buffer.from([mask | n]);
  const out = [mask | max];
  n -= max;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** Literal header field without indexing, name from the static table (index) or literal. */
function literal(name: number | string, value: string): Buffer {
  const head =
    typeof name === 'number' ? hpackInt(name, 4) : Buffer.concat([Buffer.from([0]), hpackInt(name.length, 7), Buffer.from(name)]);
  return Buffer.concat([head, hpackInt(value.length, 7), Buffer.from(value)]);
}

/** :method CONNECT (static index 2's name), :authority (index 1). */
const CONNECT_BLOCK = Buffer.concat([literal(2, 'CONNECT'), literal(1, 'raw.example')]);

/** A raw HTTP/2 client: the frames it reads back, by type, and whether the connection closed. */
class RawTunnel {
  readonly socket: TLSSocket;
  readonly frames: { type: number; streamId: number; payload: Buffer }[] = [];
  closed = false;
  #buf = Buffer.alloc(0);
  constructor(address: string, creds: Required<Creds>) {
    this.socket = tunnelSocket(address, creds);
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        const f = {
          type: this.#buf[3]!,
          flags: this.#buf[4]!,
          streamId: this.#buf.readUInt32BE(5) & 0x7fffffff,
          payload: this.#buf.subarray(9, 9 + len),
        };
        this.#buf = this.#buf.subarray(9 + len);
        this.frames.push(f);
        // Acknowledge the server's SETTINGS, as a real client does: its limits then apply.
        if (f.type === FRAME.SETTINGS && (f.flags & 1) === 0) this.socket.write(frame(FRAME.SETTINGS, 1, 0));
      }
    });
  }
  async open(): Promise<void> {
    await new Promise<void>((r) => this.socket.once('secureConnect', () => r()));
    this.socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
    await this.until(() => this.frames.some((f) => f.type === FRAME.SETTINGS), 'the server SETTINGS');
  }
  async until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    await within(
      what,
      ms,
      (async () => {
        while (!pred() && !this.closed) await new Promise((r) => setTimeout(r, 10));
      })(),
    );
  }
  count(type: number): number {
    return this.frames.filter((f) => f.type === type).length;
  }
}

describe('sidecar tunnels under HTTP/2 attack', () => {
  let ca: TestCa;
  let service: ModalService;
  let payment: RunningSidecar;
  let attacker: Required<Creds>;
  let victimSession: ClientHttp2Session;
  let victim: Victim;

  before(async () => {
    ca = makeCa();
    attacker = credsFromDir(ca.issue('order-service'));
    const billing = credsFromDir(ca.issue('billing-service'));
    const paymentSet = ca.issue('payment-service');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service, billing-service]\n');
    service = await startModalService('payment');
    payment = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: paymentSet,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: service.address,
        extra: `  maxTunnelStreams: ${MAX_STREAMS}\n  maxTunnelsPerCaller: 2\n  idleTimeout: 1500ms\nadmin:\n  listen: 127.0.0.1:0\nlog:\n  level: debug`,
      }),
    );
    victimSession = session(payment.inbound!, billing);
    victim = new Victim(victimSession);
    await victim.ping();
  });
  // The victim pings every 300 ms so that its stream is never idle for the 1.5 s idle timeout.
  let keepAlive: NodeJS.Timeout | undefined;
  before(() => {
    keepAlive = setInterval(() => void victim.ping().catch(() => undefined), 300);
  });
  after(async () => {
    clearInterval(keepAlive);
    victimSession?.destroy();
    await payment?.stop();
    await service?.close();
    ca?.cleanup();
  });

  it('rapid reset (CVE-2023-44487): a caller resetting streams as fast as it opens them loses its tunnel', async () => {
    const raw = new RawTunnel(payment.inbound!, attacker);
    await raw.open();
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(h2.NGHTTP2_CANCEL);
    // HEADERS then RST_STREAM, 1,000 times in a few writes: no stream is ever left open.
    for (let batch = 0; batch < 20 && !raw.closed; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 50; i++) {
        const id = 2 * (batch * 50 + i) + 1;
        frames.push(frame(FRAME.HEADERS, END_HEADERS, id, CONNECT_BLOCK), frame(FRAME.RST_STREAM, 0, id, rst));
      }
      raw.socket.write(Buffer.concat(frames));
      await new Promise((r) => setTimeout(r, 5));
    }
    await raw.until(() => raw.closed, 'the attacker’s tunnel closed', 10_000);
    const line = await payment.waitForLine(
      (l) => l.event === 'refused' && l.reason === 'tunnel-abuse' && /rapid reset/.test(l.detail ?? ''),
    );
    assert.equal(line.peer, `${TD}/order-service`);
    assert.ok(raw.count(FRAME.GOAWAY) >= 1, 'told why (GOAWAY) before the cut');
    await victim.ping();
  });

  it('a CONTINUATION flood ends the offending tunnel', async () => {
    const raw = new RawTunnel(payment.inbound!, attacker);
    await raw.open();
    // HEADERS without END_HEADERS, then empty CONTINUATION frames that never end the block.
    raw.socket.write(frame(FRAME.HEADERS, 0, 1, CONNECT_BLOCK.subarray(0, 3)));
    const empty = frame(FRAME.CONTINUATION, 0, 1);
    for (let i = 0; i < 2000 && !raw.closed; i++) raw.socket.write(Buffer.concat(Array.from({ length: 50 }, () => empty)));
    await raw.until(() => raw.closed, 'the flooding connection closed', 10_000);
    assert.equal(raw.closed, true);
    assert.ok(raw.count(FRAME.GOAWAY) >= 1 || raw.closed, 'the server ended the session');
    await victim.ping();
  });

  it(`too many streams: at most maxTunnelStreams (${MAX_STREAMS}) are served, and a caller that opens more loses its tunnel`, async () => {
    const before = service.connections();
    const raw = new RawTunnel(payment.inbound!, attacker);
    await raw.open();
    await raw.until(() => raw.count(FRAME.SETTINGS) >= 2, 'our SETTINGS acknowledged (the limit is in force)');
    for (let i = 0; i < 3 * MAX_STREAMS; i++) raw.socket.write(frame(FRAME.HEADERS, END_HEADERS, 2 * i + 1, CONNECT_BLOCK));
    // Beyond the limit it advertised, nghttp2 calls it a connection error: the session ends.
    await raw.until(() => raw.closed, 'the offending tunnel closed');
    const served = raw.frames.filter((f) => f.type === FRAME.HEADERS).length;
    assert.ok(served <= MAX_STREAMS, `${served} streams served`);
    assert.ok(service.connections() - before <= MAX_STREAMS, `${service.connections() - before} reached the service`);
    const line = await payment.waitForLine(
      (l) => l.event === 'refused' && l.reason === 'tunnel-abuse' && /HTTP\/2 rules/.test(l.detail ?? ''),
    );
    assert.equal(line.peer, `${TD}/order-service`);
    await victim.ping();
  });

  it('oversized headers are refused, the stream never served', async () => {
    const raw = new RawTunnel(payment.inbound!, attacker);
    await raw.open();
    const block = Buffer.concat([CONNECT_BLOCK, literal('x-padding', 'a'.repeat(40_000))]);
    // Frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE): HEADERS then CONTINUATIONs.
    const parts: Buffer[] = [];
    for (let off = 0; off < block.length; off += 16_384) parts.push(block.subarray(off, off + 16_384));
    raw.socket.write(frame(FRAME.HEADERS, parts.length === 1 ? END_HEADERS : 0, 1, parts[0]!));
    parts.slice(1).forEach((p, i) => {
      raw.socket.write(frame(FRAME.CONTINUATION, i === parts.length - 2 ? END_HEADERS : 0, 1, p));
    });
    raw.socket.write(frame(FRAME.DATA, END_STREAM, 1, Buffer.from('E')));
    await raw.until(() => raw.closed || raw.count(FRAME.RST_STREAM) > 0 || raw.count(FRAME.GOAWAY) > 0, 'the oversized stream refused');
    assert.equal(raw.frames.filter((f) => f.type === FRAME.HEADERS).length, 0, 'no answer: the stream was not served');
    raw.socket.destroy();
    await victim.ping();
  });

  it('a zero window held open: the stalled stream is cut at the idle timeout, its service connection closed', async () => {
    const base = service.open();
    const s = session(payment.inbound!, attacker, { initialWindowSize: 0 });
    const st = s.request({ ':method': 'CONNECT', ':authority': 'x' });
    st.on('error', () => undefined);
    st.write('E'); // the service answers "hello payment\n", which cannot be sent
    await within(
      'the stalled stream reached the service',
      15_000,
      (async () => {
        while (service.open() === base) await new Promise((r) => setTimeout(r, 10));
      })(),
    );
    // PINGs keep the connection busy, as an attacker holding it would.
    const pinger = setInterval(() => s.ping(() => undefined), 200);
    await within('the stalled stream cut', 10_000, new Promise<void>((r) => st.once('close', () => r())));
    clearInterval(pinger);
    assert.notEqual(st.rstCode, h2.NGHTTP2_NO_ERROR, 'reset, not ended');
    await within(
      'its service connection closed',
      15_000,
      (async () => {
        while (service.open() > base) await new Promise((r) => setTimeout(r, 10));
      })(),
    );
    s.destroy();
    await victim.ping();
    assert.ok((await metric(payment.admin!, 'svcca_sidecar_tunnel_streams_total', { direction: 'inbound', result: 'reset' })) >= 1);
  });

  it('a caller holds at most maxTunnelsPerCaller (2) tunnels; one more is refused', async () => {
    const held = [session(payment.inbound!, attacker), session(payment.inbound!, attacker)];
    await within('two tunnels set up', 15_000, Promise.all(held.map((s) => new Promise<void>((r) => s.once('remoteSettings', () => r())))));
    const third = session(payment.inbound!, attacker);
    let settings = false;
    third.once('remoteSettings', () => (settings = true));
    await within('the third tunnel closed', 15_000, new Promise<void>((r) => third.once('close', () => r())));
    assert.equal(settings, false, 'never set up');
    const line = await payment.waitForLine((l) => l.event === 'refused' && l.reason === 'too-many-tunnels');
    assert.equal(line.peer, `${TD}/order-service`);
    for (const s of held) s.destroy();
    await victim.ping();
  });
});
