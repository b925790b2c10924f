/**
 * Writes a piece of a response body to the caller, given as a slice of the upstream
 * client's shared read buffer (http1-upstream.ts): straight from that buffer when the
 * caller's TLS socket takes it at once, otherwise as a copy.
 *
 * A TLS socket's write copies the cleartext into OpenSSL before it returns
 * (sidecar/net/shared-read.ts), but only when nothing is queued, corked or in flight on it
 * and in the response: otherwise Node keeps the chunk by reference, and the next read
 * would overwrite it. node:http corks the socket around every write until the next tick;
 * that cork is released here, so the slice is in OpenSSL before the read returns.
 */
import type { ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';

/**
 * `tls`: the caller's TLS socket when the response has a Content-Length (node:http writes
 * the body as given), undefined otherwise (a tunnel stream, a chunked response): copies.
 * With `last`, the piece ends the response: res.end(piece) writes it and the end in one
 * go, where write() then end() would add an empty TLS write while the first is in
 * flight. Returns res.write's answer (true after an end).
 */
export function writeResponsePiece(res: ServerResponse, tls: TLSSocket | undefined, chunk: Buffer, shared: boolean, last = false): boolean {
  const straight = !shared || (tls !== undefined && takesAtOnce(res, tls));
  const take = straight ? chunk : Buffer.from(chunk);
  if (last) {
    // end() uncorks the socket itself before it returns.
    res.end(take);
    return true;
  }
  const ok = res.write(take);
  if (shared && straight && tls!.writableCorked > 0) tls!.uncork();
  return ok;
}

function takesAtOnce(res: ServerResponse, tls: TLSSocket): boolean {
  return res.socket === tls && res.writableLength === 0 && res.writableCorked === 0 && tls.writableCorked === 0 && !tls.connecting;
}
