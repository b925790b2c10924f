/**
 * `svcca-sidecar --check`: like `nginx -t`, validates the config, the identity files,
 * the CRL and the policy, and reports every problem it can find at once. Stricter than
 * start-up in one way: an expired (or not yet valid) certificate is an error here, since
 * a sidecar started with it would serve nothing. A command of the entry point, not part
 * of config validation: it loads what the config names with the reload loaders.
 */
import { crlSetExpired } from '../../common/crl.js';
import { errorLine } from '../../common/errors.js';
import { tcpModeWarnings } from '../../common/policy/index.js';
import { readConfigFile } from '../config/file.js';
import { validateConfigText } from '../config/schema.js';
import { loadCrlState, loadPolicyState } from '../reload/build-snapshot.js';
import { loadIdentity } from '../reload/identity.js';
import { validityProblem, type Identity } from '../snapshot.js';

export interface CheckReport {
  readonly ok: boolean;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  readonly notes: readonly string[];
}

export function checkConfigFile(path: string, now: Date = new Date()): CheckReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  const notes: string[] = [];
  let text: string;
  try {
    text = readConfigFile(path);
  } catch (err) {
    return { ok: false, errors: [errorLine(err)], warnings, notes };
  }
  const { config, problems } = validateConfigText(text, path);
  for (const p of problems) errors.push(p.hint ? `${p.message}; ${p.hint}` : p.message);
  if (!config) return { ok: false, errors, warnings, notes };

  let identity: Identity | undefined;
  try {
    identity = loadIdentity(config.identity.dir);
    const expiry = validityProblem(identity.leaf, now);
    if (expiry)
      errors.push(
        `identity.dir: ${config.identity.dir}: ${expiry}; issue a fresh one with \`svcca issue ${identity.id.service}\` (or \`svcca rotate\`)`,
      );
    else notes.push(`identity ${identity.id.uri}, valid until ${identity.leaf.notAfter.toISOString()}`);
  } catch (err) {
    errors.push(`identity.dir: ${errorLine(err)}`);
  }
  if (config.identity.crlUrl)
    notes.push(`crl ${config.identity.crl}: fetched from the CA when the sidecar runs (verified like a file; not fetched by --check)`);
  else if (config.identity.crl) {
    if (!identity) warnings.push('identity.crl: not checked (the identity is unusable, and CRL signatures are checked against its ca.crt)');
    else {
      try {
        const crl = loadCrlState(config.identity.crl, identity);
        if (crlSetExpired(crl.set, now))
          warnings.push(
            `identity.crl: ${config.identity.crl}: a CRL is past its nextUpdate (still enforced); publish a fresh one with \`svcca crl\``,
          );
        notes.push(`crl ${config.identity.crl}: ${crl.set.crls.length} CRLs, ${crl.set.revoked.size} revoked serials`);
      } catch (err) {
        errors.push(errorLine(err));
      }
    }
  } else warnings.push("identity.crl: not set, so revoked certificates would be accepted; point it at the CA's crl.pem");
  if (config.policy) {
    try {
      const policy = loadPolicyState(config.policy).policy;
      notes.push(`policy ${config.policy}: ${policy.services.size} service${policy.services.size === 1 ? '' : 's'}`);
      if (identity && config.inbound) {
        if (!policy.services.has(identity.id.service))
          warnings.push(
            `policy: ${identity.id.service} is not in ${config.policy}, so every caller would be refused; add it under services:`,
          );
        if (config.inbound.mode === 'tcp') for (const w of tcpModeWarnings(policy, identity.id.service)) warnings.push(`policy: ${w}`);
      }
    } catch (err) {
      errors.push(errorLine(err));
    }
  }
  config.outbound.forEach((o, i) => {
    notes.push(
      o.tunnel === 'auto'
        ? `outbound[${i}] → ${o.connect.text}: tunnel auto (app connections as streams on up to ${o.tunnelConnections} mTLS connections when the server speaks svcca-tunnel/1, else one connection each)`
        : `outbound[${i}] → ${o.connect.text}: tunnel off (one mTLS connection per app connection)`,
    );
  });
  return { ok: errors.length === 0, errors, warnings, notes };
}

/** Runs the check and prints its report (notes on stdout, warnings and errors on stderr); returns the exit code. */
export function runCheck(path: string): number {
  const report = checkConfigFile(path);
  for (const n of report.notes) process.stdout.write(`ok: ${n}\n`);
  for (const w of report.warnings) process.stderr.write(`warning: ${w}\n`);
  for (const e of report.errors) process.stderr.write(`error: ${e}\n`);
  process.stdout.write(report.ok ? `${path}: configuration is valid\n` : '');
  return report.ok ? 0 : 1;
}
