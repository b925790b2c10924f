#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * svcca-sidecar: the entry point. One catch turns any failure before the listeners are up
 * into one line on stderr and exit 1; after that, SIGTERM/SIGINT drain and exit 0, and
 * SIGHUP reloads identity, CRL and policy.
 */
import { errorLine, UsageError } from '../common/errors.js';
import { runCheck } from './commands/check.js';
import { readConfigFile } from './config/file.js';
import { parseConfig } from './config/schema.js';
import { createLogger } from './logging.js';
import { startSidecar } from './sidecar.js';
import { VERSION } from '../common/version.js';
import { closestKey } from '../common/policy/suggest.js';

const USAGE = `usage: svcca-sidecar --config sidecar.yaml [--check]

  --config FILE   the sidecar YAML (identity, policy, inbound, outbound, admin)
  --check         validate config, identity, CRL and policy, then exit (0 ok, 1 not)
  -V, --version   print the version

examples:
  svcca-sidecar --config /etc/svcca/sidecar.yaml
  svcca-sidecar --check --config /etc/svcca/sidecar.yaml

sidecar.yaml:
  identity:
    dir: /etc/svcca/payment-service      # tls.crt, tls.key, ca.crt
    crl: /etc/svcca/crl.pem
  policy: /etc/svcca/policy.yaml
  inbound:
    listen: 0.0.0.0:8443
    forward: 127.0.0.1:8080              # or unix:/run/payment.sock
    mode: tcp
    # handshakeTimeout: 10s  idleTimeout: 1h  maxConnections: 10000
  outbound:
    - listen: 127.0.0.1:15001            # or unix:/run/svcca/payment.sock
      connect: inventory.internal:8443
      serverId: spiffe://example.org/inventory-service
  admin:
    listen: 127.0.0.1:15000              # /healthz /readyz /metrics
  # log: {level: info}  shutdown: {grace: 30s}  reload: {interval: 2s}`;

interface Args {
  readonly config: string | undefined;
  readonly check: boolean;
  readonly help: boolean;
  readonly version: boolean;
}

const FLAGS = ['--config', '--check', '--help', '--version'];

function parseArgs(argv: readonly string[]): Args {
  let config: string | undefined;
  let check = false;
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--check') check = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version' || a === '-V') version = true;
    else if (a === '--config' || a === '-c') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError('--config needs a file', 'e.g. --config /etc/svcca/sidecar.yaml');
      config = v;
    } else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else {
      const near = a.startsWith('-') ? closestKey(a.split('=')[0]!, FLAGS) : undefined;
      throw new UsageError(
        `unknown argument ${JSON.stringify(a)}`,
        `${near ? `did you mean ${near}? ` : ''}usage: svcca-sidecar --config FILE [--check]`,
      );
    }
  }
  return { config, check, help, version };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (!args.config) throw new UsageError('--config is required', 'e.g. svcca-sidecar --config /etc/svcca/sidecar.yaml');
  if (args.check) return runCheck(args.config);
  const config = parseConfig(readConfigFile(args.config), args.config);
  const logger = createLogger(config.logLevel);
  const sidecar = await startSidecar(config, { logger });
  const stop = (signal: string) => {
    logger.info({ event: 'signal', signal }, `${signal}: draining`);
    void sidecar.shutdown().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP: reloading');
    sidecar.reload('signal');
  });
  process.on('uncaughtException', (err) => {
    // Fail closed: a sidecar in an unknown state must not keep forwarding.
    logger.fatal({ event: 'crash', reason: errorLine(err) }, 'unexpected error; exiting');
    process.exit(1);
  });
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`svcca-sidecar: ${errorLine(err)}\n`);
    process.exit(1);
  },
);
