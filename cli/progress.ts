/**
 * Progress of a long run (rotate over thousands of services, a CRL of many entries), drawn
 * on stderr only when a person is watching: stderr is a terminal, not --json, not TERM=dumb.
 * Under cron or in a pipe nothing is drawn, so logs and --json output never see it.
 */
import { Presets, SingleBar } from 'cli-progress';

export interface Progress {
  /** `done` of the run's `total` items are finished; `item` names the last one. */
  update(done: number, item?: string): void;
  /** Erases the bar, so the command's own lines follow on a clean line. */
  stop(): void;
}

export const SILENT: Progress = { update() {}, stop() {} };

/** Runs shorter than this finish before a bar would tell anyone anything. */
const MIN_ITEMS = 20;

export function progressWanted(stderr: NodeJS.WriteStream, json: boolean, env: NodeJS.ProcessEnv): boolean {
  return stderr.isTTY === true && !json && env.TERM !== 'dumb';
}

export function startProgress(wanted: boolean, label: string, total: number, stderr: NodeJS.WriteStream = process.stderr): Progress {
  if (!wanted || total < MIN_ITEMS) return SILENT;
  const bar = new SingleBar(
    {
      stream: stderr,
      format: `${label} [{bar}] {value}/{total} {percentage}% · eta {eta_formatted} · {item}`,
      clearOnComplete: true,
      hideCursor: true,
      etaBuffer: 200,
      fps: 10,
    },
    Presets.shades_classic,
  );
  bar.start(total, 0, { item: '' });
  return {
    update: (done, item = '') => bar.update(done, { item }),
    stop: () => bar.stop(),
  };
}
