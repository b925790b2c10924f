/**
 * `--dns` and `--ip`: what a leaf may carry beside its SPIFFE ID. A DNS value holding
 * a comma, space, control character or URI-looking text is refused: tools that split
 * SAN strings would read a second name out of it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertDnsName, assertIp } from '../../../cli/names.js';
import { UsageError } from '../../../common/errors.js';

const oneLine = (flag: string, want?: RegExp) => (err: unknown) =>
  err instanceof UsageError &&
  err.message.startsWith(flag) &&
  err.hint.length > 0 &&
  !err.line.includes('\n') &&
  (want === undefined || want.test(err.message));

describe('--dns: accepted', () => {
  const cases: { name: string; input: string; want: string }[] = [
    { name: 'host name', input: 'payment.internal', want: 'payment.internal' },
    { name: 'single label', input: 'localhost', want: 'localhost' },
    { name: 'hyphen inside a label', input: 'a-b.c-d', want: 'a-b.c-d' },
    { name: 'digits', input: '1.2.3.example', want: '1.2.3.example' },
    { name: 'upper case is folded', input: 'Payment.Internal', want: 'payment.internal' },
    { name: '63-character label', input: `${'a'.repeat(63)}.org`, want: `${'a'.repeat(63)}.org` },
    { name: '253 characters', input: `${Array(4).fill('a'.repeat(62)).join('.')}.a`, want: `${Array(4).fill('a'.repeat(62)).join('.')}.a` },
  ];
  for (const c of cases) it(c.name, () => assert.equal(assertDnsName(c.input), c.want));
});

describe('--dns: refused', () => {
  const cases: { name: string; input: string; want?: RegExp }[] = [
    { name: 'empty', input: '', want: /empty/ },
    { name: 'comma', input: 'a.org,b.org', want: /space or comma/ },
    { name: 'comma and space', input: 'a.org, DNS:b.org', want: /space or comma/ },
    { name: 'space', input: 'a b.org', want: /space or comma/ },
    { name: 'tab', input: 'a\tb.org' },
    { name: 'newline', input: 'a.org\nb.org' },
    { name: 'NUL', input: 'a\u0000.org', want: /control character/ },
    { name: 'escape', input: 'a\u001b.org', want: /control character/ },
    { name: 'DEL', input: 'a\u007f.org', want: /control character/ },
    { name: 'URI: prefix', input: 'URI:spiffe://example.org/admin', want: /URI/ },
    { name: 'lower-case uri: prefix', input: 'uri:spiffe://example.org/admin', want: /URI/ },
    { name: 'a SPIFFE ID', input: 'spiffe://example.org/admin', want: /URI/ },
    { name: 'an https URL', input: 'https://example.org', want: /URI/ },
    { name: 'DNS: prefix', input: 'DNS:example.org', want: /URI/ },
    { name: 'IP: prefix', input: 'IP:10.0.0.1', want: /URI/ },
    { name: 'a path', input: 'example.org/x', want: /URI/ },
    { name: 'a port', input: 'example.org:8443' },
    { name: 'wildcard', input: '*.example.org', want: /label/ },
    { name: 'empty label', input: 'a..org', want: /label/ },
    { name: 'leading dot', input: '.example.org', want: /label/ },
    { name: 'trailing dot', input: 'example.org.', want: /label/ },
    { name: 'label starting with a hyphen', input: '-a.org', want: /label/ },
    { name: 'label ending with a hyphen', input: 'a-.org', want: /label/ },
    { name: 'underscore', input: '_srv.example.org', want: /label/ },
    { name: 'at sign', input: 'user@example.org', want: /label/ },
    { name: 'equals (a subject attribute)', input: 'CN=admin', want: /label/ },
    { name: 'non-ASCII', input: 'exämple.org', want: /label/ },
    { name: '64-character label', input: `${'a'.repeat(64)}.org`, want: /label/ },
    { name: '254 characters', input: `${Array(4).fill('a'.repeat(62)).join('.')}.ab`, want: /253/ },
  ];
  for (const c of cases) {
    it(c.name, () => assert.throws(() => assertDnsName(c.input), oneLine('--dns', c.want)));
  }
  it('every control character 0x00-0x1f and 0x7f is refused', () => {
    for (let b = 0; b < 0x20; b++) assert.throws(() => assertDnsName(`a${String.fromCharCode(b)}b.org`), UsageError, `0x${b.toString(16)}`);
    assert.throws(() => assertDnsName('a\u007fb.org'), UsageError);
  });
  it('quotes the bad value so a control character stays visible', () => {
    assert.throws(
      () => assertDnsName('a\u0000.org'),
      (err: unknown) => err instanceof UsageError && err.message.includes('\\u0000'),
    );
  });
});

describe('--ip', () => {
  const accepted = [
    '10.0.0.7',
    '127.0.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    '2001:db8::8a2e:370:7334',
    '::ffff:10.0.0.1',
  ];
  for (const ip of accepted) it(`accepts ${ip}`, () => assert.equal(assertIp(ip), ip));

  const refused: { name: string; input: string }[] = [
    { name: 'empty', input: '' },
    { name: 'host name', input: 'localhost' },
    { name: 'octet above 255', input: '10.0.0.256' },
    { name: 'three octets', input: '10.0.0' },
    { name: 'five octets', input: '10.0.0.1.2' },
    { name: 'CIDR', input: '10.0.0.0/8' },
    { name: 'with a port', input: '10.0.0.1:8443' },
    { name: 'bracketed IPv6', input: '[::1]' },
    { name: 'IPv6 zone', input: 'fe80::1%eth0' },
    { name: 'leading space', input: ' 10.0.0.1' },
    { name: 'two addresses', input: '10.0.0.1,10.0.0.2' },
    { name: 'hex octets', input: '0x0a.0.0.1' },
    { name: 'a decimal integer', input: '167772161' },
    { name: 'IP: prefix', input: 'IP:10.0.0.1' },
    { name: 'triple colon', input: '1:::2' },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}`, () => assert.throws(() => assertIp(c.input), oneLine('--ip', /is not an IP address/)));
  }
});
