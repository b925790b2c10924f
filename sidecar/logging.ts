/**
 * JSON-lines logs on stdout (pino). One logger is created by main and handed to every
 * part; tests hand in their own destination to read the lines back.
 */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { LogLevel } from './config/schema.js';
import { boundLogFields } from './log-fields.js';

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'svcca-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: boundLogFields },
      // Belt and braces: nothing logs key material, and if a future field did, it is cut.
      redact: { paths: ['keyPem', '*.keyPem', 'key', '*.key', 'serverOptions'], censor: '[redacted]' },
    },
    // Synchronous writes: a refusal line must be on stdout before the socket closes,
    // and nothing may be lost when the process exits after draining.
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
