/**
 * The floor under `svcca serve` in bench/serve-renew.ts: a plain `node:https` server that
 * does what any Node mTLS endpoint must for one renewal and nothing of the CA's own work —
 * a full TLS 1.3 handshake with a client certificate required and verified against
 * ca.crt (no session tickets, as svcca serve), the peer's leaf read, the HTTP request and
 * its JSON body read, and a JSON answer of the same size (the caller's own chain, which
 * the C client then keeps). No CSR check, no signing, no ledger, no log.
 *
 *   SERVE_FLOOR_DIR=<credential set: tls.crt tls.key ca.crt> SERVE_FLOOR_ANSWER=<file> node serve-floor.js
 * Listens on 127.0.0.1:0 and prints the port on stdout.
 */
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { peerLeafDer } from '../common/tls-peer.js';

const dir = process.env.SERVE_FLOOR_DIR;
const answerFile = process.env.SERVE_FLOOR_ANSWER;
if (!dir || !answerFile) throw new Error('SERVE_FLOOR_DIR and SERVE_FLOOR_ANSWER are required');
const answer = readFileSync(answerFile);

const server = createServer(
  {
    key: readFileSync(join(dir, 'tls.key')),
    cert: readFileSync(join(dir, 'tls.crt')),
    ca: readFileSync(join(dir, 'ca.crt')),
    requestCert: true,
    rejectUnauthorized: true,
    secureOptions: constants.SSL_OP_NO_TICKET,
  },
  (req, res) => {
    if (!peerLeafDer(req.socket as TLSSocket)) {
      res.writeHead(403).end();
      return;
    }
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(body).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length }).end(answer);
    });
  },
);
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') console.log(address.port);
});
process.on('SIGTERM', () => process.exit(0));
