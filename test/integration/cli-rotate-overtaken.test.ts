/**
 * A rotate claims a batch of services, then renews them one by one. Whatever lands in
 * between — a revoke, an issue with new names — must win: the renewal of a service that
 * changed is skipped, never recorded over it. The --exec hook of the first service makes
 * the changes, so they land exactly in that window.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, SVCCA_BIN, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { readLedger, readSet } from './cli-rotate-helpers.js';

describe('svcca rotate: a service changed during the run is left as the change made it', () => {
  let ca: TestCa;
  const sets = new Map<string, string>();
  before(() => {
    ca = makeCa();
    for (const s of ['a-first', 'b-revoked', 'c-reissued']) sets.set(s, ca.issue(s));
  });
  after(() => ca?.cleanup());

  it('skips a service revoked, and one re-issued, after the run claimed them', () => {
    const pass = join(ca.root, 'pass');
    writeFileSync(pass, `${TEST_PASSPHRASE}\n`, { mode: 0o600 });
    const svcca = `${JSON.stringify(process.execPath)} ${JSON.stringify(SVCCA_BIN)} --dir ${JSON.stringify(ca.dir)}`;
    const hook = join(ca.root, 'hook.sh');
    writeFileSync(
      hook,
      [
        '#!/bin/sh',
        'set -e',
        '[ "$SVCCA_SERVICE" = a-first ] || exit 0',
        `${svcca.replace('--dir', 'revoke b-revoked --reason keyCompromise --dir')} --passphrase-file ${JSON.stringify(pass)} >/dev/null`,
        `${svcca.replace('--dir', 'issue c-reissued --dns new.internal --dir')} --passphrase-file ${JSON.stringify(pass)} >/dev/null`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const before = readLedger(ca);
    const r = ca.svcca(['rotate', '--renew-before', '100%', '--exec', hook, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { renewed: { service: string }[]; skipped: { service: string; reason: string }[] };
    assert.deepEqual(
      out.renewed.map((x) => x.service),
      ['a-first'],
    );
    assert.deepEqual(out.skipped.map((x) => x.service).sort(), ['b-revoked', 'c-reissued']);
    for (const s of out.skipped) assert.match(s.reason, /changed while this run was renewing it/);

    const after = readLedger(ca);
    // The revocation stands: still the revoked certificate, rotation off, nothing renewed.
    assert.equal(after.active.get('b-revoked')!.serial, before.active.get('b-revoked')!.serial);
    assert.equal(after.active.get('b-revoked')!.rotation, false);
    assert.ok(after.revoked.has(before.active.get('b-revoked')!.serial!));
    assert.equal(after.events.filter((e) => e.kind === 'renew' && e.service === 'b-revoked').length, 0);
    // The issue stands: its certificate (with the new name) is the active one and the set.
    const active = after.active.get('c-reissued')!.serial!;
    assert.equal(after.events.filter((e) => e.kind === 'renew' && e.service === 'c-reissued').length, 0);
    const set = readSet(sets.get('c-reissued')!);
    assert.equal(set.serial, active);
    assert.match(new X509Certificate(set.leafPem).subjectAltName ?? '', /DNS:new\.internal/);
    assert.equal(after.integrity, 'ok');
  });
});
