/**
 * Bounds on what a log line carries from a peer. Certificates and requests from an
 * unauthenticated client can hold kilobytes in one name (900 DNS SANs, a 60 KB URI, 3,000
 * subject RDNs); a refusal line says what was wrong, not everything that was sent.
 */

/** The longest peer-supplied text kept in one log field. */
export const MAX_LOGGED_FIELD = 512;

/** `s` cut to `max` characters, with the original length said when cut. */
export function clipForLog(s: string, max = MAX_LOGGED_FIELD): string {
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/**
 * pino's log formatter: every top-level string field cut to MAX_LOGGED_FIELD * 4. The
 * places that log peer text clip it themselves, shorter; this is the net under them, so a
 * field nobody thought of still cannot carry a certificate's worth of text.
 */
export function boundLogFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in fields) {
    const v = fields[k];
    if (typeof v === 'string' && v.length > MAX_LOGGED_FIELD * 4) {
      out ??= { ...fields };
      out[k] = clipForLog(v, MAX_LOGGED_FIELD * 4);
    }
  }
  return out ?? fields;
}
