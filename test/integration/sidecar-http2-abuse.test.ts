/**
 * HTTP/2 abuse against an http-mode inbound (issue 14), each from a raw-frame client
 * (h2-frames.ts), each cutting only the offender: a bystander HTTP/2 connection opened
 * before the abuse is still served after it, and the sidecar keeps running.
 * - rapid reset (CVE-2023-44487): requests opened and reset at once, thousands of them;
 * - CONTINUATION flood: a header block that never ends;
 * - too many concurrent streams: a caller that opens more than the limit it acknowledged
 *   is cut (nghttp2 takes it as a connection error); up to the limit all are served;
 * - an oversized header list: that stream answered 431, the connection goes on;
 * - SETTINGS and PING floods from a peer that never reads the acknowledgements;
 * - a zero flow-control window held open: the stream is closed at inbound.idleTimeout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import { httpSidecarYaml, startRecordingBackend, STOCK_POLICY, type RecordingBackend } from './sidecar-http-harness.js';
import { FLAG, FRAME, frame, getFields, headerBlock, ping, RawH2, rstStream, settings, SETTING } from './h2-frames.js';

const ENHANCE_YOUR_CALM = 0xb;

describe('sidecar http mode: HTTP/2 abuse is bounded and cuts only the offender', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let shortIdle: RunningSidecar;
  let backend: RecordingBackend;
  let creds: ReturnType<typeof credsFromDir>;
  let bystander: ClientHttp2Session;

  function bystanderGet(path = '/stock'): Promise<number> {
    return new Promise((resolve, reject) => {
      const r = bystander.request({ ':path': path });
      r.on('response', (h) => resolve(Number(h[':status'])));
      r.on('error', reject);
      r.resume();
    });
  }

  before(async () => {
    ca = makeCa();
    const order = ca.issue('order-service');
    creds = credsFromDir(order);
    const inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, STOCK_POLICY);
    backend = await startRecordingBackend();
    [sidecar, shortIdle] = await Promise.all([
      startSidecarProcess(ca.root, httpSidecarYaml({ setDir: inventory, policy, forward: backend.address }), 'main.yaml'),
      startSidecarProcess(
        ca.root,
        httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, extraInbound: '  idleTimeout: 1s' }),
        'short-idle.yaml',
      ),
    ]);
    bystander = http2Connect(`https://${sidecar.inbound}`, { ...creds, checkServerIdentity: () => undefined });
    assert.equal(await bystanderGet(), 200);
  });
  after(async () => {
    bystander?.destroy();
    await sidecar?.stop();
    await shortIdle?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  const authority = () => sidecar.inbound!;

  it('rapid reset: thousands of requests opened and reset at once end in GOAWAY ENHANCE_YOUR_CALM', async () => {
    const c = await RawH2.open(sidecar.inbound!, creds);
    const block = headerBlock(getFields(authority(), '/stock/1'));
    for (let batch = 0; batch < 20 && !c.closed; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 250; i++) {
        const id = 1 + 2 * (batch * 250 + i);
        frames.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block), rstStream(id));
      }
      c.write(Buffer.concat(frames));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await c.waitClosed();
    assert.equal(c.goawayCode(), ENHANCE_YOUR_CALM);
    const line = await sidecar.waitForLine((l) => l.reason === 'http2-rapid-reset');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(await bystanderGet(), 200);
  });

  it('CONTINUATION flood: a header block that never ends is cut', async () => {
    const c = await RawH2.open(sidecar.inbound!, creds);
    const port = c.socket.localPort;
    c.write(frame(FRAME.HEADERS, 0, 1, headerBlock(getFields(authority(), '/stock'))));
    const filler = headerBlock([['x-filler', 'a']]);
    for (let i = 0; i < 2000 && !c.closed; i++) c.write(frame(FRAME.CONTINUATION, 0, 1, filler));
    await c.waitClosed();
    const line = await sidecar.waitForLine((l) => l.reason === 'http2-protocol-error' && l.address === `127.0.0.1:${port}`);
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(await bystanderGet(), 200);
  });

  it('too many concurrent streams: a caller opening more than the limit it acknowledged is cut', async () => {
    const c = await RawH2.open(sidecar.inbound!, creds);
    await c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0);
    // Open streams (no END_STREAM: each waits for a body) up to the limit, then one more.
    const frames: Buffer[] = [];
    for (let i = 0; i <= 100; i++)
      frames.push(
        frame(
          FRAME.HEADERS,
          FLAG.END_HEADERS,
          1 + 2 * i,
          headerBlock([[':method', 'POST'], ...getFields(authority(), `/stock/${i}`).slice(1)]),
        ),
      );
    c.write(Buffer.concat(frames));
    // nghttp2 treats a limit the peer acknowledged and broke as a connection error.
    await c.waitClosed();
    const line = await sidecar.waitForLine((l) => l.reason === 'http2-protocol-error');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(await bystanderGet(), 200);
  });

  it('up to the limit of concurrent streams, all are served on one connection', async () => {
    const c = await RawH2.open(sidecar.inbound!, creds);
    await c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0);
    const frames: Buffer[] = [];
    for (let i = 0; i < 100; i++)
      frames.push(
        frame(
          FRAME.HEADERS,
          FLAG.END_HEADERS,
          1 + 2 * i,
          headerBlock([[':method', 'POST'], ...getFields(authority(), `/stock/${i}`).slice(1)]),
        ),
      );
    for (let i = 0; i < 100; i++) frames.push(frame(FRAME.DATA, FLAG.END_STREAM, 1 + 2 * i));
    c.write(Buffer.concat(frames));
    assert.ok(await c.waitFor((f) => f.type === FRAME.HEADERS && f.stream === 199));
    assert.equal(c.frames.filter((f) => f.type === FRAME.HEADERS).length, 100);
    c.close();
  });

  it('an oversized header list: that stream is answered 431, the connection goes on', async () => {
    const c = await RawH2.open(sidecar.inbound!, creds);
    const fields: [string, string][] = [...getFields(authority(), '/stock')];
    for (let i = 0; i < 10; i++) fields.push([`x-big-${i}`, 'b'.repeat(8000)]);
    const big = headerBlock(fields);
    // In pieces of at most 16 KB (the default SETTINGS_MAX_FRAME_SIZE).
    const pieces: Buffer[] = [];
    for (let at = 0; at < big.length; at += 16_000) pieces.push(big.subarray(at, at + 16_000));
    pieces.forEach((p, i) => {
      c.write(
        frame(
          i === 0 ? FRAME.HEADERS : FRAME.CONTINUATION,
          (i === pieces.length - 1 ? FLAG.END_HEADERS : 0) | (i === 0 ? FLAG.END_STREAM : 0),
          1,
          p,
        ),
      );
    });
    const answer = await c.waitFor((f) => f.type === FRAME.HEADERS && f.stream === 1);
    assert.ok(answer, 'the stream got no answer');
    const line = await sidecar.waitForLine((l) => l.reason === 'too-many-headers' && l.protocol === 'h2');
    assert.equal(line.status, 431);
    assert.match(String(line.detail), /the header list is \d+ bytes; the limit is 65536/);
    assert.equal(
      backend.received.some((r) => r.rawHeaders.includes('x-big-0')),
      false,
      'the oversized request reached the service',
    );
    c.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, headerBlock(getFields(authority(), '/stock'))));
    assert.ok(await c.waitFor((f) => f.type === FRAME.HEADERS && f.stream === 3), 'the next request on the connection was not answered');
    c.close();
    assert.equal(await bystanderGet(), 200);
  });

  for (const kind of ['SETTINGS', 'PING'] as const) {
    it(`a ${kind} flood from a peer that never reads the acknowledgements is cut`, async () => {
      const c = await RawH2.open(sidecar.inbound!, creds);
      await c.waitFor((f) => f.type === FRAME.SETTINGS);
      const port = c.socket.localPort;
      c.socket.pause(); // never read again
      const one = kind === 'SETTINGS' ? settings([[SETTING.MAX_CONCURRENT_STREAMS, 100]]) : ping(1);
      const burst = Buffer.concat(Array.from({ length: 4096 }, () => one));
      for (let i = 0; i < 400 && !c.closed; i++) {
        if (!c.write(burst))
          await new Promise((resolve) => {
            c.socket.once('drain', resolve);
            c.socket.once('close', resolve);
          });
      }
      c.socket.resume();
      await c.waitClosed();
      const line = await sidecar.waitForLine((l) => l.reason === 'http2-protocol-error' && l.address === `127.0.0.1:${port}`);
      assert.match(String(line.detail), /Flooding was detected/);
      assert.equal(await bystanderGet(), 200);
    });
  }

  it('a zero window held open: the stalled stream is closed at inbound.idleTimeout', async () => {
    const c = await RawH2.open(shortIdle.inbound!, creds, [[SETTING.INITIAL_WINDOW_SIZE, 0]]);
    c.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock(getFields(shortIdle.inbound!, '/stock?big=1000000'))));
    // The response starts, no byte of its body can be sent, and the stream is given up.
    const cut = await c.waitFor((f) => (f.type === FRAME.RST_STREAM && f.stream === 1) || f.type === FRAME.GOAWAY, 15_000);
    assert.equal(
      c.frames.some((f) => f.type === FRAME.DATA && f.payload.length > 0),
      false,
    );
    assert.ok(cut || c.closed);
    c.close();
  });
});
