import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffMs } from '../../../../sidecar/proxy/tunnel-pool.js';

describe('tunnel dial back-off', () => {
  it('doubles from the base with each failure in a row, up to the cap', () => {
    const top = () => 1; // the top of each jitter range
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffMs(n, top)),
      [100, 200, 400, 800, 1600, 3200, 5000, 5000].map((ms) => Math.min(ms, BACKOFF_MAX_MS)),
    );
    assert.equal(backoffMs(1000, top), BACKOFF_MAX_MS, 'no overflow after many failures');
    assert.equal(backoffMs(1, top), BACKOFF_BASE_MS);
  });

  it('draws each wait in [½, 1] of its ceiling, so the callers of a sidecar that went down spread out', () => {
    for (const failures of [1, 3, 10]) {
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (failures - 1));
      assert.equal(
        backoffMs(failures, () => 0),
        ceiling / 2,
      );
      assert.equal(
        backoffMs(failures, () => 0.5),
        (ceiling * 3) / 4,
      );
      // With the real random source: in range, and not one fixed value.
      const waits = new Set(Array.from({ length: 50 }, () => backoffMs(failures)));
      for (const w of waits) assert.ok(w >= ceiling / 2 && w <= ceiling, `${w} ms outside [${ceiling / 2}, ${ceiling}]`);
      assert.ok(waits.size > 5, `jitter: 50 draws gave only ${[...waits].join(', ')}`);
    }
  });
});
