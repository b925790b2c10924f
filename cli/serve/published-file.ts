/**
 * A CA file served as is (`crl.pem`, `ca.crt`), re-read only when its stat changes, with
 * an ETag (SHA-256 of the content) so clients that poll get 304 Not Modified.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readCappedFile, type FileCap } from '../../common/capped-file.js';

export class PublishedFile {
  #stamp = '';
  #body: Buffer = Buffer.alloc(0);
  #etag = '';

  constructor(
    private readonly path: string,
    private readonly cap: FileCap,
    private readonly contentType: string,
  ) {}

  /** The current content and its ETag; throws when the file cannot be read. */
  current(): { body: Buffer; etag: string } {
    const st = statSync(this.path);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (stamp !== this.#stamp) {
      this.#body = readCappedFile(this.path, this.cap);
      this.#etag = `"${createHash('sha256').update(this.#body).digest('hex')}"`;
      this.#stamp = stamp;
    }
    return { body: this.#body, etag: this.#etag };
  }

  /** Answers a GET or HEAD: 304 when If-None-Match names the current ETag. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    const { body, etag } = this.current();
    const headers = { etag, 'content-type': this.contentType, 'cache-control': 'no-cache' };
    const ifNoneMatch = req.headers['if-none-match'];
    if (ifNoneMatch?.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}`)) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
