/**
 * What a caller is told, and what is logged, when the local service fails an http-mode
 * request (HTTP/1.1 and HTTP/2 alike): 504 when it did not answer in time, else 502 with
 * what went wrong.
 */
export interface UpstreamFailure {
  readonly status: 502 | 504;
  readonly reason: 'upstream-timeout' | 'upstream-unavailable';
  readonly detail: string;
}

export interface UpstreamSettings {
  readonly forward: { readonly text: string };
  readonly upstreamTimeoutMs: number;
}

/** `what` finishes "the local service at ADDRESS …" (unreachable(err), "closed the stream …"). */
export function upstreamFailure(config: UpstreamSettings, timedOut: boolean, what: string): UpstreamFailure {
  return timedOut
    ? {
        status: 504,
        reason: 'upstream-timeout',
        detail: `the local service at ${config.forward.text} did not answer within ${config.upstreamTimeoutMs} ms`,
      }
    : { status: 502, reason: 'upstream-unavailable', detail: `the local service at ${config.forward.text} ${what}` };
}

/** "is unreachable (ECONNREFUSED)": the system's code, else the message. */
export function unreachable(err: { code?: string; message: string }): string {
  return `is unreachable (${err.code ?? err.message})`;
}
