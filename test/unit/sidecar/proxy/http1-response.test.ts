/**
 * The local service's response heads and chunked bodies as http mode reads them: the
 * framing each head announces, the heads refused because their framing could be read two
 * ways, and the chunked decoder fed whole and one byte at a time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder, parseResponseHead, type ResponseHead } from '../../../../sidecar/proxy/http1-response.js';

function head(lines: string[], method = 'GET'): ResponseHead {
  const r = parseResponseHead(lines.join('\r\n'), method);
  if ('error' in r) assert.fail(`refused: ${r.error}`);
  return r;
}

function refused(lines: string[], method = 'GET'): string {
  const r = parseResponseHead(lines.join('\r\n'), method);
  assert.ok('error' in r, `accepted ${JSON.stringify(lines)}`);
  return r.error;
}

describe('parseResponseHead', () => {
  it('reads the status, reason and header fields as sent', () => {
    const h = head(['HTTP/1.1 201 Created here', 'Content-Length: 5', 'X-A:  padded\t', 'x-a: twice']);
    assert.equal(h.status, 201);
    assert.equal(h.reason, 'Created here');
    assert.deepEqual(h.rawHeaders, ['Content-Length', '5', 'X-A', 'padded', 'x-a', 'twice']);
    assert.deepEqual(h.framing, { kind: 'length', length: 5 });
    assert.equal(h.keepAlive, true);
  });

  it('takes a status line without a reason', () => {
    assert.equal(head(['HTTP/1.1 200', 'Content-Length: 0']).reason, '');
    assert.equal(head(['HTTP/1.1 200 ', 'Content-Length: 0']).reason, '');
  });

  it('frames the body by chunked, Content-Length, or the end of the connection', () => {
    assert.deepEqual(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']).framing, { kind: 'chunked' });
    assert.deepEqual(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: Chunked']).framing, { kind: 'chunked' });
    const close = head(['HTTP/1.1 200 OK']);
    assert.deepEqual(close.framing, { kind: 'close' });
    assert.equal(close.keepAlive, false, 'a body read to the end of the connection leaves nothing to reuse');
  });

  it('gives HEAD, 204, 304 and 1xx responses no body whatever they announce', () => {
    assert.deepEqual(head(['HTTP/1.1 200 OK', 'Content-Length: 10'], 'HEAD').framing, { kind: 'none' });
    assert.deepEqual(head(['HTTP/1.1 204 No Content', 'Content-Length: 10']).framing, { kind: 'none' });
    assert.deepEqual(head(['HTTP/1.1 304 Not Modified', 'Transfer-Encoding: chunked']).framing, { kind: 'none' });
    assert.deepEqual(head(['HTTP/1.1 103 Early Hints', 'Link: </a.css>']).framing, { kind: 'none' });
  });

  it('keeps the connection for HTTP/1.1 unless it says close, for HTTP/1.0 only when it says keep-alive', () => {
    assert.equal(head(['HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: close']).keepAlive, false);
    assert.equal(head(['HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: Keep-Alive, CLOSE']).keepAlive, false);
    assert.equal(head(['HTTP/1.0 200 OK', 'Content-Length: 0']).keepAlive, false);
    assert.equal(head(['HTTP/1.0 200 OK', 'Content-Length: 0', 'Connection: keep-alive']).keepAlive, true);
  });

  it("reads the service's Keep-Alive timeout", () => {
    assert.equal(head(['HTTP/1.1 200 OK', 'Content-Length: 0', 'Keep-Alive: timeout=5']).keepAliveTimeoutMs, 5000);
    assert.equal(head(['HTTP/1.1 200 OK', 'Content-Length: 0', 'Keep-Alive: max=100, timeout=2']).keepAliveTimeoutMs, 2000);
    assert.equal(head(['HTTP/1.1 200 OK', 'Content-Length: 0']).keepAliveTimeoutMs, undefined);
  });

  it('refuses framing that could be read two ways', () => {
    assert.match(refused(['HTTP/1.1 200 OK', 'Content-Length: 5', 'Content-Length: 5']), /more than one Content-Length/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Content-Length: 5', 'Transfer-Encoding: chunked']), /both/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked']), /other than chunked/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']), /other than chunked/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Content-Length: +5']), /whole number/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Content-Length: 5, 5']), /whole number/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Content-Length: 1234567890123456']), /whole number/);
  });

  it('refuses malformed heads', () => {
    assert.match(refused(['HTTP/2.0 200 OK']), /status line/);
    assert.match(refused(['HTTP/1.1 20 OK']), /status line/);
    assert.match(refused(['HTTP/1.1 099 OK']), /status line/);
    assert.match(refused(['HTTP/1.1 200 OK\rX']), /status line/);
    assert.match(refused(['HTTP/1.1 200 OK', ' folded: line']), /field name|token/);
    assert.match(refused(['HTTP/1.1 200 OK', 'X-A: 1', '\tcontinued']), /field name/);
    assert.match(refused(['HTTP/1.1 200 OK', 'Bad Name: 1']), /token/);
    assert.match(refused(['HTTP/1.1 200 OK', ': no name']), /field name/);
    assert.match(refused(['HTTP/1.1 200 OK', 'X-A: 1\nContent-Length: 0']), /control character/);
    assert.match(refused(['HTTP/1.1 200 OK', 'X-A: a\0b']), /control character/);
  });
});

function decode(wire: string, step = wire.length): { body: string; used: number; done: boolean } | { error: string } {
  const d = new ChunkedDecoder();
  const input = Buffer.from(wire, 'latin1');
  const parts: Buffer[] = [];
  let used = 0;
  for (let i = 0; i < input.length && !d.done; i += step) {
    const piece = input.subarray(i, i + step);
    const n = d.push(piece, (slice) => parts.push(Buffer.from(slice)));
    if (typeof n !== 'number') return n;
    used += n;
  }
  return { body: Buffer.concat(parts).toString('latin1'), used, done: d.done };
}

describe('ChunkedDecoder', () => {
  const wire = '5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n';

  it('decodes chunks, extensions and trailers, whole or one byte at a time', () => {
    for (const step of [wire.length, 1, 3, 7]) {
      const r = decode(wire, step);
      assert.ok(!('error' in r), `step ${step}`);
      assert.equal(r.body, 'helloabcdefghijklmnopqrstuvwxyz', `step ${step}`);
      assert.equal(r.done, true);
      assert.equal(r.used, wire.length);
    }
  });

  it('hands body bytes on as slices of its input, not copies', () => {
    const input = Buffer.from('3\r\nabc\r\n0\r\n\r\n', 'latin1');
    const slices: Buffer[] = [];
    new ChunkedDecoder().push(input, (s) => slices.push(s));
    assert.equal(slices.length, 1);
    assert.equal(slices[0]!.buffer, input.buffer);
  });

  it('stops at the end of the body and says how much it used', () => {
    const r = decode('0\r\n\r\nHTTP/1.1 200 OK');
    assert.ok(!('error' in r));
    assert.equal(r.used, 5);
    assert.equal(r.done, true);
  });

  it('is not done before the empty line after the last chunk', () => {
    const r = decode('0\r\nX-T: 1\r\n');
    assert.ok(!('error' in r));
    assert.equal(r.done, false);
  });

  it('refuses what is not chunked framing', () => {
    const bad: [string, RegExp][] = [
      ['g\r\n', /not hexadecimal/],
      ['\r\n', /not hexadecimal/],
      [' 5\r\nhello\r\n', /not hexadecimal/],
      ['5 \r\nhello\r\n', /neither CRLF/],
      ['5\nhello\r\n', /neither CRLF/],
      ['5\r\rhello\r\n', /CRLF/],
      ['5\r\nhelloX\r\n', /longer than its size/],
      ['5\r\nhello\rX', /not ended by CRLF/],
      ['5;a\0b\r\nhello\r\n', /control character/],
      ['fffffffffffffff\r\n', /too large/],
      ['0\r\nX-T: 1\n\r\n', /control character/],
      ['0\r\nX-T: 1\r\r\n', /CRLF/],
    ];
    for (const [w, msg] of bad) {
      for (const step of [w.length, 1]) {
        const r = decode(w, step);
        assert.ok('error' in r, `accepted ${JSON.stringify(w)} (step ${step})`);
        assert.match(r.error, msg, JSON.stringify(w));
      }
    }
  });

  it('bounds the trailer section', () => {
    const r = decode(`0\r\nX-T: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
    assert.ok('error' in r);
    assert.match(r.error, /trailer section too large/);
  });
});
