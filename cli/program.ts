/**
 * Commander wiring: flags to each command's typed options, nothing else. Each command's
 * module is loaded (by a literal dynamic import, which the bundler splits into a chunk of
 * its own) only when it runs, so `svcca list` never pays for the signing libraries; only
 * its options type is imported here, and types cost nothing at run time.
 */
import { Command, Option, type CommandOptions } from 'commander';
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
import type { PolicyLearnOptions } from './commands/policy-learn.js';
import type { ServeOptions } from './commands/serve.js';
import type { TokenOptions } from './commands/token.js';
import type { RenewOptions } from './commands/renew.js';
import type { BootstrapOptions } from './commands/bootstrap.js';

const EXIT_CODES = `
Exit codes:
  0  success
  1  user error: one line on stderr says what is wrong and what to do
  2  partial failure: some of several items failed (each is named)
  3  policy check: deny
  4  done, but attention needed (rotate: the intermediate nears its end, or a renewal was clamped to it)
  5  policy check: would deny (the callee's entry is in audit mode, so the sidecar lets it through)`;

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

/** What every command's definition needs from the program being built. */
interface Wiring {
  /** The context a command runs with, made from its global flags. */
  ctxFor(cmd: Command): CommandContext;
  /** A subcommand of `parent` that also takes the global flags (before or after its name). */
  command(parent: Command, name: string, opts?: CommandOptions): Command;
}

const PASSPHRASE_FLAG = '--passphrase-file <file>';
const PASSPHRASE_HELP = "file holding the intermediate key's passphrase (or env SVCCA_PASSPHRASE, or a prompt)";
const ROOT_PASSPHRASE_FLAG = '--root-passphrase-file <file>';

const PROGRAM_HELP = `
Examples:
  svcca init --trust-domain example.org
  svcca issue order-service
  svcca issue payment-service --dns payment.internal --out /etc/svcca/payment-service
  svcca rotate                       # from cron, every 15 minutes
  svcca revoke order-service --reason keyCompromise
  svcca list --expiring 6h
  svcca export order-service --p12 order.p12 --password-file p12.pass
  svcca policy check order-service payment-service --policy policy.yaml
  svcca serve --listen 0.0.0.0:9443 --admin 127.0.0.1:9444
  svcca token api --ttl 10m          # then, on the service's host:
  svcca bootstrap --ca https://ca.internal:9443 --token "$TOKEN" --out /etc/svcca/api
  svcca renew --ca https://ca.internal:9443 --dir /etc/svcca/api   # from a timer
  source <(svcca completion bash)    # tab completion (zsh and fish too)

The CA directory is ./ca-data unless --dir or SVCCA_DIR says otherwise.
The intermediate key's passphrase comes from --passphrase-file, SVCCA_PASSPHRASE or a prompt.
${EXIT_CODES}`;

const ROTATE_HELP = `
Certificates signed from a CSR are renewed by re-signing the same public key (the CA never had
the private key); a key revoked for keyCompromise is never signed again: that service is skipped
with the command its owner should run (not a failure).

Progress goes to stderr when it is a terminal (never with --json, never under cron).

Exit codes for cron:
  0  all done (nothing due counts)
  1  usage or CA error
  2  some renewals or hooks failed (each is named)
  4  done, but the intermediate nears its end or a renewal was clamped to it: run svcca rotate --intermediate`;

export function buildProgram(hooks: ProgramHooks): Command {
  const program = new Command('svcca');
  program
    .description('A small internal CA for service-to-service mTLS: SPIFFE identities, short-lived certificates, rotation, revocation.')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true)
    .addHelpText('after', PROGRAM_HELP);
  const wiring = wire(program, hooks);
  for (const define of [
    defineInit,
    defineIssue,
    defineRotate,
    defineRevoke,
    defineCrl,
    defineList,
    defineInspect,
    defineExport,
    defineLedger,
    defineServe,
    defineToken,
    defineRenew,
    defineBootstrap,
    definePolicy,
    defineCompletion,
  ]) {
    define(program, wiring);
  }
  return program;
}

function wire(program: Command, hooks: ProgramHooks): Wiring {
  // Global flags are accepted before or after the command name.
  const withGlobals = (cmd: Command): Command =>
    cmd
      .option('--dir <path>', `CA data directory (default ${DEFAULT_CA_DIR}, env SVCCA_DIR)`)
      .option('--json', 'machine-readable output on stdout')
      .showSuggestionAfterError(true);
  withGlobals(program);
  return {
    command: (parent, name, opts) => withGlobals(parent.command(name, opts)),
    ctxFor(cmd) {
      const g = cmd.optsWithGlobals<{ dir?: string; json?: boolean }>();
      const ctx: CommandContext = {
        global: { dir: g.dir ?? hooks.env.SVCCA_DIR ?? DEFAULT_CA_DIR, json: g.json === true },
        out: createOutput(g.json === true, hooks.env),
        env: hooks.env,
        exitCode: 0,
      };
      hooks.onContext(ctx);
      return ctx;
    },
  };
}

function defineInit(program: Command, w: Wiring): void {
  w.command(program, 'init')
    .description('create a root and an issuing intermediate for a trust domain')
    .option('--trust-domain <td>', 'the SPIFFE trust domain, e.g. example.org (required)')
    .addOption(new Option('--key-type <type>', `CA and leaf key type (${KEY_TYPES.join(', ')})`).default('ecdsa-p256'))
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .option(ROOT_PASSPHRASE_FLAG, "file holding the root key's passphrase (or env SVCCA_ROOT_PASSPHRASE; defaults to the intermediate's)")
    .option(
      '--ledger <url>',
      'keep the ledger in PostgreSQL: postgres://USER@HOST:PORT/DB[?sslmode=verify-full] (or env SVCCA_LEDGER; password from PGPASSWORD or ~/.pgpass, never the URL)',
    )
    .action(async (o: Flags<InitOptions, never, 'trustDomain'>, cmd: Command) =>
      (await import('./commands/init.js')).runInit(
        need(o, 'trustDomain', '--trust-domain', 'svcca init --trust-domain example.org'),
        w.ctxFor(cmd),
      ),
    );
}

function defineIssue(program: Command, w: Wiring): void {
  w.command(program, 'issue')
    .description('issue a certificate and key for a service (24h by default)')
    .argument('<service>', 'service name, e.g. order-service or ns/prod/api')
    .option('--ttl <duration>', 'lifetime, e.g. 24h, 90m, 7d (default: the CA config, 24h)')
    .option('--dns <name>', 'extra DNS SAN (repeatable)', collect, [])
    .option('--ip <address>', 'extra IP SAN (repeatable)', collect, [])
    .option('--out <dir>', 'where to write tls.crt, tls.key, ca.crt (default ca-data/issued/<service>)')
    .option('--csr <file>', 'sign this CSR instead of making a key (only its public key is used)')
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(async (service: string, o: Flags<IssueOptions, 'service'>, cmd: Command) =>
      (await import('./commands/issue.js')).runIssue({ ...o, service }, w.ctxFor(cmd)),
    );
}

function defineRotate(program: Command, w: Wiring): void {
  w.command(program, 'rotate')
    .description('renew every active certificate that is due (what cron runs); --intermediate rolls the intermediate')
    .argument('[service...]', 'only these services')
    .option('--renew-before <threshold>', 'renew when less than this is left: a share of the lifetime (33%) or a duration (8h)', '33%')
    .option('--dry-run', 'say what would be renewed, change nothing')
    .option('--exec <cmd>', 'run after each renewed set, with SVCCA_SERVICE and SVCCA_SET_DIR set (e.g. a reload)')
    .option('--intermediate', 'roll the intermediate (needs the root passphrase)')
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .option(ROOT_PASSPHRASE_FLAG, "file holding the root key's passphrase (or env SVCCA_ROOT_PASSPHRASE)")
    .addHelpText('after', ROTATE_HELP)
    .action(async (services: string[], o: Flags<RotateOptions, 'services'>, cmd: Command) =>
      (await import('./commands/rotate.js')).runRotate({ ...o, services }, w.ctxFor(cmd)),
    );
}

function defineRevoke(program: Command, w: Wiring): void {
  w.command(program, 'revoke')
    .description("revoke a service's unexpired certificates (and stop its rotation), or one certificate by serial")
    .argument('[service]', 'the service to revoke')
    .option('--serial <hex>', 'revoke this one certificate')
    .addOption(
      new Option('--reason <reason>', 'RFC 5280 reason').choices([
        'keyCompromise',
        'superseded',
        'cessationOfOperation',
        'affiliationChanged',
      ]),
    )
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(async (service: string | undefined, o: Flags<RevokeOptions, 'service'>, cmd: Command) =>
      (await import('./commands/revoke.js')).runRevoke({ ...o, service }, w.ctxFor(cmd)),
    );
}

function defineCrl(program: Command, w: Wiring): void {
  w.command(program, 'crl')
    .description("re-sign the intermediates' CRLs and rewrite crl.pem")
    .option('--next-update <duration>', 'CRL validity', '24h')
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(async (o: CrlOptions, cmd: Command) => (await import('./commands/crl.js')).runCrl(o, w.ctxFor(cmd)));
}

function defineList(program: Command, w: Wiring): void {
  w.command(program, 'list')
    .description('list issued certificates')
    .option('--expiring <duration>', 'only active certificates expiring within this duration')
    .option('--revoked', 'only revoked certificates')
    .option('--all', 'every certificate, expired and revoked ones too (without it: active and superseded ones not yet expired)')
    .action(async (o: ListOptions, cmd: Command) => (await import('./commands/list.js')).runList(o, w.ctxFor(cmd)));
}

function defineInspect(program: Command, w: Wiring): void {
  w.command(program, 'inspect')
    .description("show a certificate's details, SPIFFE ID, fingerprints and chain check")
    .argument('<file|service>', 'a PEM file, or the name of an issued service')
    .action(async (target: string, _o: unknown, cmd: Command) =>
      (await import('./commands/inspect.js')).runInspect({ target }, w.ctxFor(cmd)),
    );
}

function defineExport(program: Command, w: Wiring): void {
  w.command(program, 'export')
    .description('write a PKCS#12 file (key, leaf, intermediate) for Java/.NET clients')
    .argument('<service>', 'the issued service')
    .option('--p12 <file>', 'where to write the PKCS#12 file (required)')
    .option('--password-file <file>', 'file holding the PKCS#12 password (or env SVCCA_P12_PASSWORD, or a prompt)')
    .option('--legacy', '3DES and a SHA-1 MAC, for old Java and macOS')
    .action(async (service: string, o: Flags<ExportOptions, 'service', 'p12'>, cmd: Command) =>
      (await import('./commands/export.js')).runExport(
        need({ ...o, service }, 'p12', '--p12', `svcca export ${service} --p12 ${service}.p12`),
        w.ctxFor(cmd),
      ),
    );
}

function defineLedger(program: Command, w: Wiring): void {
  const ledger = w.command(program, 'ledger').description("the CA's ledger: schema migration, moving it to PostgreSQL");
  w.command(ledger, 'migrate')
    .description("bring the ledger's schema to this svcca's version (back the database up first)")
    .action(async (_o: unknown, cmd: Command) => (await import('./commands/ledger.js')).runLedgerMigrate(w.ctxFor(cmd)));
  w.command(ledger, 'copy')
    .description("copy the SQLite ledger into an empty PostgreSQL database, check every table, then switch the CA's config to it")
    .option('--to <url>', 'postgres://USER@HOST:PORT/DB (required; password from PGPASSWORD or ~/.pgpass)')
    .action(async (o: Flags<LedgerCopyOptions, never, 'to'>, cmd: Command) =>
      (await import('./commands/ledger.js')).runLedgerCopy(
        need(o, 'to', '--to', 'svcca ledger copy --to postgres://svcca@db.internal:5432/svcca'),
        w.ctxFor(cmd),
      ),
    );
}

function defineServe(program: Command, w: Wiring): void {
  w.command(program, 'serve')
    .description('run the CA as an HTTPS endpoint: renewal over mTLS, bootstrap tokens, CRL and trust bundle (never opens the root key)')
    .option('--listen <host:port>', 'HTTPS address, e.g. 0.0.0.0:9443 (required)')
    .option('--admin <host:port>', 'plain-HTTP /healthz, /readyz and /metrics, e.g. 127.0.0.1:9444')
    .option('--rate-limit <n>', 'requests per minute per caller (a service; an address for bootstrap)', '30')
    .option('--cert-ttl <duration>', "lifetime of the server's own certificate (default: the CA's default TTL)")
    .option('--drain <duration>', 'on SIGTERM, how long requests in flight may take to finish', '10s')
    .option('--replica <name>', "this replica's name when several share a PostgreSQL ledger (default: SVCCA_REPLICA, else the host name)")
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .addHelpText(
      'after',
      `\nEndpoints:\n  POST /v1/renew       mTLS with the current certificate; body {"csr": PEM} for a NEW key\n  POST /v1/bootstrap   body {"token": TOKEN, "csr": PEM} (token from \`svcca token SERVICE\`)\n  GET  /v1/crl.pem     the CRLs (ETag / If-None-Match)\n  GET  /v1/ca.crt      the trust bundle (ETag / If-None-Match)\nThe server presents spiffe://<trust-domain>/svcca, issued to itself and renewed in process, recorded\nas svcca/replica/<name> (one per replica). Several replicas may share a PostgreSQL ledger: see docs/ha.md.\nLogs are JSON lines on stdout (SVCCA_LOG_LEVEL=debug for more). SIGTERM drains and exits 0.`,
    )
    .action(async (o: Flags<ServeOptions, never, 'listen'>, cmd: Command) =>
      (await import('./commands/serve.js')).runServe(
        need(o, 'listen', '--listen', 'svcca serve --listen 0.0.0.0:9443 --admin 127.0.0.1:9444'),
        w.ctxFor(cmd),
      ),
    );
}

function defineToken(program: Command, w: Wiring): void {
  w.command(program, 'token')
    .description('print a one-time bootstrap token for a service (for `svcca bootstrap`), or --revoke its unused ones')
    .argument('<service>', 'the service the token is for')
    .option('--ttl <duration>', 'how long the token may be used (at most 24h)', undefined)
    .option('--cert-ttl <duration>', "lifetime of the certificate it buys (default: the CA's default TTL)")
    .option('--dns <name>', 'extra DNS SAN of that certificate (repeatable)', collect, [])
    .option('--ip <address>', 'extra IP SAN of that certificate (repeatable)', collect, [])
    .option('--revoke', "revoke the service's unused tokens")
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .addHelpText(
      'after',
      "\nThe token is printed alone on stdout (TOKEN=$(svcca token api)); it is good for one bootstrap, within --ttl (default 10m).\nMaking one needs the intermediate passphrase, as issuing does (a token buys a certificate); --revoke does not.\nThe CA keeps only its SHA-256. The token carries the root's fingerprint, so `svcca bootstrap` can check the CA before trusting it.",
    )
    .action(async (service: string, o: Flags<TokenOptions, 'service'>, cmd: Command) =>
      (await import('./commands/token.js')).runToken({ ...o, service }, w.ctxFor(cmd)),
    );
}

function defineRenew(program: Command, w: Wiring): void {
  // Not withGlobals: here --dir is the credential set, not the CA directory.
  program
    .command('renew')
    .description('renew a credential set in place through `svcca serve` (new key made here; for VMs, from a timer)')
    .option('--ca <url>', 'the CA server, https://HOST:PORT (required)')
    .option('--dir <set-dir>', 'the credential set to renew: tls.crt, tls.key, ca.crt (required)')
    .option('--renew-before <threshold>', 'renew when less than this is left: a share of the lifetime (33%) or a duration (8h)', '33%')
    .option('--force', 'renew now, whatever is left')
    .option('--exec <cmd>', 'run after a renewal, with SVCCA_SERVICE and SVCCA_SET_DIR set (e.g. a reload)')
    .option('--json', 'machine-readable output on stdout')
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `\nThe server is trusted through the set's ca.crt and must present spiffe://<trust-domain>/svcca.\n\nExit codes (as rotate):\n  0  renewed, or not due yet\n  1  usage error\n  2  the renewal failed (the CA refused or could not be reached; the set is unchanged)\n  4  renewed, but cut short at the intermediate's end`,
    )
    .action(async (o: Flags<RenewOptions, never, 'ca' | 'dir'>, cmd: Command) =>
      // The program-level --dir (the CA directory elsewhere) catches the flag first.
      (await import('./commands/renew.js')).runRenew(
        need(
          need(
            { ...o, dir: o.dir ?? cmd.optsWithGlobals<{ dir?: string }>().dir },
            'ca',
            '--ca',
            'svcca renew --ca https://ca:9443 --dir /etc/svcca/api',
          ),
          'dir',
          '--dir',
          'svcca renew --ca https://ca:9443 --dir /etc/svcca/api',
        ),
        w.ctxFor(cmd),
      ),
    );
}

function defineBootstrap(program: Command, w: Wiring): void {
  program
    .command('bootstrap')
    .description('make the first credential set of a service from a one-time token (`svcca token SERVICE`), its key made here')
    .option('--ca <url>', 'the CA server, https://HOST:PORT (required)')
    .option('--token <token>', 'the token (or --token-file, or env SVCCA_TOKEN)')
    .option('--token-file <file>', 'a file holding the token')
    .option('--out <dir>', 'where to write tls.crt, tls.key, ca.crt (required)')
    .option('--ca-bundle <file>', "trust this root (the CA's ca.crt) instead of checking the token's fingerprint against the server's")
    .option('--json', 'machine-readable output on stdout')
    .showSuggestionAfterError(true)
    .action(async (o: Flags<BootstrapOptions, never, 'ca' | 'out'>, cmd: Command) =>
      (await import('./commands/bootstrap.js')).runBootstrap(
        need(
          need(o, 'ca', '--ca', 'svcca bootstrap --ca https://ca:9443 --token TOKEN --out /etc/svcca/api'),
          'out',
          '--out',
          'svcca bootstrap --ca https://ca:9443 --token TOKEN --out /etc/svcca/api',
        ),
        w.ctxFor(cmd),
      ),
    );
}

function definePolicy(program: Command, w: Wiring): void {
  const policy = w.command(program, 'policy').description('check and draw the allow-list, and learn it from sidecar logs');
  w.command(policy, 'check')
    .description('would <from> be allowed to call <to>? exit 0 allow, 3 deny, 5 would deny (audit mode)')
    .argument('<from>', 'calling service')
    .argument('<to>', 'called service')
    .option('--policy <file>', 'the mesh policy (policy.yaml; required)')
    .option('--method <method>', 'HTTP method (http mode)')
    .option('--path <path>', 'HTTP path (http mode)')
    .action(async (from: string, to: string, o: Flags<PolicyCheckOptions, 'from' | 'to', 'policy'>, cmd: Command) =>
      (await import('./commands/policy-check.js')).runPolicyCheck(
        need({ ...o, from, to }, 'policy', '--policy', `svcca policy check ${from} ${to} --policy policy.yaml`),
        w.ctxFor(cmd),
      ),
    );
  w.command(policy, 'graph')
    .description('draw who may call whom (and, with --observed, who did)')
    .option('--policy <file>', 'the mesh policy (policy.yaml; required)')
    .addOption(new Option('--format <format>', 'output format').choices(['dot', 'mermaid', 'svg']).default('dot'))
    .option('--observed <log...>', 'sidecar log files: draw the calls seen over the policy (denied and would-deny as their own edges)')
    .action(async (o: Flags<PolicyGraphOptions, never, 'policy'>, cmd: Command) =>
      (await import('./commands/policy-graph.js')).runPolicyGraph(
        need(o, 'policy', '--policy', 'svcca policy graph --policy policy.yaml --format svg'),
        w.ctxFor(cmd),
      ),
    );
  w.command(policy, 'learn')
    .description('propose the smallest policy addition that allows every call seen in sidecar logs')
    .option('--log <file...>', 'sidecar log files, JSON lines (required; refusals, would-deny lines, and allowed calls at log level debug)')
    .option('--policy <file>', 'the policy in force: propose only what it does not allow yet')
    .option('--write <file>', 'write the whole new policy here (the current one plus the additions) instead of printing a patch')
    .addOption(
      new Option('--paths <how>', 'exact: one rule per path seen; prefix: fold sibling paths into parent/*')
        .choices(['exact', 'prefix'])
        .default('exact'),
    )
    .addHelpText(
      'after',
      `
Examples:
  svcca policy learn --log inventory.log --policy policy.yaml
  svcca policy learn --log logs/*.log --policy policy.yaml --paths prefix --write policy.new.yaml
It never removes a rule; rules no call used are listed as candidates to review.`,
    )
    .action(async (o: Flags<PolicyLearnOptions, never, 'log'>, cmd: Command) =>
      (await import('./commands/policy-learn.js')).runPolicyLearn(
        need(o, 'log', '--log', 'svcca policy learn --log sidecar.log --policy policy.yaml'),
        w.ctxFor(cmd),
      ),
    );
}

function defineCompletion(program: Command, w: Wiring): void {
  w.command(program, 'completion')
    .description('print a tab-completion script for bash, zsh or fish')
    .argument('<shell>', 'bash, zsh or fish')
    .addHelpText('after', COMPLETION_HELP)
    .action(async (shell: string, _o: unknown, cmd: Command) =>
      (await import('./commands/completion.js')).runCompletion({ shell, program }, w.ctxFor(cmd)),
    );
  // What the completion scripts call to offer service names; not for people.
  w.command(program, '__complete-services', { hidden: true }).action(async (_o: unknown, cmd: Command) =>
    (await import('./commands/completion.js')).runCompleteServices(w.ctxFor(cmd)),
  );
}

const COMPLETION_HELP = `
Install:
  bash  echo 'source <(svcca completion bash)' >> ~/.bashrc
  zsh   svcca completion zsh > "\${fpath[1]}/_svcca"   (then start a new shell)
  fish  svcca completion fish > ~/.config/fish/completions/svcca.fish

Service names are completed from the ledger of the CA directory in --dir / SVCCA_DIR / ./ca-data.`;
