import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { writeAfterIo } from '../../../../sidecar/net/write-after-io.js';

/** A connected pair on 127.0.0.1: what the sidecar writes, and what the service reads. */
async function pair(): Promise<{ client: Socket; server: Socket; close: () => void }> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const accepted = once(listener, 'connection');
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = (await accepted) as [Socket];
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

describe('writeAfterIo', () => {
  it('holds the write until the check phase, then sends it whole', async () => {
    const { client, server, close } = await pair();
    try {
      const received: Buffer[] = [];
      server.on('data', (d: Buffer) => received.push(d));
      writeAfterIo(client, 'GET / HTTP/1.1\r\n\r\n', 'latin1');
      // Still in JavaScript, not yet handed to the kernel.
      assert.equal(client.writableLength, 18);
      assert.equal(client.writableCorked, 1);
      await new Promise((r) => setImmediate(r));
      assert.equal(client.writableCorked, 0);
      assert.equal(client.writableLength, 0);
      while (Buffer.concat(received).length < 18) await once(server, 'data');
      assert.equal(Buffer.concat(received).toString('latin1'), 'GET / HTTP/1.1\r\n\r\n');
    } finally {
      close();
    }
  });

  it('sends the writes of one batch together, each to its own socket, in order', async () => {
    const a = await pair();
    const b = await pair();
    try {
      const got = { a: '', b: '' };
      a.server.on('data', (d: Buffer) => (got.a += d.toString('latin1')));
      b.server.on('data', (d: Buffer) => (got.b += d.toString('latin1')));
      writeAfterIo(a.client, 'one ', 'latin1');
      writeAfterIo(b.client, 'two ', 'latin1');
      // A second write to a held socket joins the first (cork counts nest: both uncorked).
      writeAfterIo(a.client, 'three', 'latin1');
      assert.equal(a.client.writableLength + b.client.writableLength, 13);
      await new Promise((r) => setImmediate(r));
      assert.equal(a.client.writableCorked, 0);
      assert.equal(b.client.writableCorked, 0);
      while (got.a.length < 9 || got.b.length < 4) await once(got.a.length < 9 ? a.server : b.server, 'data');
      assert.equal(got.a, 'one three');
      assert.equal(got.b, 'two ');
    } finally {
      a.close();
      b.close();
    }
  });
});
