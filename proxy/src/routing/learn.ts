/**
 * Pins kept in the session store: Learn affinity (the app's own session
 * cookie, nginx `sticky learn`, HAProxy `stick on req.cook(JSESSIONID)` +
 * `stick store-response res.cook(JSESSIONID)` with peers) and persisted
 * ClientIP/Header pins (HAProxy `stick on src` with a stick table). Pure: the
 * store keys, what a request's cookie and an endpoint's `Set-Cookie` say, the
 * decision over what the store answered (or did not), and the writes a
 * response calls for. The I/O is `session-store/pin-store.ts`.
 *
 * Store layout, one string per pin, the value the endpoint's id:
 *
 *     tether:{default/shop}:learn:<h>   Learn: h of the app's cookie value, TTL affinity.learn.timeout
 *     tether:{default/shop}:pin:<h>     ClientIP/Header: h of the affinity key, TTL sessionStore.pinTimeout
 *
 * `h` is base64url of the first 16 bytes of SHA-256(pool, kind, value): the
 * cookie value is a session credential and the affinity key a client's
 * address or token, so neither is kept raw. The `{pool}` hash tag keeps a
 * pool's keys in one Redis Cluster slot, should the store ever be one.
 * Both TTLs slide: a lookup is `GETEX … PX ttl` (nginx learn's `timeout`
 * counts from the last use, and so do HAProxy stick-table entries' `expire`).
 */
import { createHash } from 'node:crypto';
import type { CompiledTable } from './compiled-table.ts';
import { chooseEndpoint, type Decision, decideByKey, type EndpointView, keepsPin } from './pick-endpoint.ts';
import { digest } from './rendezvous.ts';

/** Longest learned cookie value accepted, characters: a browser keeps at most 4096 bytes per cookie. */
export const MAX_LEARNED_VALUE_LENGTH = 4096;

/** The two kinds of pin in the store. */
export type PinKind = 'learn' | 'pin';

/**
 * The store key of a pin: `tether:{<pool>}:<kind>:<h>`, see the module comment.
 *
 * Worked example: pool `default/shop`, kind `learn`, value `ABC123` →
 * `tether:{default/shop}:learn:` + 22 base64url characters.
 */
export function storeKeyOf(pool: string, kind: PinKind, value: string): string {
  const h = createHash('sha256')
    .update(pool)
    .update('\0')
    .update(kind)
    .update('\0')
    .update(value)
    .digest()
    .toString('base64url', 0, 16);
  return `tether:{${pool}}:${kind}:${h}`;
}

/** A learned cookie's value in a request, or why there is none. */
export type LearnedCookie = { value: string } | { problem: 'missing' | 'invalid' };

/**
 * The value of the app's session cookie `name` in a Cookie header: the first
 * one, as HAProxy `req.cook()` and nginx `$cookie_NAME` take it (a browser
 * sends the most specific path first). Empty is missing; longer than
 * {@link MAX_LEARNED_VALUE_LENGTH} or with control characters, spaces or
 * `;` is invalid (no endpoint ever set such a value).
 */
export function findLearnedCookie(cookieHeader: string | undefined, name: string): LearnedCookie {
  const v = firstCookieValue(cookieHeader, name);
  if (v === undefined || v === '') return { problem: 'missing' };
  return isCookieValue(v) ? { value: v } : { problem: 'invalid' };
}

function firstCookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return unquote(part.slice(eq + 1).trim());
  }
  return undefined;
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

function isCookieValue(v: string): boolean {
  if (v.length > MAX_LEARNED_VALUE_LENGTH) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    // RFC 6265 cookie-octet, plus the few characters apps put there anyway (e.g. `,` is not; `"` only quoted).
    if (c <= 0x20 || c === 0x7f || c === 0x3b || c === 0x22 || c === 0x5c || c === 0x2c) return false;
  }
  return true;
}

/** What an endpoint's `Set-Cookie` headers say about one cookie. */
export type CookieSet = { kind: 'set'; value: string } | { kind: 'deleted' };

/**
 * What the response's `Set-Cookie` headers do to cookie `name`; the last
 * header naming it wins, as in a browser. A deletion is an empty value, a
 * `Max-Age` ≤ 0, or an `Expires` not after `nowMs` (`Max-Age` wins over
 * `Expires`, RFC 6265 §5.3). A value that is no cookie value is ignored.
 *
 * @param setCookie - the response's `set-cookie` header(s), as undici or node:http give them.
 * @param nowMs - Unix ms, to judge `Expires`.
 * @returns undefined when no header sets `name`.
 */
export function findSetCookie(
  setCookie: string | readonly string[] | undefined,
  name: string,
  nowMs: number,
): CookieSet | undefined {
  if (setCookie === undefined) return undefined;
  const all = typeof setCookie === 'string' ? [setCookie] : setCookie;
  let found: CookieSet | undefined;
  for (const header of all) {
    const parts = header.split(';');
    const pair = parts[0] ?? '';
    const eq = pair.indexOf('=');
    if (eq <= 0 || pair.slice(0, eq).trim() !== name) continue;
    const value = unquote(pair.slice(eq + 1).trim());
    let maxAge: number | undefined;
    let expires: number | undefined;
    for (const attr of parts.slice(1)) {
      const aeq = attr.indexOf('=');
      const an = (aeq < 0 ? attr : attr.slice(0, aeq)).trim().toLowerCase();
      const av = aeq < 0 ? '' : attr.slice(aeq + 1).trim();
      if (an === 'max-age' && /^-?[0-9]+$/.test(av)) maxAge = Number(av);
      else if (an === 'expires') {
        const t = Date.parse(av);
        if (!Number.isNaN(t)) expires = t;
      }
    }
    const deleted =
      value === '' || (maxAge !== undefined ? maxAge <= 0 : expires !== undefined && expires <= nowMs);
    if (deleted) found = { kind: 'deleted' };
    else if (isCookieValue(value)) found = { kind: 'set', value };
  }
  return found;
}

/**
 * Why a request was decided without the store: `timeout` (no answer within
 * `--session-store-timeout`), `error` (the store answered with an error),
 * `not_connected` (no primary known right now: the client fails at once,
 * no wait), `circuit_open` (recent calls failed: the store is skipped for a
 * while, see `session-store/breaker.ts`).
 */
export const FALLBACK_REASONS = ['timeout', 'error', 'not_connected', 'circuit_open'] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];

/** What the store said of a key: the endpoint id it holds, nothing, or no answer. */
export type StoreAnswer =
  | { kind: 'found'; endpointId: string }
  | { kind: 'absent' }
  | { kind: 'unavailable'; reason: FallbackReason };

/**
 * The decision for a request whose affinity key was looked up in the store
 * (Learn: the app's cookie value; persisted pins: the ClientIP/Header key).
 *
 * - `found`, endpoint in the table and keeping pins ({@link keepsPin}:
 *   healthy, draining rules as for cookies): hit.
 * - `found` but removed, unhealthy or drained: re-pin by the rendezvous
 *   choice of the key over the healthy Ready endpoints (503 under `Reject`).
 * - `absent`: a new pin, the same rendezvous choice (never a draining
 *   endpoint), reason `unknown`.
 * - `unavailable`: the stateless consistent hash of the same key
 *   ({@link decideByKey}: its first choice over every endpoint, kept while
 *   it drains), so every proxy replica still sends the key to one endpoint.
 *
 * Worked example: JSESSIONID `A1` learned on `shop-b`; `shop-b` is killed
 * and marked unhealthy; the lookup finds `shop-b` → re-pin to the top of
 * `A1`'s ranking among the healthy ones, say `shop-c`, and the response
 * stores `shop-c` (see {@link planStoreWrites}).
 */
export function decideByStoredPin(
  table: CompiledTable,
  key: string,
  answer: StoreAnswer,
  view: EndpointView,
  nowMs: number,
): Decision {
  if (answer.kind === 'unavailable') return decideByKey(table, key, undefined, view, nowMs, () => key);
  const d = digest(key);
  if (answer.kind === 'absent') {
    return {
      endpoint: chooseEndpoint(table, d, view, nowMs),
      outcome: 'new',
      reason: 'unknown',
      key: d,
      setCookie: undefined,
    };
  }
  const pinned = table.endpoints.find((e) => e.id === answer.endpointId);
  const why = pinned === undefined ? 'removed' : keepsPin(table, pinned, view, nowMs);
  if (pinned !== undefined && why === 'none')
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

/** What a request's pin needs from the store: carried from the lookup to its response. */
export interface PinContext {
  /** The request's affinity key (Learn: the cookie value); undefined when it had none. */
  readonly affinityKey: string | undefined;
  /** Why there is no affinity key. */
  readonly problem: 'missing' | 'invalid' | undefined;
  /** The store key of the request's affinity key; undefined when it had none. */
  readonly storeKey: string | undefined;
  /** Sliding lifetime of that key's entry, ms. */
  readonly ttlMs: number;
  /** What the store answered for `storeKey` (undefined: not asked). */
  readonly answer: StoreAnswer | undefined;
  /** Learn only: the cookie learned from responses, the request's value of it, and the pool. */
  readonly learn:
    | { readonly pool: string; readonly cookieName: string; readonly requestValue: string | undefined }
    | undefined;
}

/** One store write a response calls for. */
export type StoreWrite =
  | { op: 'set'; key: string; endpointId: string; ttlMs: number }
  | { op: 'del'; key: string };

/**
 * The writes after endpoint `answeredBy` answered a request (at response
 * headers, so a redispatched request stores where it was really served):
 *
 * 1. Learn, and the response sets the cookie: store its value → `answeredBy`
 *    (unless that is exactly what the lookup found); a deletion (logout)
 *    removes the request's entry.
 * 2. Otherwise, when the store answered the lookup and its entry is absent
 *    or names another endpoint (a new pin, a re-pin, a redispatch): store
 *    the key → `answeredBy`.
 * 3. Nothing after a lookup the store did not answer: the fallback's choice
 *    is transient and must not overwrite a pin the store may still hold.
 */
export function planStoreWrites(
  ctx: PinContext,
  answeredBy: string,
  setCookie: string | readonly string[] | undefined,
  nowMs: number,
): StoreWrite[] {
  const found = ctx.answer?.kind === 'found' ? ctx.answer.endpointId : undefined;
  const l = ctx.learn;
  if (l !== undefined) {
    const set = findSetCookie(setCookie, l.cookieName, nowMs);
    if (set?.kind === 'deleted') return ctx.storeKey === undefined ? [] : [{ op: 'del', key: ctx.storeKey }];
    if (set?.kind === 'set') {
      if (set.value === l.requestValue && found === answeredBy) return [];
      return [
        { op: 'set', key: storeKeyOf(l.pool, 'learn', set.value), endpointId: answeredBy, ttlMs: ctx.ttlMs },
      ];
    }
  }
  if (ctx.storeKey === undefined || ctx.answer === undefined || ctx.answer.kind === 'unavailable') return [];
  if (found === answeredBy) return [];
  return [{ op: 'set', key: ctx.storeKey, endpointId: answeredBy, ttlMs: ctx.ttlMs }];
}

/**
 * The pin context of a request under `table`, or undefined when the table
 * keeps no pins in the store (Cookie affinity; ClientIP/Header without
 * persisted pins, or a request without a key: those get a random pin).
 *
 * @param key - the request's affinity key (Learn: the app's cookie value).
 * @param problem - why there is none, when `key` is undefined.
 */
export function pinContextFor(
  table: CompiledTable,
  key: string | undefined,
  problem: 'missing' | 'invalid' | undefined,
): PinContext | undefined {
  if (table.affinityType === 'Learn') {
    return {
      affinityKey: key,
      problem: key === undefined ? (problem ?? 'missing') : undefined,
      storeKey: key === undefined ? undefined : storeKeyOf(table.pool, 'learn', key),
      ttlMs: table.learn.timeoutMs,
      answer: undefined,
      learn: { pool: table.pool, cookieName: table.learn.cookieName, requestValue: key },
    };
  }
  if (table.affinityType === 'Cookie' || table.pinTimeoutMs === 0 || key === undefined) return undefined;
  return {
    affinityKey: key,
    problem: undefined,
    storeKey: storeKeyOf(table.pool, 'pin', key),
    ttlMs: table.pinTimeoutMs,
    answer: undefined,
    learn: undefined,
  };
}
