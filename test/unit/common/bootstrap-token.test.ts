import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBootstrapToken, newTokenSecret, parseBootstrapToken, tokenSecretHash } from '../../../common/bootstrap-token.js';
import { UsageError } from '../../../common/errors.js';

const claims = { trustDomain: 'example.org', service: 'ns/prod/api', rootSha256: 'ab'.repeat(32), secret: newTokenSecret() };

describe('bootstrap tokens', () => {
  it('round-trips, and the stored hash is not the secret', () => {
    const text = formatBootstrapToken(claims);
    assert.match(text, /^svcca1\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(parseBootstrapToken(`  ${text}\n`), claims);
    assert.notEqual(tokenSecretHash(claims.secret), claims.secret);
    assert.match(tokenSecretHash(claims.secret), /^[0-9a-f]{64}$/);
  });

  const bad: { name: string; text: string }[] = [
    { name: 'empty', text: '' },
    { name: 'another prefix', text: formatBootstrapToken(claims).replace('svcca1.', 'svcca2.') },
    { name: 'not base64 JSON', text: 'svcca1.!!!' },
    { name: 'a fingerprint that is not SHA-256 hex', text: formatBootstrapToken({ ...claims, rootSha256: 'xyz' }) },
    { name: 'a short secret', text: formatBootstrapToken({ ...claims, secret: 'abc' }) },
    { name: 'too long', text: `svcca1.${'A'.repeat(5000)}` },
  ];
  for (const b of bad) {
    it(`refuses ${b.name} with one line naming the flag`, () => {
      assert.throws(
        () => parseBootstrapToken(b.text, '--token'),
        (e: unknown) => e instanceof UsageError && /^--token is not an svcca bootstrap token/.test(e.message),
      );
    });
  }
});
