/**
 * `svcca-sidecar --check`: like `nginx -t`, validates the config, the identity files,
 * the CRL and the policy, and reports every problem it can find at once. Stricter than
 * start-up in one way: an expired (or not yet valid) certificate is an error here, since
 * a sidecar started with it would serve nothing.
 */
import { readFileSync } from 'node:fs';
import { crlSetExpired } from '../../common/crl.js';
import { errnoCode, errorLine } from '../../common/errors.js';
import { tcpModeWarnings } from '../../common/policy/index.js';
import { loadIdentity } from '../reload/identity.js';
import { loadCrlState, loadPolicyState } from '../reload/build-snapshot.js';
import { validityProblem, type Identity } from '../snapshot.js';
import { validateConfigText } from './schema.js';
import { MAX_CONFIG_BYTES } from './yaml.js';

export interface CheckReport {
  readonly ok: boolean;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  readonly notes: readonly string[];
}

/** Reads the config file text, refusing a missing, unreadable or oversized one in one line. */
export function readConfigFile(path: string): string {
  try {
    const buf = readFileSync(path);
    if (buf.length > MAX_CONFIG_BYTES) return buf.subarray(0, MAX_CONFIG_BYTES + 1).toString('utf8');
    return buf.toString('utf8');
  } catch (err) {
    const code = errnoCode(err);
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? String(err)})`;
    throw new Error(`${path}: ${why}; pass the sidecar YAML with --config FILE`);
  }
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
    if (expiry) errors.push(`identity.dir: ${config.identity.dir}: ${expiry}; issue a fresh one with \`svcca issue ${identity.id.service}\` (or \`svcca rotate\`)`);
    else notes.push(`identity ${identity.id.uri}, valid until ${identity.leaf.notAfter.toISOString()}`);
  } catch (err) {
    errors.push(`identity.dir: ${errorLine(err)}`);
  }
  if (config.identity.crl) {
    if (!identity) warnings.push('identity.crl: not checked (the identity is unusable, and CRL signatures are checked against its ca.crt)');
    else {
      try {
        const crl = loadCrlState(config.identity.crl, identity);
        if (crlSetExpired(crl.set, now)) warnings.push(`identity.crl: ${config.identity.crl}: a CRL is past its nextUpdate (still enforced); publish a fresh one with \`svcca crl\``);
        notes.push(`crl ${config.identity.crl}: ${crl.set.crls.length} CRLs, ${crl.set.revoked.size} revoked serials`);
      } catch (err) {
        errors.push(errorLine(err));
      }
    }
  } else warnings.push('identity.crl: not set, so revoked certificates would be accepted; point it at the CA\'s crl.pem');
  if (config.policy) {
    try {
      const policy = loadPolicyState(config.policy).policy;
      notes.push(`policy ${config.policy}: ${policy.services.size} service${policy.services.size === 1 ? '' : 's'}`);
      if (identity && config.inbound) {
        if (!policy.services.has(identity.id.service)) warnings.push(`policy: ${identity.id.service} is not in ${config.policy}, so every caller would be refused; add it under services:`);
        if (config.inbound.mode === 'tcp') for (const w of tcpModeWarnings(policy, identity.id.service)) warnings.push(`policy: ${w}`);
      }
    } catch (err) {
      errors.push(errorLine(err));
    }
  }
  return { ok: errors.length === 0, errors, warnings, notes };
}
