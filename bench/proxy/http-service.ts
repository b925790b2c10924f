/**
 * The local service every target forwards to (and the "direct" baseline talks to):
 * a plain HTTP/1.1 server on 127.0.0.1, in its own process.
 *
 *   GET /small            → 200, a 64-byte body (the small request of every phase)
 *   GET /big?bytes=N      → 200, N bytes streamed from one preallocated 64 KiB chunk
 *
 * Usage: node dist/bench/proxy/http-service.js [port]   (prints "ready <port>" when up)
 */
import { createServer, type ServerResponse } from 'node:http';

export const SMALL_BODY = Buffer.from('svcca bench: a small response body of sixty-four bytes, exactly\n');
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const MAX_BIG = 4 * 1024 * 1024 * 1024;

function streamBig(res: ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      const ok = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      if (!ok) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function main(): void {
  const port = Number(process.argv[2] ?? 0);
  const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
    const url = req.url ?? '/';
    if (url === '/small') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(SMALL_BODY.length) });
      res.end(SMALL_BODY);
      return;
    }
    const m = /^\/big\?bytes=(\d{1,10})$/.exec(url);
    if (m && Number(m[1]) <= MAX_BIG) {
      streamBig(res, Number(m[1]));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain', 'content-length': '10' });
    res.end('not found\n');
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 130_000;
  server.listen({ host: '127.0.0.1', port }, () => {
    const a = server.address();
    process.stdout.write(`ready ${typeof a === 'object' && a ? a.port : port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

main();
