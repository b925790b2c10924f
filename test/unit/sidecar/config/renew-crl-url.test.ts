import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, validateConfigText } from '../../../../sidecar/config/schema.js';

const withIdentity = (identity: string) =>
  `identity:\n  dir: /etc/svcca/payment-service\n${identity}policy: /etc/svcca/policy.yaml\ninbound:\n  listen: 0.0.0.0:8443\n  forward: 127.0.0.1:8080\n`;

describe('sidecar config: identity.renew and an https identity.crl (issue 16)', () => {
  it('reads identity.renew and an https identity.crl with its interval', () => {
    const c = parseConfig(
      withIdentity(
        '  crl: https://ca.internal:9443/v1/crl.pem\n  crlInterval: 30s\n  renew:\n    ca: https://ca.internal:9443\n    before: 8h\n',
      ),
      's.yaml',
    );
    assert.equal(c.identity.crlUrl?.href, 'https://ca.internal:9443/v1/crl.pem');
    assert.equal(c.identity.crl, 'https://ca.internal:9443/v1/crl.pem');
    assert.equal(c.identity.crlIntervalMs, 30_000);
    assert.equal(c.identity.renew?.ca.origin, 'https://ca.internal:9443');
    assert.deepEqual(c.identity.renew?.before, { kind: 'duration', ms: 8 * 3_600_000, text: '8h' });
  });

  it('defaults: before 33%, a CRL file stays a file, a bare CA URL gets /v1/crl.pem', () => {
    const c = parseConfig(withIdentity('  crl: https://ca.internal:9443\n  renew:\n    ca: https://ca.internal:9443\n'), 's.yaml');
    assert.equal(c.identity.renew?.before.text, '33%');
    assert.equal(c.identity.crlUrl?.pathname, '/v1/crl.pem');
    const f = parseConfig(withIdentity('  crl: /etc/svcca/crl.pem\n'), 's.yaml');
    assert.equal(f.identity.crlUrl, undefined);
    assert.equal(f.identity.crl, '/etc/svcca/crl.pem');
    assert.equal(f.identity.renew, undefined);
  });

  const bad: { name: string; identity: string; want: RegExp }[] = [
    { name: 'an http CRL URL', identity: '  crl: http://ca.internal/v1/crl.pem\n', want: /identity\.crl: .*https only/ },
    { name: 'renew without ca', identity: '  renew:\n    before: 33%\n', want: /identity\.renew\.ca: missing/ },
    { name: 'a renew.ca that is not https', identity: '  renew:\n    ca: ca.internal:9443\n', want: /identity\.renew\.ca/ },
    {
      name: 'a bad threshold',
      identity: '  renew:\n    ca: https://ca:9443\n    before: 0%\n',
      want: /identity\.renew\.before: .*more than 0%/,
    },
    { name: 'a misspelt renew key', identity: '  renew:\n    ca: https://ca:9443\n    befor: 33%\n', want: /befor/ },
    {
      name: 'crlInterval with a file CRL',
      identity: '  crl: /etc/svcca/crl.pem\n  crlInterval: 10s\n',
      want: /identity\.crlInterval: applies only to an https/,
    },
  ];
  for (const b of bad) {
    it(`refuses ${b.name}, naming the key`, () => {
      const r = validateConfigText(withIdentity(b.identity), 's.yaml');
      assert.equal(r.config, undefined);
      assert.ok(
        r.problems.some((p) => b.want.test(p.message)),
        r.problems.map((p) => p.message).join('\n'),
      );
    });
  }
});
