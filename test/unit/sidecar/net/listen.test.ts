import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenOn } from '../../../../sidecar/net/listen.js';

describe('listenOn (unix sockets)', () => {
  it('creates the socket 0600 from the start, not only after a chmod', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcca-listen-'));
    const path = join(dir, 'out.sock');
    const server = createServer();
    let modeAtBind: number | undefined;
    // Runs before listenOn's own callback, so before its chmod.
    server.once('listening', () => (modeAtBind = statSync(path).mode & 0o777));
    try {
      await listenOn(server, { kind: 'unix', path, text: `unix:${path}` });
      assert.equal(modeAtBind?.toString(8), '600');
      assert.equal((statSync(path).mode & 0o777).toString(8), '600');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
