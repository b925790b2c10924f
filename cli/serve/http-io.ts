/**
 * Reading bounded JSON request bodies and writing JSON answers: every error is
 * `{"error": "<code>", "message": "<what and what to do>"}` with its HTTP status.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An error answer: status, stable code, and a message safe to show the caller. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Request bodies are a CSR and perhaps a token: a few kilobytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Reads a JSON object body of at most `limit` bytes. A larger declared or sent body is
 * refused with 413 as soon as it is known, without keeping the rest. A client that sent
 * `Expect: 100-continue` is told to go on only once the body is one this will read.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, limit = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json')
    throw new HttpError(415, 'unsupported-media-type', 'send the request as JSON with Content-Type: application/json');
  const tooLarge = () => {
    discardRest(req);
    return new HttpError(413, 'body-too-large', `the request body is larger than ${limit} bytes; send only the CSR (and the token)`);
  };
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  // Node's own test for the requests it hands to checkContinue, so that every request
  // routed there and read here is told to go on.
  if (/(?:^|\W)100-continue(?:$|\W)/i.test(req.headers.expect ?? '') && !res.headersSent) res.writeContinue();
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve());
    req.once('error', reject);
    req.once('aborted', () => reject(new HttpError(400, 'aborted', 'the request was cut off')));
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'bad-json', 'the request body is not valid JSON; send {"csr": "<PEM>"}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new HttpError(400, 'bad-json', 'the request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/** What a refused upload may still send, and for how long, before its connection is cut. */
const LINGER_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 5_000;

/**
 * After a 413, reads and drops what the client is still sending, up to a bound. Closing
 * on a client in mid-upload makes its kernel answer with a reset that takes the unread
 * 413 with it, so the client sees "connection reset" instead of the reason (nginx and
 * Apache "linger" for the same cause). Past LINGER_BYTES or LINGER_MS the connection is
 * cut: a refused upload cannot make the CA read without end.
 */
function discardRest(req: IncomingMessage): void {
  let dropped = 0;
  const cut = () => req.socket.destroy();
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) cut();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

/** A string field of a JSON body, or a 400 naming it. */
export function requireString(body: Record<string, unknown>, field: string, example: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value.length === 0)
    throw new HttpError(400, 'bad-request', `the request needs a "${field}" string (${example})`);
  return value;
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: err.code, message: err.message }, err.headers);
}
