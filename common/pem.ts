/**
 * PEM blocks: split a bundle, encode DER. Strict about labels so that a key file
 * passed where a certificate belongs is named as such.
 */
import { InputError } from './errors.js';

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order; base64 that does not decode cleanly is refused. */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(BLOCK)) {
    const body = match[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new InputError(`a PEM "${match[1]}" block has invalid base64`, 'the file is damaged; copy it again from its source');
    }
    blocks.push({ label: match[1]!, der: Buffer.from(body, 'base64') });
  }
  return blocks;
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER of every CERTIFICATE block; throws naming `what` when there is none. */
export function decodeCertificates(text: string, what: string): Buffer[] {
  const blocks = decodePemBlocks(text);
  const certs = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => b.der);
  if (certs.length === 0) {
    const labels = blocks.map((b) => b.label);
    const found = labels.length ? `it holds ${labels.join(', ')}` : 'it holds no PEM block';
    throw new InputError(`${what} is not a PEM certificate: ${found}`, 'give a file with -----BEGIN CERTIFICATE-----');
  }
  return certs;
}
