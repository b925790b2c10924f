/**
 * Validation of the extra names a leaf may carry. A DNS SAN that looks like a URI, or
 * holds a comma or space, is refused: some tools split SAN strings on those.
 */
import { isIP } from 'node:net';
import { UsageError } from '../common/errors.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function assertDnsName(value: string): string {
  const name = value.toLowerCase();
  const bad = (why: string) =>
    new UsageError(
      `--dns ${JSON.stringify(value)} is not a DNS name: ${why}`,
      'give a host name like payment.internal (letters, digits, "-" and "."), one per --dns',
    );
  if (name.length === 0) throw bad('it is empty');
  if (name.length > 253) throw bad('it is longer than 253 characters');
  if (/[\s,]/.test(name)) throw bad('it contains a space or comma');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the regex matches control characters on purpose, to refuse them
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad('it contains a control character');
  if (/^[a-z][a-z0-9+.-]*:/i.test(name) || name.includes('/')) throw bad('it looks like a URI');
  for (const label of name.split('.')) {
    if (!DNS_LABEL.test(label)) throw bad(`the label ${JSON.stringify(label)} is not valid`);
  }
  return name;
}

export function assertIp(value: string): string {
  // isIP accepts an IPv6 zone ("fe80::1%eth0"), which a certificate cannot carry: it
  // would be dropped silently from the SAN while the ledger kept it.
  if (isIP(value) === 0 || value.includes('%'))
    throw new UsageError(
      `--ip ${JSON.stringify(value)} is not an IP address`,
      'give an IPv4 or IPv6 address like 10.0.0.7 (no zone), one per --ip',
    );
  return value;
}
