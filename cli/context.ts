/**
 * What every command is handed: where the CA lives, how to print, how to get secrets.
 */
import type { Output } from './output.js';

export interface GlobalOptions {
  /** CA data directory (--dir, SVCCA_DIR, default ./ca-data). */
  readonly dir: string;
  readonly json: boolean;
}

export interface CommandContext {
  readonly global: GlobalOptions;
  readonly out: Output;
  readonly env: NodeJS.ProcessEnv;
  /** Set by a command that finished with something needing attention (exit 4) or partial failure (exit 2). */
  exitCode: number;
}
