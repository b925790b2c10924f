/**
 * `svcca bootstrap --ca https://HOST:PORT --token TOKEN --out DIR [--ca-bundle FILE]`:
 * the first credential set of a service, its key made here, from a one-time token
 * (`svcca token SERVICE`). The CA is trusted through the root fingerprint the token
 * carries, or `--ca-bundle`; never on first use.
 */
import { resolve } from 'node:path';
import { UsageError, errnoCode, ExitCode, errorLine, SvccaError } from '../../common/errors.js';
import { bootstrapCredentialSet, parseCaUrl, type NewSet } from '../../common/ca-client.js';
import { parseBootstrapToken } from '../../common/bootstrap-token.js';
import { assertUsableSetDir } from '../../common/credential-set.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import type { CommandContext } from '../context.js';

export interface BootstrapOptions {
  readonly ca: string;
  readonly token?: string;
  /** A file holding the token (keeps it out of `ps`). */
  readonly tokenFile?: string;
  readonly out: string;
  readonly caBundle?: string;
}

function readToken(opts: BootstrapOptions, env: NodeJS.ProcessEnv): { text: string; label: string } {
  if (opts.token !== undefined && opts.tokenFile !== undefined)
    throw new UsageError('give --token or --token-file, not both', 'e.g. --token-file /run/secrets/svcca-token');
  if (opts.tokenFile !== undefined) {
    try {
      return { text: readCappedText(opts.tokenFile, FILE_CAPS.secret), label: `--token-file ${opts.tokenFile}` };
    } catch (err) {
      if (err instanceof SvccaError) throw err;
      throw new UsageError(`--token-file ${opts.tokenFile} cannot be read (${errnoCode(err)})`, 'give the file the token was saved in');
    }
  }
  const text = opts.token ?? env.SVCCA_TOKEN;
  if (text === undefined)
    throw new UsageError(
      '--token is required',
      'e.g. svcca bootstrap --ca https://ca:9443 --token "$(svcca token api)" --out /etc/svcca/api (or --token-file, or env SVCCA_TOKEN)',
    );
  return { text, label: opts.token !== undefined ? '--token' : 'SVCCA_TOKEN' };
}

export async function runBootstrap(opts: BootstrapOptions, ctx: CommandContext): Promise<void> {
  const ca = parseCaUrl(opts.ca);
  const token = readToken(opts, ctx.env);
  const claims = parseBootstrapToken(token.text, token.label);
  const out = resolve(opts.out);
  assertUsableSetDir(out);
  let caBundlePem: string | undefined;
  if (opts.caBundle !== undefined) {
    try {
      caBundlePem = readCappedText(opts.caBundle, FILE_CAPS.pemBundle);
    } catch (err) {
      if (err instanceof SvccaError) throw err;
      throw new UsageError(`--ca-bundle ${opts.caBundle} cannot be read (${errnoCode(err)})`, "give the CA's ca.crt");
    }
  }
  let made: NewSet;
  try {
    made = await bootstrapCredentialSet({
      ca,
      token: token.text.trim(),
      claims,
      out,
      ...(caBundlePem !== undefined ? { caBundlePem } : {}),
    });
  } catch (err) {
    if (!(err instanceof SvccaError) || err instanceof UsageError) throw err;
    process.stderr.write(`svcca: bootstrap failed: ${errorLine(err)}\n`);
    ctx.out.result({ bootstrapped: false, error: errorLine(err) });
    ctx.exitCode = ExitCode.partial;
    return;
  }
  ctx.out.line(`Bootstrapped ${made.spiffeId}`);
  ctx.out.line(`  serial     ${made.serial}`);
  ctx.out.line(`  not after  ${made.notAfter.toISOString()}`);
  ctx.out.line(`  files      ${out}/tls.crt, tls.key (made here), ca.crt`);
  ctx.out.line(`  renew it with: svcca renew --ca ${ca.origin} --dir ${out}`);
  ctx.out.result({
    bootstrapped: true,
    spiffeId: made.spiffeId,
    serial: made.serial,
    notAfter: made.notAfter.toISOString(),
    setDir: out,
    clamped: made.clamped,
  });
  if (made.clamped) ctx.exitCode = ExitCode.attention;
}
