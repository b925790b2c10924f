/**
 * YAML text → plain values (Map, array, string, null), refusing hostile input before the
 * yaml package sees it. The policy and the sidecar config are read by every sidecar (the
 * policy on every reload), so a bad file must cost milliseconds and one line, never a hang,
 * an out-of-memory abort or a stack trace.
 *
 * Measured with yaml 2.9: ten thousand nested `[` make its composer overflow the stack and,
 * with `prettyErrors`, abort the process out of memory; its lexer, by contrast, is iterative
 * and linear. So nesting is bounded here on the lexer's tokens, with an early exit.
 */
import { Lexer, LineCounter, parseDocument } from 'yaml';
import { ConfigError } from './errors.js';

/** What a kind of file may hold, and how its refusals read. */
export interface YamlLimits {
  /** "policy", "config": used in messages. */
  readonly what: string;
  readonly maxBytes: number;
  /** Far above the file's real depth; anything near it is not that kind of file. */
  readonly maxNesting: number;
  /** Bounds the expansion of an alias bomb. */
  readonly maxAliasCount: number;
  /** What to do about a syntax error. */
  readonly fixSyntax: string;
  /** What to do about a file over maxBytes. */
  readonly tooBigHint: string;
  /** What to do about nesting past maxNesting. */
  readonly nestingHint: string;
  /**
   * Return an unquoted scalar that YAML 1.1 or the 1.2 core schema would read as a
   * boolean, number or null (`yes`, `on`, `123`, `1e3`, `null`) as a YamlNonString, for a
   * file where such a value standing for a name is a mistake to refuse. Default: a string.
   */
  readonly markNonStrings?: boolean;
}

/** An unquoted scalar that other YAML readers take for a boolean, number or null (see markNonStrings). */
export class YamlNonString {
  constructor(
    /** The scalar as written. */
    readonly text: string,
    readonly kind: 'boolean' | 'number' | 'null',
  ) {}
}

const YAML_BOOLEAN = /^(?:y|n|yes|no|true|false|on|off)$/i;
const YAML_NULL = /^(?:null|~)$/i;
// Integers (decimal, 0x, 0o, 0b, 1.1's leading-zero octal and _ separators) and floats.
const YAML_NUMBER =
  /^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|[-+]?0x[0-9a-f_]+|0b[01_]+|[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:e[-+]?[0-9]+)?|[-+]?\.inf|\.nan)$/i;

const NON_STRING_TAG = {
  tag: 'tag:svcca.dev,2026:non-string',
  default: true,
  test: new RegExp(`${YAML_BOOLEAN.source}|${YAML_NULL.source}|${YAML_NUMBER.source}`, 'i'),
  resolve: (text: string) => new YamlNonString(text, YAML_BOOLEAN.test(text) ? 'boolean' : YAML_NULL.test(text) ? 'null' : 'number'),
};

/**
 * Parses `text` (one YAML document, YAML 1.2 failsafe schema: every scalar is a string, so
 * `on`, `1e3` or `null` mean what they spell, unless `limits.markNonStrings` asks for them
 * as YamlNonString) into Maps, arrays, strings and null.
 * Throws ConfigError whose message starts with `${source}: `.
 */
export function readYaml(text: string, source: string, limits: YamlLimits): unknown {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxBytes) {
    throw new ConfigError(`${source}: is ${bytes} bytes; a ${limits.what} is at most ${limits.maxBytes} bytes`, limits.tooBigHint);
  }
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const binary = firstNonPrintable(body);
  if (binary !== undefined) {
    throw new ConfigError(
      `${source}: ${where(body, binary)}: contains the character U+${body.codePointAt(binary)!.toString(16).toUpperCase().padStart(4, '0')}, which YAML text may not hold`,
      `a ${limits.what} is UTF-8 YAML text; check that this is the right file`,
    );
  }
  scanTokens(body, source, limits);
  const lineCounter = new LineCounter();
  const doc = parseDocument(body, {
    schema: 'failsafe',
    uniqueKeys: true,
    prettyErrors: false,
    lineCounter,
    ...(limits.markNonStrings ? { customTags: [NON_STRING_TAG] } : {}),
  });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const pos = lineCounter.linePos(problem.pos[0]);
    const hint = problem.code === 'DUPLICATE_KEY' ? 'each key may appear once in a map; merge the two entries' : limits.fixSyntax;
    throw new ConfigError(`${source}: line ${pos.line}, column ${pos.col}: ${firstLine(problem.message)}`, hint);
  }
  try {
    return doc.toJS({ mapAsMap: true, maxAliasCount: limits.maxAliasCount });
  } catch (err) {
    // yaml throws ReferenceError for an alias bomb and for an alias to nothing.
    const message = firstLine(err instanceof Error ? err.message : String(err));
    const hint = /excessive alias/i.test(message)
      ? `use anchors and aliases sparingly (at most ${limits.maxAliasCount} expansions)`
      : limits.fixSyntax;
    throw new ConfigError(`${source}: ${message}`, hint, err);
  }
}

/** YAML 1.2 c-printable: tab, LF, CR, printable ASCII, NEL, and Unicode beyond the C1 block minus surrogates and U+FFFE/U+FFFF. */
function firstNonPrintable(text: string): number | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) continue;
    if (c === 0x09 || c === 0x0a || c === 0x0d || c === 0x85) continue;
    if (c >= 0xa0 && c <= 0xd7ff) continue;
    if (c >= 0xe000 && c <= 0xfffd) continue;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return undefined;
}

// The lexer's zero-width control tokens (document start, flow end, scalar marker, BOM).
const ZERO_WIDTH = new Set(['\x02', '\x18', '\x1f', '\ufeff']);

/**
 * Refuses tags and excessive nesting. Depth is estimated per line as the open block
 * indentation levels, plus the `-`/`?`/`:` indicators on the line, plus the open flow
 * collections: an upper bound on what the composer will recurse through.
 */
function scanTokens(text: string, source: string, limits: YamlLimits): void {
  const indents: number[] = [];
  let offset = 0;
  let flow = 0;
  let lineStart = true;
  let indent = 0;
  let onLine = 0;
  let lineOpened = false;
  for (const token of new Lexer().lex(text)) {
    const at = offset;
    if (!ZERO_WIDTH.has(token)) offset += token.length;
    if (token === '\n' || token === '\r\n') {
      lineStart = true;
      indent = 0;
      onLine = 0;
      lineOpened = false;
      continue;
    }
    if (lineStart && /^[ \t]+$/.test(token)) {
      indent = token.length;
      lineStart = false;
      continue;
    }
    lineStart = false;
    if (ZERO_WIDTH.has(token) || token[0] === '#' || /^[ \t]+$/.test(token)) continue;
    if (token[0] === '!') {
      throw new ConfigError(
        `${source}: ${where(text, at)}: YAML tag ${clip(token)} is not allowed in a ${limits.what}`,
        `remove the tag; every ${limits.what} value is a plain string, list or map`,
      );
    }
    if (flow === 0 && !lineOpened) {
      while (indents.length > 0 && indents[indents.length - 1]! >= indent) indents.pop();
      indents.push(indent);
      lineOpened = true;
    }
    if (token === '[' || token === '{') flow++;
    else if ((token === ']' || token === '}') && flow > 0) flow--;
    else if (flow === 0 && (token === '-' || token === '?' || token === ':')) onLine++;
    if (indents.length + onLine + flow > limits.maxNesting) {
      throw new ConfigError(`${source}: ${where(text, at)}: nested more than ${limits.maxNesting} levels deep`, limits.nestingHint);
    }
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
  return clip(message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''), 200);
}

function clip(value: string, max = 40): string {
  return value.length > max ? `${value.slice(0, max - 3)}...` : value;
}
