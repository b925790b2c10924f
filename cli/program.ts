/**
 * Commander wiring: flags to each command's typed options, nothing else. Each command's
 * module is loaded (by a literal dynamic import, which the bundler splits into a chunk of
 * its own) only when it runs, so `svcca list` never pays for the signing libraries; only
 * its options type is imported here, and types cost nothing at run time.
 */
import { Command, Option } from 'commander';
import { createOutput } from './output.js';
import type { CommandContext } from './context.js';
import { DEFAULT_CA_DIR } from './store/ca-dir.js';
import { KEY_TYPES } from '../common/keys.js';
import { UsageError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import type { InitOptions } from './commands/init.js';
import type { IssueOptions } from './commands/issue.js';
import type { RotateOptions } from './commands/rotate.js';
import type { RevokeOptions } from './commands/revoke.js';
import type { CrlOptions } from './commands/crl.js';
import type { ListOptions } from './commands/list.js';
import type { ExportOptions } from './commands/export.js';
import type { PolicyCheckOptions } from './commands/policy-check.js';
import type { PolicyGraphOptions } from './commands/policy-graph.js';
import type { LedgerCopyOptions } from './commands/ledger.js';

const EXIT_CODES = `
Exit codes:
  0  success
  1  user error: one line on stderr says what is wrong and what to do
  2  partial failure: some of several items failed (each is named)
  3  policy check: deny
  4  done, but attention needed (rotate: the intermediate nears its end, or a renewal was clamped to it)`;

/**
 * What commander hands an action for a command whose options are `T`: the flags
 * (arguments are added by the action), with the `required` ones possibly missing until
 * `need` has checked them.
 */
type Flags<T, Args extends keyof T = never, Required extends keyof T = never> = Omit<T, Args | Required> & Partial<Pick<T, Required>>;

/**
 * Required flags are checked here rather than with commander's requiredOption, which
 * reports a missing flag before an unknown one: `--trust-domian x` would otherwise say
 * "--trust-domain not specified" instead of suggesting the right spelling.
 */
function need<T, K extends keyof T>(opts: T, key: K, flag: string, example: string): T & { [P in K]-?: Exclude<T[P], undefined> } {
  if (opts[key] === undefined) throw new UsageError(`${flag} is required`, `for example: ${example}`);
  return opts as T & { [P in K]-?: Exclude<T[P], undefined> };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export interface ProgramHooks {
  /** Receives the context the command ran with, so main can read its exit code. */
  onContext(ctx: CommandContext): void;
  env: NodeJS.ProcessEnv;
}

export function buildProgram(hooks: ProgramHooks): Command {
  const program = new Command('svcca');
  program
    .description('A small internal CA for service-to-service mTLS: SPIFFE identities, short-lived certificates, rotation, revocation.')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `
Examples:
  svcca init --trust-domain example.org
  svcca issue order-service
  svcca issue payment-service --dns payment.internal --out /etc/svcca/payment-service
  svcca rotate                       # from cron, every 15 minutes
  svcca revoke order-service --reason keyCompromise
  svcca list --expiring 6h
  svcca export order-service --p12 order.p12 --password-file p12.pass
  svcca policy check order-service payment-service --policy policy.yaml

The CA directory is ./ca-data unless --dir or SVCCA_DIR says otherwise.
The intermediate key's passphrase comes from --passphrase-file, SVCCA_PASSPHRASE or a prompt.
${EXIT_CODES}`,
    );

  const ctxFor = (cmd: Command): CommandContext => {
    const g = cmd.optsWithGlobals<{ dir?: string; json?: boolean }>();
    const ctx: CommandContext = {
      global: { dir: g.dir ?? hooks.env.SVCCA_DIR ?? DEFAULT_CA_DIR, json: g.json === true },
      out: createOutput(g.json === true),
      env: hooks.env,
      exitCode: 0,
    };
    hooks.onContext(ctx);
    return ctx;
  };

  // Global flags are accepted before or after the command name.
  const withGlobals = (cmd: Command): Command =>
    cmd
      .option('--dir <path>', `CA data directory (default ${DEFAULT_CA_DIR}, env SVCCA_DIR)`)
      .option('--json', 'machine-readable output on stdout')
      .showSuggestionAfterError(true);
  withGlobals(program);

  const passphraseFlag = '--passphrase-file <file>';
  const passphraseHelp = "file holding the intermediate key's passphrase (or env SVCCA_PASSPHRASE, or a prompt)";

  withGlobals(program.command('init'))
    .description('create a root and an issuing intermediate for a trust domain')
    .option('--trust-domain <td>', 'the SPIFFE trust domain, e.g. example.org (required)')
    .addOption(new Option('--key-type <type>', `CA and leaf key type (${KEY_TYPES.join(', ')})`).default('ecdsa-p256'))
    .option(passphraseFlag, passphraseHelp)
    .option('--root-passphrase-file <file>', "file holding the root key's passphrase (or env SVCCA_ROOT_PASSPHRASE; defaults to the intermediate's)")
    .option('--ledger <url>', 'keep the ledger in PostgreSQL: postgres://USER@HOST:PORT/DB[?sslmode=verify-full] (or env SVCCA_LEDGER; password from PGPASSWORD or ~/.pgpass, never the URL)')
    .action(async (o: Flags<InitOptions, never, 'trustDomain'>, cmd: Command) =>
      (await import('./commands/init.js')).runInit(need(o, 'trustDomain', '--trust-domain', 'svcca init --trust-domain example.org'), ctxFor(cmd)),
    );

  withGlobals(program.command('issue'))
    .description('issue a certificate and key for a service (24h by default)')
    .argument('<service>', 'service name, e.g. order-service or ns/prod/api')
    .option('--ttl <duration>', 'lifetime, e.g. 24h, 90m, 7d (default: the CA config, 24h)')
    .option('--dns <name>', 'extra DNS SAN (repeatable)', collect, [])
    .option('--ip <address>', 'extra IP SAN (repeatable)', collect, [])
    .option('--out <dir>', 'where to write tls.crt, tls.key, ca.crt (default ca-data/issued/<service>)')
    .option('--csr <file>', 'sign this CSR instead of making a key (only its public key is used)')
    .option(passphraseFlag, passphraseHelp)
    .action(async (service: string, o: Flags<IssueOptions, 'service'>, cmd: Command) => (await import('./commands/issue.js')).runIssue({ ...o, service }, ctxFor(cmd)));

  withGlobals(program.command('rotate'))
    .description('renew every active certificate that is due (what cron runs); --intermediate rolls the intermediate')
    .argument('[service...]', 'only these services')
    .option('--renew-before <threshold>', 'renew when less than this is left: a share of the lifetime (33%) or a duration (8h)', '33%')
    .option('--dry-run', 'say what would be renewed, change nothing')
    .option('--exec <cmd>', 'run after each renewed set, with SVCCA_SERVICE and SVCCA_SET_DIR set (e.g. a reload)')
    .option('--intermediate', 'roll the intermediate (needs the root passphrase)')
    .option(passphraseFlag, passphraseHelp)
    .option('--root-passphrase-file <file>', "file holding the root key's passphrase (or env SVCCA_ROOT_PASSPHRASE)")
    .addHelpText('after', `\nCertificates signed from a CSR are renewed by re-signing the same public key (the CA never had\nthe private key); a key revoked for keyCompromise is never signed again: that service is skipped\nwith the command its owner should run (not a failure).\n\nExit codes for cron:\n  0  all done (nothing due counts)\n  1  usage or CA error\n  2  some renewals or hooks failed (each is named)\n  4  done, but the intermediate nears its end or a renewal was clamped to it: run svcca rotate --intermediate`)
    .action(async (services: string[], o: Flags<RotateOptions, 'services'>, cmd: Command) => (await import('./commands/rotate.js')).runRotate({ ...o, services }, ctxFor(cmd)));

  withGlobals(program.command('revoke'))
    .description("revoke a service's unexpired certificates (and stop its rotation), or one certificate by serial")
    .argument('[service]', 'the service to revoke')
    .option('--serial <hex>', 'revoke this one certificate')
    .addOption(new Option('--reason <reason>', 'RFC 5280 reason').choices(['keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged']))
    .option(passphraseFlag, passphraseHelp)
    .action(async (service: string | undefined, o: Flags<RevokeOptions, 'service'>, cmd: Command) => (await import('./commands/revoke.js')).runRevoke({ ...o, service }, ctxFor(cmd)));

  withGlobals(program.command('crl'))
    .description("re-sign the intermediates' CRLs and rewrite crl.pem")
    .option('--next-update <duration>', 'CRL validity', '24h')
    .option(passphraseFlag, passphraseHelp)
    .action(async (o: CrlOptions, cmd: Command) => (await import('./commands/crl.js')).runCrl(o, ctxFor(cmd)));

  withGlobals(program.command('list'))
    .description('list issued certificates')
    .option('--expiring <duration>', 'only active certificates expiring within this duration')
    .option('--revoked', 'only revoked certificates')
    .option('--all', 'every certificate, expired and revoked ones too (without it: active and superseded ones not yet expired)')
    .action(async (o: ListOptions, cmd: Command) => (await import('./commands/list.js')).runList(o, ctxFor(cmd)));

  withGlobals(program.command('inspect'))
    .description("show a certificate's details, SPIFFE ID, fingerprints and chain check")
    .argument('<file|service>', 'a PEM file, or the name of an issued service')
    .action(async (target: string, _o: unknown, cmd: Command) => (await import('./commands/inspect.js')).runInspect({ target }, ctxFor(cmd)));

  withGlobals(program.command('export'))
    .description('write a PKCS#12 file (key, leaf, intermediate) for Java/.NET clients')
    .argument('<service>', 'the issued service')
    .option('--p12 <file>', 'where to write the PKCS#12 file (required)')
    .option('--password-file <file>', 'file holding the PKCS#12 password (or env SVCCA_P12_PASSWORD, or a prompt)')
    .option('--legacy', '3DES and a SHA-1 MAC, for old Java and macOS')
    .action(async (service: string, o: Flags<ExportOptions, 'service', 'p12'>, cmd: Command) =>
      (await import('./commands/export.js')).runExport(need({ ...o, service }, 'p12', '--p12', `svcca export ${service} --p12 ${service}.p12`), ctxFor(cmd)),
    );

  const ledger = withGlobals(program.command('ledger')).description("the CA's ledger: schema migration, moving it to PostgreSQL");
  withGlobals(ledger.command('migrate'))
    .description("bring the ledger's schema to this svcca's version (back the database up first)")
    .action(async (_o: unknown, cmd: Command) => (await import('./commands/ledger.js')).runLedgerMigrate(ctxFor(cmd)));
  withGlobals(ledger.command('copy'))
    .description("copy the SQLite ledger into an empty PostgreSQL database, check every table, then switch the CA's config to it")
    .option('--to <url>', 'postgres://USER@HOST:PORT/DB (required; password from PGPASSWORD or ~/.pgpass)')
    .action(async (o: Flags<LedgerCopyOptions, never, 'to'>, cmd: Command) =>
      (await import('./commands/ledger.js')).runLedgerCopy(need(o, 'to', '--to', 'svcca ledger copy --to postgres://svcca@db.internal:5432/svcca'), ctxFor(cmd)),
    );

  const policy = withGlobals(program.command('policy')).description('check and draw the allow-list');
  withGlobals(policy.command('check'))
    .description('would <from> be allowed to call <to>? exit 0 allow, 3 deny')
    .argument('<from>', 'calling service')
    .argument('<to>', 'called service')
    .option('--policy <file>', 'the mesh policy (policy.yaml; required)')
    .option('--method <method>', 'HTTP method (http mode)')
    .option('--path <path>', 'HTTP path (http mode)')
    .action(async (from: string, to: string, o: Flags<PolicyCheckOptions, 'from' | 'to', 'policy'>, cmd: Command) =>
      (await import('./commands/policy-check.js')).runPolicyCheck(need({ ...o, from, to }, 'policy', '--policy', `svcca policy check ${from} ${to} --policy policy.yaml`), ctxFor(cmd)),
    );
  withGlobals(policy.command('graph'))
    .description('draw who may call whom')
    .option('--policy <file>', 'the mesh policy (policy.yaml; required)')
    .addOption(new Option('--format <format>', 'output format').choices(['dot', 'mermaid', 'svg']).default('dot'))
    .action(async (o: Flags<PolicyGraphOptions, never, 'policy'>, cmd: Command) =>
      (await import('./commands/policy-graph.js')).runPolicyGraph(need(o, 'policy', '--policy', 'svcca policy graph --policy policy.yaml --format svg'), ctxFor(cmd)),
    );

  return program;
}
