import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { progressWanted, startProgress } from '../../../cli/progress.js';

/** A stream that says it is (or is not) a terminal and keeps what was drawn on it. */
function stream(isTTY: boolean): NodeJS.WriteStream & { text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  Object.assign(w, {
    isTTY,
    columns: 120,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
    text: () => chunks.join(''),
  });
  return w;
}

describe('progressWanted', () => {
  const cases: { name: string; tty: boolean; json: boolean; term?: string; want: boolean }[] = [
    { name: 'a terminal', tty: true, json: false, term: 'xterm', want: true },
    { name: 'a pipe or cron', tty: false, json: false, term: 'xterm', want: false },
    { name: '--json on a terminal', tty: true, json: true, term: 'xterm', want: false },
    { name: 'TERM=dumb', tty: true, json: false, term: 'dumb', want: false },
  ];
  for (const c of cases)
    it(`${c.want ? 'draws' : 'does not draw'} on ${c.name}`, () =>
      assert.equal(progressWanted(stream(c.tty), c.json, { TERM: c.term }), c.want));
});

describe('startProgress', () => {
  it('draws nothing for a short run, even on a terminal', () => {
    const s = stream(true);
    const p = startProgress(true, 'renewing', 5, s);
    p.update(3, 'x');
    p.stop();
    assert.equal(s.text(), '');
  });
  it('draws a long run with its label, count and item', () => {
    const s = stream(true);
    const p = startProgress(true, 'renewing', 40, s);
    p.update(40, 'svc-39');
    p.stop();
    assert.match(s.text(), /renewing \[[^\]]+\] 40\/40 100%/);
  });
});
