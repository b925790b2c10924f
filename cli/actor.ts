import { hostname, userInfo } from 'node:os';

/** Who is acting, for the event log: user@host. */
export function actor(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep $USER
  }
  return `${user}@${hostname()}`;
}
