/**
 * A routing table prepared for the request path: durations in ms, endpoint
 * digests and cookie tags precomputed, CIDRs parsed. Immutable once built;
 * the proxy swaps whole tables atomically.
 */
import { parseDuration } from '../api/duration.ts';
import type { RoutingTable, TableEndpoint } from '../api/routing-table.ts';
import { endpointTag } from './cookie-codec.ts';
import { type Cidr, parseCidr } from './ip.ts';
import { type Digest, digest } from './rendezvous.ts';

export interface CompiledEndpoint {
  /** Position in {@link CompiledTable.endpoints}; health and load arrays use it. */
  readonly index: number;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly draining: boolean;
  /** Unix ms when draining began (from the table, or when first seen draining); NaN when Ready. */
  readonly drainingSinceMs: number;
  /** `http://address:port` (IPv6 bracketed). */
  readonly origin: string;
  readonly digest: Digest;
  readonly tag: string;
}

export interface CompiledCookie {
  readonly name: string;
  readonly path: string;
  readonly domain: string;
  readonly permanent: boolean;
  readonly absoluteTimeoutMs: number;
  /** 0: no idle timeout. */
  readonly idleTimeoutMs: number;
  /** How stale last-seen may get before a hit re-issues the cookie, ms. */
  readonly refreshAfterMs: number;
  readonly secure: 'Auto' | 'Always' | 'Never';
  readonly httpOnly: boolean;
  readonly sameSite: 'Strict' | 'Lax' | 'None';
}

export interface CompiledTable {
  readonly source: RoutingTable;
  readonly pool: string;
  readonly revision: number;
  readonly endpoints: readonly CompiledEndpoint[];
  readonly byTag: ReadonlyMap<string, CompiledEndpoint>;
  readonly affinityType: 'Cookie' | 'ClientIP' | 'Header' | 'Learn';
  readonly cookie: CompiledCookie;
  readonly ipv4PrefixLength: number;
  readonly ipv6PrefixLength: number;
  readonly trustedProxies: readonly Cidr[];
  /** Lower-case header name for Header affinity. */
  readonly headerName: string;
  readonly rejectOnFailure: boolean;
  readonly drainKeepsSessions: boolean;
  readonly drainTimeoutMs: number;
  /** 0: bounded load off. */
  readonly balanceFactor: number;
  readonly maxFails: number;
  readonly failTimeoutMs: number;
  /** Learn affinity: the app's session cookie, and the sliding lifetime of a learned pin, ms. */
  readonly learn: { readonly cookieName: string; readonly timeoutMs: number };
  /** Sliding lifetime of persisted ClientIP/Header pins, ms; 0: not persisted (stateless hash). */
  readonly pinTimeoutMs: number;
}

/**
 * Compiles a validated table.
 *
 * @param previous - the table being replaced: an endpoint draining in both keeps its drain start.
 * @param nowMs - Unix ms, the drain start of endpoints newly seen draining without `drainingSince`.
 */
export function compileTable(
  table: RoutingTable,
  previous: CompiledTable | undefined,
  nowMs: number,
): CompiledTable {
  const endpoints = table.endpoints.map((e, index) => compileEndpoint(table.pool, e, index, previous, nowMs));
  const c = table.affinity.cookie;
  const idleTimeoutMs = c.idleTimeout === undefined ? 0 : parseDuration(c.idleTimeout);
  return {
    source: table,
    pool: table.pool,
    revision: table.revision,
    endpoints,
    byTag: new Map(endpoints.map((e) => [e.tag, e])),
    affinityType: table.affinity.type,
    cookie: {
      name: c.name,
      path: c.path,
      domain: c.domain,
      permanent: c.lifetimeType === 'Permanent',
      absoluteTimeoutMs: parseDuration(c.absoluteTimeout),
      idleTimeoutMs,
      // Re-issuing on every hit would cost a Set-Cookie per response; a tenth
      // of the idle timeout (≤ 60 s) bounds how early an idle session can end.
      refreshAfterMs:
        idleTimeoutMs === 0
          ? Number.POSITIVE_INFINITY
          : Math.min(60_000, Math.max(1_000, idleTimeoutMs / 10)),
      secure: c.secure,
      httpOnly: c.httpOnly,
      sameSite: c.sameSite,
    },
    ipv4PrefixLength: table.affinity.clientIP.ipv4PrefixLength,
    ipv6PrefixLength: table.affinity.clientIP.ipv6PrefixLength,
    trustedProxies: table.affinity.clientIP.trustedProxies.map((t) => parseCidr(t) as Cidr),
    headerName: table.affinity.header.name.toLowerCase(),
    rejectOnFailure: table.onEndpointFailure === 'Reject',
    drainKeepsSessions: table.draining.keepSessions,
    drainTimeoutMs: parseDuration(table.draining.timeout),
    balanceFactor: table.balanceFactor ?? 0,
    maxFails: table.healthCheck.passive.maxFails,
    failTimeoutMs: parseDuration(table.healthCheck.passive.failTimeout),
    learn: {
      cookieName: table.affinity.learn.cookieName,
      timeoutMs: parseDuration(table.affinity.learn.timeout),
    },
    pinTimeoutMs: table.sessionStore?.persistPins ? parseDuration(table.sessionStore.pinTimeout) : 0,
  };
}

function compileEndpoint(
  pool: string,
  e: TableEndpoint,
  index: number,
  previous: CompiledTable | undefined,
  nowMs: number,
): CompiledEndpoint {
  const draining = e.state === 'Draining';
  let drainingSinceMs = Number.NaN;
  if (draining) {
    const before = previous?.pool === pool ? previous.endpoints.find((p) => p.id === e.id) : undefined;
    if (e.drainingSince !== undefined) drainingSinceMs = Date.parse(e.drainingSince);
    else if (before?.draining) drainingSinceMs = before.drainingSinceMs;
    else drainingSinceMs = nowMs;
  }
  const host = e.address.includes(':') ? `[${e.address}]` : e.address;
  return {
    index,
    id: e.id,
    address: e.address,
    port: e.port,
    zone: e.zone,
    weight: e.weight,
    draining,
    drainingSinceMs,
    origin: `http://${host}:${e.port}`,
    digest: digest(e.id),
    tag: endpointTag(pool, e.id),
  };
}
