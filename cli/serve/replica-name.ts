/**
 * The name of one `svcca serve` replica (`--replica`, `SVCCA_REPLICA`, else the host
 * name): its own server certificate is recorded as `svcca/replica/<name>`, so replicas on
 * one ledger never supersede each other's. A pod's or container's host name is unique
 * already; several replicas on one host need a name each.
 */
import { hostname } from 'node:os';
import { UsageError } from '../../common/errors.js';

const REPLICA_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Checks a name given with --replica or SVCCA_REPLICA. */
export function parseReplicaName(text: string, label: string): string {
  if (!REPLICA_NAME.test(text))
    throw new UsageError(
      `${label} ${JSON.stringify(text.slice(0, 80))} is not a replica name`,
      'use 1-63 characters of a-z 0-9 . - _, starting with a letter or digit (e.g. ca-1)',
    );
  return text;
}

/** The host name made into a replica name (lower-case, other characters as "-"). */
export function defaultReplicaName(host = hostname()): string {
  const name = host
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return name || 'serve';
}
