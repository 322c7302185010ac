/**
 * Affinity-key extraction: pure functions from what a request carries
 * (Cookie header, peer address, X-Forwarded-For, a header) to the key it is
 * pinned or hashed on. No `node:http` here; the shell passes strings.
 */
import { type Cidr, cidrContains, type IpAddress, maskedKey, parseIp } from './ip.ts';

/** Longest header value hashed for Header affinity, in characters; longer is refused as invalid. */
export const MAX_HEADER_KEY_LENGTH = 1024;
/** Most X-Forwarded-For entries walked; a longer chain is refused as invalid. */
export const MAX_FORWARDED_HOPS = 32;

/**
 * Most values of the affinity cookie considered per request. A browser sends
 * one cookie of a name per (domain, path) it matches, sorted longest path
 * first (RFC 6265 §5.4): a host-only cookie plus a cookie for each parent
 * domain (`a.shop.example.com`, `.shop.example.com`, `.example.com`) is 4.
 * Each value costs an HMAC to verify, so a request carrying hundreds of them
 * must not cost hundreds (nginx `$cookie_route` and HAProxy's `cookie` read
 * only the first).
 */
export const MAX_AFFINITY_COOKIE_VALUES = 4;

/**
 * The values of cookie `name` in a Cookie header (RFC 6265 §5.4: `a=1; b=2`),
 * at most `max` of them. A browser can send the same name more than once
 * (host and parent-domain cookies), so the caller tries each. Quoted values
 * are unquoted.
 *
 * @returns the first `max` values in header order; empty when absent or the header is malformed.
 */
export function findCookieValues(
  header: string | undefined,
  name: string,
  max = MAX_AFFINITY_COOKIE_VALUES,
): string[] {
  if (header === undefined || header.length === 0) return [];
  const out: string[] = [];
  let at = 0;
  while (at < header.length && out.length < max) {
    const semi = header.indexOf(';', at);
    const end = semi < 0 ? header.length : semi;
    const eq = header.indexOf('=', at);
    if (eq > at && eq < end) {
      if (header.slice(at, eq).trim() === name) {
        let v = header.slice(eq + 1, end).trim();
        if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
        out.push(v);
      }
    }
    at = end + 1;
  }
  return out;
}

/** The client address ClientIP affinity uses, and whether X-Forwarded-For was refused. */
export interface ClientAddress {
  readonly ip: IpAddress;
  /** `true` when X-Forwarded-For came from a trusted peer but was malformed, so the peer was used. */
  readonly forwardedInvalid: boolean;
}

/**
 * The client's address: the peer, or, when the peer is a trusted proxy, the
 * rightmost X-Forwarded-For entry that is not itself trusted (nginx
 * `real_ip_recursive on`; HAProxy and Envoy `xff_num_trusted_hops` agree).
 * A malformed chain is ignored whole: the peer is used, never a guess.
 *
 * Worked example: peer 10.0.0.5 (trusted 10.0.0.0/8), XFF
 * `203.0.113.9, 10.0.0.7` → 10.0.0.7 is trusted, so the client is 203.0.113.9.
 *
 * @param peer - the socket's remote address (`::ffff:` forms accepted).
 * @returns undefined only when the peer itself is not an address.
 */
export function resolveClientAddress(
  peer: string | undefined,
  forwardedFor: string | undefined,
  trusted: readonly Cidr[],
): ClientAddress | undefined {
  const peerIp = peer === undefined ? undefined : parseIp(peer);
  if (peerIp === undefined) return undefined;
  const isTrusted = (ip: IpAddress): boolean => trusted.some((c) => cidrContains(c, ip));
  if (forwardedFor === undefined || trusted.length === 0 || !isTrusted(peerIp)) {
    return { ip: peerIp, forwardedInvalid: false };
  }
  const hops = forwardedFor.split(',');
  if (hops.length > MAX_FORWARDED_HOPS) return { ip: peerIp, forwardedInvalid: true };
  const parsed: IpAddress[] = [];
  for (const hop of hops) {
    const ip = parseIp(stripPort(hop.trim()));
    if (ip === undefined) return { ip: peerIp, forwardedInvalid: true };
    parsed.push(ip);
  }
  for (let i = parsed.length - 1; i >= 0; i--) {
    const ip = parsed[i] as IpAddress;
    if (!isTrusted(ip)) return { ip, forwardedInvalid: false };
  }
  // Every hop is trusted: the leftmost is the best we know (nginx does the same).
  return { ip: parsed[0] as IpAddress, forwardedInvalid: false };
}

function stripPort(hop: string): string {
  // "[2001:db8::1]:443" and "192.0.2.1:443" appear in the wild (Azure, some CDNs).
  if (hop.startsWith('[')) {
    const close = hop.indexOf(']');
    return close > 0 ? hop.slice(1, close) : hop;
  }
  const colon = hop.indexOf(':');
  return colon > 0 && hop.indexOf(':', colon + 1) < 0 ? hop.slice(0, colon) : hop;
}

/**
 * The ClientIP affinity key: the address masked to its prefix length.
 * nginx ip_hash uses the first three octets of IPv4 (/24) and the whole IPv6 address.
 */
export function clientIpKey(addr: ClientAddress, ipv4PrefixLength: number, ipv6PrefixLength: number): string {
  return maskedKey(addr.ip, ipv4PrefixLength, ipv6PrefixLength);
}

/** A Header-affinity key, or why there is none. */
export type HeaderKey = { key: string } | { problem: 'missing' | 'invalid' };

/**
 * The Header-affinity key (HAProxy `balance hdr(name)`). A value that is
 * empty is missing; one longer than {@link MAX_HEADER_KEY_LENGTH} or with
 * control characters is invalid. Both get a fresh, unsticky pin.
 */
export function headerKey(value: string | string[] | undefined): HeaderKey {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim().length === 0) return { problem: 'missing' };
  if (v.length > MAX_HEADER_KEY_LENGTH || hasControlCharacter(v)) return { problem: 'invalid' };
  return { key: v.trim() };
}

function hasControlCharacter(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
