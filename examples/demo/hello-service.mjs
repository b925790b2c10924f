// A tiny HTTP service for the demo: says who it is, and who called it (the
// x-forwarded-client-cert header its sidecar sets in http mode).
import { createServer } from 'node:http';

const [name, port] = [process.argv[2] ?? 'service', Number(process.argv[3] ?? 8080)];
createServer((req, res) => {
  const caller = req.headers['x-forwarded-client-cert'];
  res.setHeader('content-type', 'text/plain');
  res.end(`${name} answered ${req.method} ${req.url}${caller ? ` (caller: ${caller})` : ''}\n`);
}).listen(port, '127.0.0.1');
