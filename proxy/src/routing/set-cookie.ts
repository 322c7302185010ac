/**
 * The Set-Cookie header of the affinity cookie (RFC 6265bis attributes).
 */
import type { CompiledCookie } from './compiled-table.ts';

/**
 * Formats the affinity cookie.
 *
 * - `Session` lifetime: no Expires or Max-Age, so the browser drops it on
 *   exit (nginx-sticky-module's default); the server still enforces the
 *   absolute and idle timeouts carried inside the value.
 * - `Permanent`: `Max-Age` = absoluteTimeout in s (Max-Age wins over Expires
 *   in every current browser; no clock skew).
 * - `Secure`: `Always`, or `Auto` when the request came over TLS or from a
 *   proxy that says `X-Forwarded-Proto: https`.
 *
 * Worked example: name `route`, Permanent, 24h, Lax, Auto over https →
 * `route=<62 chars>; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax`.
 *
 * @param requestIsHttps - the request arrived over TLS (directly or per X-Forwarded-Proto).
 */
export function formatSetCookie(c: CompiledCookie, value: string, requestIsHttps: boolean): string {
  let out = `${c.name}=${value}; Path=${c.path}`;
  if (c.domain !== '') out += `; Domain=${c.domain}`;
  if (c.permanent) out += `; Max-Age=${Math.floor(c.absoluteTimeoutMs / 1000)}`;
  if (c.secure === 'Always' || (c.secure === 'Auto' && requestIsHttps)) out += '; Secure';
  if (c.httpOnly) out += '; HttpOnly';
  out += `; SameSite=${c.sameSite}`;
  return out;
}
