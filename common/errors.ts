/**
 * Errors users see. Each has a stable `code`, a message saying what is wrong and a hint
 * saying what to do; the CLI prints both on one line and exits with `exitCode`.
 * The cause (if any) is kept apart for debug output and never printed by default.
 */
export const ExitCode = {
  ok: 0,
  user: 1,
  partial: 2,
  denied: 3,
  attention: 4,
  /** `policy check`: the allow list denies, but the callee's entry is in audit mode, so the sidecar lets it through. */
  wouldDeny: 5,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class SvccaError extends Error {
  override readonly name: string = 'SvccaError';
  readonly code: string;
  readonly hint: string;
  readonly exitCode: ExitCodeValue;

  constructor(code: string, message: string, hint = '', options: { exitCode?: ExitCodeValue; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = hint;
    this.exitCode = options.exitCode ?? ExitCode.user;
  }

  /** The one line a user sees: what is wrong, then what to do. */
  get line(): string {
    return this.hint ? `${this.message}; ${this.hint}` : this.message;
  }
}

/** A flag, argument or config value is malformed. */
export class UsageError extends SvccaError {
  override readonly name = 'UsageError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_USAGE', message, hint, { cause });
  }
}

/** Input data (PEM, CSR, certificate, YAML) could not be used. */
export class InputError extends SvccaError {
  override readonly name = 'InputError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_INPUT', message, hint, { cause });
  }
}

/** The CA directory is missing, foreign, or in a state the command cannot work with. */
export class CaStateError extends SvccaError {
  override readonly name = 'CaStateError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_CA_STATE', message, hint, { cause });
  }
}

/** A passphrase or password did not open a key, or could not be read. */
export class PassphraseError extends SvccaError {
  override readonly name = 'PassphraseError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_PASSPHRASE', message, hint, { cause });
  }
}

/** The identity (certificate set) is unusable. */
export class IdentityError extends SvccaError {
  override readonly name = 'IdentityError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_IDENTITY', message, hint, { cause });
  }
}

/** A configuration or policy file breaks the schema; message starts with the key path. */
export class ConfigError extends SvccaError {
  override readonly name = 'ConfigError';
  constructor(message: string, hint = '', cause?: unknown) {
    super('E_CONFIG', message, hint, { cause });
  }
}

/** Turns anything thrown into one printable line, never a stack trace. */
export function errorLine(err: unknown): string {
  if (err instanceof SvccaError) return err.line;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

/** Node's errno code of a caught error, if any. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
