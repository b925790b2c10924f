// A stand-in for a real service: answers on LISTEN (loopback only) and, on /call, calls
// UPSTREAM (its sidecar's outbound listener) and returns what came back.
import { createServer } from 'node:http';

const service = process.env.SERVICE ?? 'app';
const [host, port] = (process.env.LISTEN ?? '127.0.0.1:8080').split(':');
const upstream = process.env.UPSTREAM;

createServer(async (req, res) => {
  if (req.url === '/call' && upstream) {
    try {
      const r = await fetch(upstream);
      res.end(`${service} called ${upstream}: ${r.status} ${await r.text()}`);
    } catch (err) {
      res.writeHead(502).end(`${service} could not call ${upstream}: ${err.cause?.code ?? err.message}\n`);
    }
    return;
  }
  res.end(`hello from ${service}\n`);
}).listen(Number(port), host, () => console.log(`${service} listening on ${host}:${port}`));
