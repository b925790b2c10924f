import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { selectInboundAlpn, TUNNEL_ALPN } from '../../../../sidecar/proxy/tunnel-protocol.js';

describe('selectInboundAlpn', () => {
  const cases: { offered: string[]; h2: boolean; want: string }[] = [
    { offered: [TUNNEL_ALPN, 'http/1.1'], h2: false, want: TUNNEL_ALPN },
    { offered: [TUNNEL_ALPN, 'http/1.1'], h2: true, want: TUNNEL_ALPN },
    // http mode serves HTTP/2; tcp mode passes bytes, so it never claims h2 when it can say http/1.1.
    { offered: ['h2', 'http/1.1'], h2: true, want: 'h2' },
    { offered: ['h2', 'http/1.1'], h2: false, want: 'http/1.1' },
    { offered: ['http/1.1'], h2: true, want: 'http/1.1' },
    // Nothing shared: the client's own first choice (Node has no "select none").
    { offered: ['h2'], h2: false, want: 'h2' },
    { offered: ['spdy/3'], h2: true, want: 'spdy/3' },
  ];
  for (const c of cases) {
    it(`[${c.offered.join(', ')}] in ${c.h2 ? 'http' : 'tcp'} mode selects ${c.want}`, () =>
      assert.equal(selectInboundAlpn(c.offered, { h2: c.h2 }), c.want));
  }
});
