import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, validateConfigText, DEFAULTS } from '../../../../sidecar/config/schema.js';
import { ConfigError } from '../../../../common/errors.js';

const BASE = `identity:
  dir: /etc/svcca/payment-service
  crl: /etc/svcca/crl.pem
policy: /etc/svcca/policy.yaml
inbound:
  listen: 0.0.0.0:8443
  forward: 127.0.0.1:8080
`;

describe('sidecar config schema', () => {
  it('normalizes the contract example, with defaults', () => {
    const c = parseConfig(
      `${BASE}  mode: tcp
outbound:
  - listen: 127.0.0.1:15001
    connect: payment.internal:8443
    serverId: spiffe://example.org/payment-service
  - listen: unix:/run/svcca/payment.sock
    connect: "[::1]:8443"
    serverId: spiffe://example.org/payment-service
admin:
  listen: 127.0.0.1:15000
`,
      '/etc/svcca/sidecar.yaml',
    );
    assert.deepEqual(c.inbound?.listen, { kind: 'tcp', host: '0.0.0.0', port: 8443, text: '0.0.0.0:8443' });
    assert.deepEqual(c.inbound?.forward, { kind: 'tcp', host: '127.0.0.1', port: 8080, text: '127.0.0.1:8080' });
    assert.equal(c.inbound?.mode, 'tcp');
    assert.equal(c.inbound?.handshakeTimeoutMs, DEFAULTS.handshakeTimeoutMs);
    assert.equal(c.outbound.length, 2);
    assert.deepEqual(c.outbound[1]!.listen, { kind: 'unix', path: '/run/svcca/payment.sock', text: 'unix:/run/svcca/payment.sock' });
    assert.equal(c.outbound[1]!.connect.host, '::1');
    assert.equal(c.shutdownGraceMs, 30_000);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.reloadIntervalMs, 2_000);
    assert.equal(c.reloadHashIntervalMs, 60_000);
  });

  it('takes any loopback address for inbound.forward and outbound[].listen', () => {
    for (const local of ['localhost:8080', '[::1]:8080', '127.0.0.2:8080', '[::ffff:127.0.0.1]:8080']) {
      const c = parseConfig(
        `${BASE.replace('127.0.0.1:8080', `"${local}"`)}outbound:\n  - listen: "${local.replace('8080', '15001')}"\n    connect: a:1\n    serverId: spiffe://example.org/a\n`,
        's.yaml',
      );
      assert.equal(c.inbound?.forward.text, local);
      assert.equal(c.outbound[0]!.listen.text, local.replace('8080', '15001'));
    }
  });

  it('reads the handshake budgets and the header limit; an unset per-address budget follows a lowered total', () => {
    const d = parseConfig(BASE, 's.yaml').inbound!;
    assert.deepEqual([d.maxHandshakes, d.maxHandshakesPerAddress, d.maxRequestHeaders], [1024, 256, 100]);
    const c = parseConfig(`${BASE}  maxHandshakes: 50\n  maxRequestHeaders: 40\n`, 's.yaml').inbound!;
    assert.deepEqual([c.maxHandshakes, c.maxHandshakesPerAddress, c.maxRequestHeaders], [50, 50, 40]);
  });

  it('reads inbound.upstream (default http1) and outbound[].alpn', () => {
    assert.equal(parseConfig(`${BASE}  mode: http\n`, 's.yaml').inbound!.upstream, 'http1');
    assert.equal(parseConfig(`${BASE}  mode: http\n  upstream: h2c\n`, 's.yaml').inbound!.upstream, 'h2c');
    const c = parseConfig(
      `${BASE}outbound:\n  - listen: 127.0.0.1:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n    alpn: [h2, h2]\n`,
      's.yaml',
    );
    assert.deepEqual(c.outbound[0]!.alpn, ['h2']);
    // An app's own HTTP/2 needs a connection of its own: tunnels are off for it.
    assert.equal(c.outbound[0]!.tunnel, 'off');
    const plain = parseConfig(
      `${BASE}outbound:\n  - listen: 127.0.0.1:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n`,
      's.yaml',
    );
    assert.equal(plain.outbound[0]!.tunnel, 'auto');
  });

  it('reads reload.interval and reload.hashInterval', () => {
    const c = parseConfig(`${BASE}reload:\n  interval: 500ms\n  hashInterval: 5m\n`, 's.yaml');
    assert.equal(c.reloadIntervalMs, 500);
    assert.equal(c.reloadHashIntervalMs, 300_000);
  });

  it('resolves relative paths against the config file folder', () => {
    const c = parseConfig(
      'identity:\n  dir: sets/payment\npolicy: policy.yaml\ninbound:\n  listen: 127.0.0.1:0\n  forward: 127.0.0.1:1\n',
      '/srv/mesh/sidecar.yaml',
    );
    assert.equal(c.identity.dir, '/srv/mesh/sets/payment');
    assert.equal(c.policy, '/srv/mesh/policy.yaml');
  });

  it('accepts http mode in the schema', () => {
    assert.equal(parseConfig(`${BASE}  mode: http\n`, 's.yaml').inbound?.mode, 'http');
  });

  const refusals: { name: string; text: string; want: RegExp }[] = [
    {
      name: 'port-only forward',
      text: BASE.replace('127.0.0.1:8080', '"8080"'),
      want: /^s\.yaml: inbound\.forward: expected host:port or unix:\/path, got "8080"$/,
    },
    { name: 'misspelt key with suggestion', text: BASE.replace('forward:', 'forwrd:'), want: /inbound\.forwrd: unknown key/ },
    { name: 'forward port 0', text: BASE.replace('127.0.0.1:8080', '127.0.0.1:0'), want: /inbound\.forward: port 0 is out of range/ },
    { name: 'list where a map belongs', text: 'identity: [a]\n', want: /identity: expected a map, got a list/ },
    { name: 'empty file', text: '', want: /is empty/ },
    { name: 'neither inbound nor outbound', text: 'identity:\n  dir: /x\n', want: /has neither inbound nor outbound/ },
    {
      name: 'duplicate listeners',
      text: `${BASE}admin:\n  listen: 0.0.0.0:8443\n`,
      want: /admin\.listen: 0\.0\.0\.0:8443 is also inbound\.listen/,
    },
    { name: 'outbound not a list', text: `${BASE}outbound:\n  listen: a:1\n`, want: /outbound: expected a list/ },
    {
      name: 'serverId from no trust domain',
      text: `${BASE}outbound:\n  - listen: 127.0.0.1:1\n    connect: a:1\n    serverId: spiffe://\n`,
      want: /outbound\[0\]\.serverId/,
    },
    { name: 'a week-long timeout', text: `${BASE}  idleTimeout: 30d\n`, want: /inbound\.idleTimeout: "30d" is longer than a week/ },
    {
      name: 'a hash check more often than once a second',
      text: `${BASE}reload:\n  hashInterval: 100ms\n`,
      want: /^s\.yaml: reload\.hashInterval: "100ms" is shorter than 1s$/,
    },
    { name: 'a misspelt reload key', text: `${BASE}reload:\n  hashinterval: 5m\n`, want: /reload\.hashinterval: unknown key$/ },
    {
      name: 'a forward off this host',
      text: BASE.replace('127.0.0.1:8080', '10.0.0.5:8080'),
      want: /^s\.yaml: inbound\.forward: "10\.0\.0\.5:8080" is not a loopback address: the plaintext leg/,
    },
    {
      name: 'a forward by host name',
      text: BASE.replace('127.0.0.1:8080', 'app.internal:8080'),
      want: /inbound\.forward: "app\.internal:8080" is not a loopback address/,
    },
    {
      name: 'an outbound listener on every address',
      text: `${BASE}outbound:\n  - listen: 0.0.0.0:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n`,
      want: /outbound\[0\]\.listen: "0\.0\.0\.0:15001" is not a loopback address: anything that reaches it could call out as this service/,
    },
    {
      name: 'an outbound listener on every IPv6 address',
      text: `${BASE}outbound:\n  - listen: "[::]:15001"\n    connect: a:1\n    serverId: spiffe://example.org/a\n`,
      want: /outbound\[0\]\.listen: "\[::\]:15001" is not a loopback address/,
    },
    { name: 'a YAML tag', text: `${BASE}  mode: !!binary dGNw\n`, want: /YAML tag !!binary is not allowed in a config/ },
    {
      name: 'a per-address handshake budget above the whole one',
      text: `${BASE}  maxHandshakes: 10\n  maxHandshakesPerAddress: 20\n`,
      want: /inbound\.maxHandshakesPerAddress: is 20, above inbound\.maxHandshakes \(10\)/,
    },
    {
      name: "a header limit at Node's own",
      text: `${BASE}  maxRequestHeaders: 1000\n`,
      want: /inbound\.maxRequestHeaders: expected a whole number between 1 and 500/,
    },
    {
      name: 'an unknown upstream protocol',
      text: `${BASE}  mode: http\n  upstream: http2\n`,
      want: /inbound\.upstream: expected http1 or h2c, got "http2"/,
    },
    { name: 'upstream in tcp mode', text: `${BASE}  upstream: h2c\n`, want: /inbound\.upstream: applies to mode: http only/ },
    {
      name: 'an ALPN the sidecar does not speak',
      text: `${BASE}outbound:\n  - listen: 127.0.0.1:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n    alpn: [h3]\n`,
      want: /outbound\[0\]\.alpn: "h3" is not a protocol the sidecar speaks \(h2, http\/1\.1\)/,
    },
    {
      name: 'tunnel: auto with alpn',
      text: `${BASE}outbound:\n  - listen: 127.0.0.1:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n    alpn: [h2]\n    tunnel: auto\n`,
      want: /outbound\[0\]\.tunnel: auto cannot carry an app speaking HTTP\/2 \(alpn is set\)/,
    },
    {
      name: 'alpn as a word',
      text: `${BASE}outbound:\n  - listen: 127.0.0.1:15001\n    connect: a:1\n    serverId: spiffe://example.org/a\n    alpn: h2\n`,
      want: /outbound\[0\]\.alpn: expected a list such as \[h2\]/,
    },
    {
      name: 'a unix path beyond sun_path',
      text: BASE.replace('127.0.0.1:8080', `unix:/${'a'.repeat(120)}`),
      want: /longer than 107 bytes/,
    },
  ];
  for (const { name, text, want } of refusals) {
    it(`refuses ${name}`, () => {
      const r = validateConfigText(text, 's.yaml');
      assert.equal(r.config, undefined);
      assert.ok(
        r.problems.some((p) => want.test(p.message)),
        r.problems.map((p) => p.message).join('\n'),
      );
    });
  }

  it('lists every problem at once, and parseConfig throws the first with a count', () => {
    const text = BASE.replace('forward:', 'forwrd:').replace('0.0.0.0:8443', 'nowhere');
    const r = validateConfigText(text, 's.yaml');
    assert.ok(r.problems.length >= 3);
    assert.throws(
      () => parseConfig(text, 's.yaml'),
      (e: unknown) => e instanceof ConfigError && /more problems: run with --check/.test(e.hint),
    );
  });
});
