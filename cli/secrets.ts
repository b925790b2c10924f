/**
 * Passphrases and passwords: from a file (one trailing newline stripped), an
 * environment variable, or a prompt on a TTY that never echoes. Automation never
 * needs the prompt (smallstep/cli#220).
 */
import { PassphraseError, SvccaError, errnoCode } from '../common/errors.js';
import { FILE_CAPS, readCappedText } from '../common/capped-file.js';

export interface SecretSource {
  /** What the secret opens, for messages: "the intermediate key". */
  readonly what: string;
  readonly file?: string;
  readonly fileFlag: string;
  readonly envVar: string;
  readonly env: NodeJS.ProcessEnv;
  /** Ask twice on a TTY (when creating something). */
  readonly confirm?: boolean;
}

export function readSecretFile(path: string, flag: string): string {
  let text: string;
  try {
    text = readCappedText(path, FILE_CAPS.secret, {
      label: `${flag} ${path}`,
      error: PassphraseError,
      hint: 'the file holds the secret on its first line; check that this is the right file',
    });
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    const code = errnoCode(err);
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'is not readable by this user'
          : code === 'EISDIR'
            ? 'is a directory'
            : `cannot be read (${code})`;
    throw new PassphraseError(`${flag} ${path} ${why}`, 'give a readable file holding the secret on its first line');
  }
  const secret = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
  if (secret.length === 0) throw new PassphraseError(`${flag} ${path} is empty`, 'put the secret in the file');
  return secret;
}

/** Returns the secret, or undefined when no source is configured and there is no TTY. */
export async function findSecret(src: SecretSource): Promise<string | undefined> {
  if (src.file !== undefined) return readSecretFile(src.file, src.fileFlag);
  const fromEnv = src.env[src.envVar];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const first = await promptHidden(`${capitalize(src.what)}: `);
    if (src.confirm) {
      const second = await promptHidden(`Again, to confirm: `);
      if (first !== second) throw new PassphraseError('the two entries differ', 'run the command again and type the same secret twice');
    }
    if (first.length === 0) throw new PassphraseError(`an empty ${src.what} is not allowed`, 'type a non-empty secret');
    return first;
  }
  return undefined;
}

export async function requireSecret(src: SecretSource): Promise<string> {
  const secret = await findSecret(src);
  if (secret === undefined) {
    throw new PassphraseError(`no ${src.what} given`, `use ${src.fileFlag} FILE or set ${src.envVar} (no terminal to prompt on)`);
  }
  return secret;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Reads a line from the TTY without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    let value = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new PassphraseError('cancelled', 'run the command again'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
