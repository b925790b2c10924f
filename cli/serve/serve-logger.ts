/** JSON-lines logs on stdout (pino), one line per request and per event of the server. */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';

export function createServeLogger(level = 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'svcca-serve' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['key', '*.key', 'token', '*.token', 'csr'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
