/**
 * gRPC through http mode (issue 14), with the real @grpc/grpc-js client and server: the
 * client speaks HTTP/2 over mTLS to the sidecar (ALPN h2), the sidecar judges each call by
 * its `:path` (`/orders.v1.Orders/Get`) and forwards it over h2c (`inbound.upstream: h2c`)
 * to the gRPC server. Unary, server-streaming and bidirectional calls pass, trailers
 * (grpc-status, trailing metadata) come back, the server sees XFCC; a denied call is a
 * gRPC PERMISSION_DENIED naming the caller, and the server never sees it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { adminGet, credsFromDir, sidecarYaml, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import { getRequest, httpSidecarYaml, rawCall } from './sidecar-http-harness.js';

const TD = 'spiffe://example.org';
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
/** Hand-written service definition (no .proto, no codegen): messages are raw bytes. */
const ORDERS: grpc.ServiceDefinition = {
  Get: {
    path: '/orders.v1.Orders/Get',
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  },
  List: {
    path: '/orders.v1.Orders/List',
    requestStream: false,
    responseStream: true,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  },
  Chat: {
    path: '/orders.v1.Orders/Chat',
    requestStream: true,
    responseStream: true,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  },
};
const OrdersClient = grpc.makeGenericClientConstructor(ORDERS, 'Orders');
type Client = InstanceType<typeof OrdersClient> & {
  Get(request: Buffer, callback: (error: grpc.ServiceError | null, value?: Buffer) => void): grpc.ClientUnaryCall;
  List(request: Buffer): grpc.ClientReadableStream<Buffer>;
  Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
};

const POLICY = `services:
  inventory-service:
    allow:
      - order-service
      - from: notification-service
        methods: [POST]
        paths: [/orders.v1.Orders/Get]
`;

describe('sidecar http mode: gRPC over HTTP/2 to an h2c service', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let server: grpc.Server;
  const seen: { path: string; xfcc: string }[] = [];
  let sets: Record<'order' | 'notification' | 'intruder', string>;
  const clients: Client[] = [];

  function client(who: keyof typeof sets): Client {
    const dir = sets[who];
    const creds = grpc.credentials.createSsl(
      readFileSync(join(dir, 'ca.crt')),
      readFileSync(join(dir, 'tls.key')),
      readFileSync(join(dir, 'tls.crt')),
      {
        // The sidecar's identity is its SPIFFE ID (checked by outbound sidecars), not a host name.
        checkServerIdentity: () => undefined,
      },
    );
    const c = new OrdersClient(sidecar.inbound!, creds) as Client;
    clients.push(c);
    return c;
  }

  function unary(c: Client, body: string): Promise<{ value?: string; error?: grpc.ServiceError; trailers?: grpc.Metadata }> {
    return new Promise((resolve) => {
      let trailers: grpc.Metadata | undefined;
      const call = c.Get(Buffer.from(body), (error: grpc.ServiceError | null, value?: Buffer) => {
        // 'status' (with the trailing metadata) may come just after the callback.
        setImmediate(() => resolve(error ? { error } : { value: value!.toString(), trailers: trailers! }));
      });
      call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
    });
  }

  before(async () => {
    ca = makeCa();
    sets = { order: ca.issue('order-service'), notification: ca.issue('notification-service'), intruder: ca.issue('intruder') };
    const inventory = ca.issue('inventory-service');
    server = new grpc.Server();
    const note = (call: { getPath(): string; metadata: grpc.Metadata }) =>
      seen.push({ path: call.getPath(), xfcc: String(call.metadata.get('x-forwarded-client-cert')[0] ?? '') });
    server.addService(ORDERS, {
      Get: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        note(call);
        if (call.request.toString() === 'missing') return cb({ code: grpc.status.NOT_FOUND, details: 'no such order' });
        const trailer = new grpc.Metadata();
        trailer.set('x-order-trailer', 'kept');
        cb(null, Buffer.from(`order ${call.request.toString()}`), trailer);
      },
      List: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        note(call);
        for (let i = 0; i < 5; i++) call.write(Buffer.from(`item ${i}`));
        call.end();
      },
      Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        note(call);
        call.on('data', (d: Buffer) => call.write(Buffer.from(`echo ${d.toString()}`)));
        call.on('end', () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({
        setDir: inventory,
        policy: writePolicy(ca.root, POLICY),
        forward: `127.0.0.1:${port}`,
        extraInbound: '  upstream: h2c',
        extra: 'admin:\n  listen: 127.0.0.1:0',
      }),
    );
  });
  after(async () => {
    for (const c of clients) c.close();
    await sidecar?.stop();
    server?.forceShutdown();
    ca?.cleanup();
  });

  it('unary: allowed, answered, with the trailing metadata; the server sees the XFCC of the caller', async () => {
    const r = await unary(client('order'), '42');
    assert.equal(r.error, undefined);
    assert.equal(r.value, 'order 42');
    assert.deepEqual(r.trailers!.get('x-order-trailer'), ['kept']);
    assert.match(seen.at(-1)!.xfcc, new RegExp(`^By=${TD}/inventory-service;Hash=[0-9a-f]{64};URI=${TD}/order-service$`));
  });

  it("unary: the server's own error status comes back as it was sent", async () => {
    const r = await unary(client('order'), 'missing');
    assert.equal(r.error?.code, grpc.status.NOT_FOUND);
    assert.equal(r.error?.details, 'no such order');
  });

  it('server streaming: every message arrives, then OK', async () => {
    const items: string[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client('order').List(Buffer.from('all'));
      call.on('data', (d: Buffer) => items.push(d.toString()));
      call.on('error', () => undefined);
      call.on('status', resolve);
    });
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(items, ['item 0', 'item 1', 'item 2', 'item 3', 'item 4']);
  });

  it('bidirectional: messages flow both ways on one stream', async () => {
    const got: string[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client('order').Chat();
      call.on('data', (d: Buffer) => {
        got.push(d.toString());
        if (got.length === 3) call.end();
      });
      call.on('error', () => undefined);
      call.on('status', resolve);
      for (const m of ['a', 'b', 'c']) call.write(Buffer.from(m));
    });
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(got, ['echo a', 'echo b', 'echo c']);
  });

  it('a method-level rule: notification-service may call Get but not Chat or List', async () => {
    const c = client('notification');
    assert.equal((await unary(c, '1')).value, 'order 1');
    const before = seen.length;
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = c.Chat();
      call.on('error', () => undefined);
      call.on('status', resolve);
      call.write(Buffer.from('x'));
    });
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    assert.equal(status.details, `forbidden: no rule allows ${TD}/notification-service to POST /orders.v1.Orders/Chat`);
    assert.equal(seen.length, before, 'the server saw a denied call');
  });

  it('a caller the policy does not name gets PERMISSION_DENIED naming it, logged and counted', async () => {
    const before = seen.length;
    const r = await unary(client('intruder'), '1');
    assert.equal(r.error?.code, grpc.status.PERMISSION_DENIED);
    assert.match(r.error!.details, new RegExp(`${TD}/intruder`));
    assert.equal(seen.length, before);
    const line = await sidecar.waitForLine((l) => l.event === 'refused' && l.peer === `${TD}/intruder`);
    assert.equal(line.protocol, 'h2');
    assert.equal(line.path, '/orders.v1.Orders/Get');
    assert.equal(line.reason, 'policy-denied');
    const metrics = (await adminGet(sidecar.admin!, '/metrics')).body;
    assert.match(metrics, /svcca_sidecar_policy_decisions_total\{result="denied"\} [1-9]/);
  });

  it('outbound alpn: [h2]: an app speaking h2c to its outbound listener reaches the inbound as HTTP/2', async () => {
    const out = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: sets.order,
        inbound: false,
        extra: `outbound:\n  - listen: 127.0.0.1:0\n    connect: ${sidecar.inbound}\n    serverId: ${TD}/inventory-service\n    alpn: [h2]\nshutdown:\n  grace: 1s`,
      }),
      'order-outbound.yaml',
    );
    const app = new OrdersClient(out.outbound[0]!, grpc.credentials.createInsecure()) as Client;
    try {
      const r = await unary(app, 'via outbound');
      assert.equal(r.value, 'order via outbound');
      assert.match(seen.at(-1)!.xfcc, new RegExp(`URI=${TD}/order-service$`));
    } finally {
      // Closed first: its connection would otherwise hold the sidecar's drain.
      app.close();
      await out.stop();
    }
  });

  it('an HTTP/1.1 request to an h2c-only service is refused with a 400 that says why', async () => {
    const r = await rawCall(sidecar.inbound!, credsFromDir(sets.order), getRequest('/orders.v1.Orders/Get', [], 'POST'));
    assert.equal(r.status, 400);
    assert.match(r.body.toString(), /speaks HTTP\/2 only \(inbound\.upstream: h2c\)/);
  });
});
