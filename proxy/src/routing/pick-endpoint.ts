/**
 * The affinity decision: which endpoint serves a request, and whether its
 * pin is kept, made or moved. Pure over a compiled table and a view of
 * endpoint health and load that the I/O shell supplies.
 *
 * Rules (architecture, "Affinity semantics"):
 * - a valid pin to a healthy endpoint is kept (hit), even while it drains,
 *   until `draining.timeout`;
 * - a new pin never lands on a draining endpoint;
 * - a re-pin is the rendezvous choice of the affinity key over the healthy
 *   Ready endpoints, so every proxy re-pins a client to the same endpoint;
 * - `balanceFactor` walks down the key's preference list for new pins and
 *   re-pins only, never moving a kept pin (HAProxy hash-balance-factor).
 */

import type { KeyObject } from 'node:crypto';
import type { CompiledEndpoint, CompiledTable } from './compiled-table.ts';
import { type AffinityCookie, decodeAffinityCookie } from './cookie-codec.ts';
import { type Digest, digest, pickTop, rank } from './rendezvous.ts';

/** What the shell knows of each endpoint now, by {@link CompiledEndpoint.index}. */
export interface EndpointView {
  /** Passive and active health both pass at `nowMs` (Unix ms, the decision's clock). */
  isHealthy(index: number, nowMs: number): boolean;
  /** Requests in flight to the endpoint from this proxy. */
  inflight(index: number): number;
}

/** Every affinity outcome; metrics enumerate their series from it. */
export const AFFINITY_OUTCOMES = ['hit', 'new', 'repin'] as const;
export type AffinityOutcome = (typeof AFFINITY_OUTCOMES)[number];

/**
 * Why a pin was made or moved. `missing`: the request carried no affinity key
 * (no cookie, no header); `invalid`: malformed, forged or foreign;
 * `expired`: past absolute or idle timeout; `unhealthy`: pinned endpoint
 * failing health checks; `draining`: pinned endpoint past its drain timeout
 * (or draining without keepSessions); `removed`: pinned endpoint no longer
 * in the table; `redispatch`: the connection to it just failed; `unknown`:
 * the session store holds no pin for the key (never learned, or timed out).
 */
export const PIN_REASONS = [
  'none',
  'missing',
  'invalid',
  'expired',
  'unhealthy',
  'draining',
  'removed',
  'redispatch',
  'unknown',
] as const;
export type PinReason = (typeof PIN_REASONS)[number];

export interface Decision {
  /** Undefined: no endpoint can take the request (503). */
  readonly endpoint: CompiledEndpoint | undefined;
  readonly outcome: AffinityOutcome;
  readonly reason: PinReason;
  /** The digest the choice was made on; redispatch re-ranks with it. */
  readonly key: Digest;
  /** Cookie affinity: the cookie to send, when it changes. */
  readonly setCookie: AffinityCookie | undefined;
  /** Cookie affinity: the session's cookie content after this decision (sent or not). */
  readonly session?: AffinityCookie | undefined;
}

/** Inputs of a Cookie-affinity decision. */
export interface CookieRequest {
  /** Values of the affinity cookie in the request, in header order. */
  readonly values: readonly string[];
  readonly keys: readonly KeyObject[];
  /** Unix ms. */
  readonly nowMs: number;
  /** A new random session id (base64url of 12 bytes), used when the client has none valid. */
  readonly freshSessionId: () => string;
}

/**
 * Whether a pinned client may stay on `e` now: healthy, and not draining past
 * the timeout (or draining with keepSessions off).
 */
export function keepsPin(
  table: CompiledTable,
  e: CompiledEndpoint,
  view: EndpointView,
  nowMs: number,
): PinReason {
  if (!view.isHealthy(e.index, nowMs)) return 'unhealthy';
  if (e.draining && (!table.drainKeepsSessions || nowMs - e.drainingSinceMs >= table.drainTimeoutMs))
    return 'draining';
  return 'none';
}

/**
 * Chooses the endpoint for a new pin or a re-pin of `key`: the top-ranked
 * healthy Ready endpoint, skipping full ones under bounded load. When no
 * Ready endpoint is healthy, a healthy draining one still in its drain window
 * serves rather than a 503.
 *
 * Bounded load, worked example: factor 125, 3 equal endpoints, 8 requests in
 * flight, so the cap is ceil((8 + 1) × 1.25 / 3) = 4; an endpoint already at
 * 4 is skipped for the key's next preference.
 *
 * @param exclude - an endpoint index to skip (the one redispatch just failed on), or -1.
 */
export function chooseEndpoint(
  table: CompiledTable,
  key: Digest,
  view: EndpointView,
  nowMs: number,
  exclude = -1,
): CompiledEndpoint | undefined {
  const eps = table.endpoints;
  const ready = (i: number): boolean =>
    i !== exclude && !(eps[i] as CompiledEndpoint).draining && view.isHealthy(i, nowMs);
  let chosen: number;
  if (table.balanceFactor > 0) {
    const order = rank(key, eps, ready);
    chosen = order[0] ?? -1;
    if (order.length > 1) {
      let total = 0;
      let weights = 0;
      for (const i of order) {
        total += view.inflight(i);
        weights += (eps[i] as CompiledEndpoint).weight;
      }
      for (const i of order) {
        const cap = Math.ceil(
          (((total + 1) * table.balanceFactor) / 100) * ((eps[i] as CompiledEndpoint).weight / weights),
        );
        if (view.inflight(i) + 1 <= cap) {
          chosen = i;
          break;
        }
      }
    }
  } else {
    chosen = pickTop(key, eps, ready);
  }
  if (chosen < 0) {
    chosen = pickTop(
      key,
      eps,
      (i) => i !== exclude && keepsPin(table, eps[i] as CompiledEndpoint, view, nowMs) === 'none',
    );
  }
  return chosen < 0 ? undefined : eps[chosen];
}

/**
 * Cookie affinity (nginx-sticky-module `route`, HAProxy `cookie insert`):
 * follows a valid cookie; otherwise pins the session id by rendezvous.
 */
export function decideByCookie(table: CompiledTable, req: CookieRequest, view: EndpointView): Decision {
  const nowS = Math.floor(req.nowMs / 1000);
  let reason: PinReason = req.values.length === 0 ? 'missing' : 'invalid';
  let valid: AffinityCookie | undefined;
  for (const value of req.values) {
    const d = decodeAffinityCookie(value, req.keys, table.pool);
    if (!d.ok) continue;
    const c = d.cookie;
    const c2 = table.cookie;
    if (
      (nowS - c.issuedAt) * 1000 >= c2.absoluteTimeoutMs ||
      (c2.idleTimeoutMs > 0 && (nowS - c.lastSeen) * 1000 >= c2.idleTimeoutMs) ||
      c.issuedAt > nowS + 60 // issued in the future: another proxy's clock, or a forgery with a stolen key
    ) {
      reason = 'expired';
      continue;
    }
    valid = c;
    break;
  }

  if (valid === undefined) {
    const sessionId = req.freshSessionId();
    const key = digest(sessionId);
    const endpoint = chooseEndpoint(table, key, view, req.nowMs);
    const setCookie = endpoint && { sessionId, endpointTag: endpoint.tag, issuedAt: nowS, lastSeen: nowS };
    return {
      endpoint,
      outcome: reason === 'missing' ? 'new' : 'repin',
      reason,
      key,
      setCookie,
      session: setCookie,
    };
  }

  const key = digest(valid.sessionId);
  const pinned = table.byTag.get(valid.endpointTag);
  const why = pinned === undefined ? 'removed' : keepsPin(table, pinned, view, req.nowMs);
  if (pinned !== undefined && why === 'none') {
    const stale = (nowS - valid.lastSeen) * 1000 >= table.cookie.refreshAfterMs;
    const session = stale ? { ...valid, lastSeen: nowS } : valid;
    return {
      endpoint: pinned,
      outcome: 'hit',
      reason: 'none',
      key,
      setCookie: stale ? session : undefined,
      session,
    };
  }
  if (table.rejectOnFailure)
    return { endpoint: undefined, outcome: 'repin', reason: why, key, setCookie: undefined };
  const endpoint = chooseEndpoint(table, key, view, req.nowMs);
  // The session keeps its id and issue time: a re-pin moves it, it does not renew it.
  const setCookie = endpoint && { ...valid, endpointTag: endpoint.tag, lastSeen: nowS };
  return { endpoint, outcome: 'repin', reason: why, key, setCookie, session: setCookie };
}

/**
 * ClientIP and Header affinity (nginx `ip_hash`/`hash … consistent`, HAProxy
 * `balance source`/`hdr`): stateless; the key's first choice over all
 * endpoints is its pin, kept while it drains.
 *
 * @param key - the affinity key, or undefined with the reason there is none (a random key is used: no stickiness).
 */
export function decideByKey(
  table: CompiledTable,
  key: string | undefined,
  problem: 'missing' | 'invalid' | undefined,
  view: EndpointView,
  nowMs: number,
  randomKey: () => string,
): Decision {
  if (key === undefined) {
    const d = digest(randomKey());
    return {
      endpoint: chooseEndpoint(table, d, view, nowMs),
      outcome: 'new',
      reason: problem ?? 'missing',
      key: d,
      setCookie: undefined,
    };
  }
  const d = digest(key);
  const eps = table.endpoints;
  const first = pickTop(d, eps, () => true);
  if (first < 0) return { endpoint: undefined, outcome: 'new', reason: 'none', key: d, setCookie: undefined };
  const pinned = eps[first] as CompiledEndpoint;
  const why = keepsPin(table, pinned, view, nowMs);
  // A stateless hash cannot tell a draining endpoint's old clients from new
  // ones, so it keeps every key that ranks it first until the drain timeout.
  if (why === 'none')
    return { endpoint: pinned, outcome: 'hit', reason: 'none', key: d, setCookie: undefined };
  if (table.rejectOnFailure)
    return { endpoint: undefined, outcome: 'repin', reason: why, key: d, setCookie: undefined };
  return {
    endpoint: chooseEndpoint(table, d, view, nowMs),
    outcome: 'repin',
    reason: why,
    key: d,
    setCookie: undefined,
  };
}

/**
 * Redispatch (HAProxy `option redispatch`, once): the next choice for a key
 * after the connection to the endpoint `failedId` broke.
 *
 * `table` may be a newer table than the one the request started with (the
 * proxy redispatches in the table served now, with that table's view):
 * the failed endpoint is named by id, never by an index of another table,
 * and is skipped when this table still has it.
 */
export function redispatch(
  table: CompiledTable,
  previous: Decision,
  failedId: string,
  view: EndpointView,
  nowMs: number,
): Decision {
  const exclude = table.endpoints.findIndex((e) => e.id === failedId);
  const endpoint = chooseEndpoint(table, previous.key, view, nowMs, exclude);
  const setCookie =
    previous.session !== undefined && endpoint !== undefined
      ? { ...previous.session, endpointTag: endpoint.tag }
      : undefined;
  return {
    endpoint,
    outcome: 'repin',
    reason: 'redispatch',
    key: previous.key,
    setCookie,
    session: setCookie,
  };
}
