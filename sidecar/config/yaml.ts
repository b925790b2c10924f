/**
 * Config YAML text → plain values, refusing hostile input before the yaml package composes
 * it: a sidecar config is a few hundred bytes, so anything large, binary, tagged or deeply
 * nested is a wrong file, and must cost a millisecond and one line — never a stack
 * overflow in the composer (yaml 2.9 recurses per nesting level) or an alias bomb.
 */
import { Lexer, LineCounter, parseDocument } from 'yaml';
import { ConfigError } from '../../common/errors.js';

/** Far above any real config; a megabyte-long value is refused here, unread. */
export const MAX_CONFIG_BYTES = 64 * 1024;
/** A config is four levels deep (outbound → list → entry → key). */
export const MAX_CONFIG_NESTING = 16;
const MAX_ALIAS_COUNT = 20;

const FIX = 'fix the YAML (see the example config: svcca-sidecar --help)';

/** Parses `text` (YAML 1.2, failsafe schema: every scalar is a string) into Maps, arrays, strings, null. */
export function readConfigYaml(text: string, source: string): unknown {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CONFIG_BYTES) throw new ConfigError(`${source}: is ${bytes} bytes; a sidecar config is at most ${MAX_CONFIG_BYTES}`, 'check that --config names the sidecar YAML file');
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    const printable = (c >= 0x20 && c <= 0x7e) || c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0xd800 && c <= 0xdfff);
    if (!printable) {
      throw new ConfigError(`${source}: ${where(body, i)}: contains the byte/character U+${c.toString(16).toUpperCase().padStart(4, '0')}, which YAML text may not hold`, 'a config is UTF-8 YAML text; check that this is the right file');
    }
  }
  let flow = 0;
  const indents: number[] = [];
  let offset = 0;
  let lineStart = true;
  let indent = 0;
  let lineOpened = false;
  for (const token of new Lexer().lex(body)) {
    const at = offset;
    if (!/^[\x02\x18\x1f\ufeff]$/.test(token)) offset += token.length;
    if (token === '\n' || token === '\r\n') {
      lineStart = true;
      indent = 0;
      lineOpened = false;
      continue;
    }
    if (lineStart && /^[ \t]+$/.test(token)) {
      indent = token.length;
      lineStart = false;
      continue;
    }
    lineStart = false;
    if (token[0] === '!') throw new ConfigError(`${source}: ${where(body, at)}: YAML tags are not allowed in a config`, 'remove the tag; every value is a plain string, list or map');
    if (token === '[' || token === '{') flow++;
    else if ((token === ']' || token === '}') && flow > 0) flow--;
    if (flow === 0 && !lineOpened && !/^[\s#\x02\x18\x1f\ufeff]/.test(token)) {
      while (indents.length > 0 && indents[indents.length - 1]! >= indent) indents.pop();
      indents.push(indent);
      lineOpened = true;
    }
    if (flow + indents.length > MAX_CONFIG_NESTING) {
      throw new ConfigError(`${source}: ${where(body, at)}: nested more than ${MAX_CONFIG_NESTING} levels deep`, 'a config is at most four levels deep; check the indentation and brackets');
    }
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(body, { schema: 'failsafe', uniqueKeys: true, prettyErrors: false, lineCounter });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const pos = lineCounter.linePos(problem.pos[0]);
    const hint = problem.code === 'DUPLICATE_KEY' ? 'each key may appear once in a map; merge the two entries' : FIX;
    throw new ConfigError(`${source}: line ${pos.line}, column ${pos.col}: ${firstLine(problem.message)}`, hint);
  }
  try {
    return doc.toJS({ mapAsMap: true, maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    throw new ConfigError(`${source}: ${firstLine(err instanceof Error ? err.message : String(err))}`, 'a config has no use for anchors and aliases; write each value out', err);
  }
}

function where(text: string, index: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `line ${line}, column ${index - lineStart + 1}`;
}

function firstLine(message: string): string {
  const line = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}
