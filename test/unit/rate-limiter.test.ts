import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from '../../cli/serve/rate-limiter.js';

describe('svcca serve rate limiter (per caller token buckets, time injected)', () => {
  it('allows a burst, then asks to wait, refills at the rate, and keeps callers apart', () => {
    const rl = new RateLimiter({ perMinute: 6, burst: 3 });
    const t = 1_000_000;
    assert.deepEqual([rl.take('a', t), rl.take('a', t), rl.take('a', t)], [0, 0, 0]);
    assert.equal(rl.take('a', t), 10, 'one request every 10 s at 6 a minute');
    assert.equal(rl.take('b', t), 0, 'another caller has its own bucket');
    assert.equal(rl.take('a', t + 10_000), 0, 'refilled after 10 s');
    assert.ok(rl.take('a', t + 10_000) > 0);
  });
});
