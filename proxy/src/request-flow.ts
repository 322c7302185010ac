/**
 * What happens to a request between "parsed" and "answered", whatever
 * carries its bytes: the affinity decision, the first send, and after a
 * failed attempt the retry, the redispatch, or the proxy's own answer. The
 * node:http + undici path (proxy-server.ts) and the native engine
 * (engine/native-server.ts) both drive their exchanges through this one
 * module, so the rules of issue 7 (classifyFailure, retry once, redispatch
 * once, never resend a non-idempotent request) exist once.
 *
 * Pins the session store keeps (Learn affinity, persisted ClientIP/Header
 * pins) are looked up here too, so both transports get them:
 * - {@link RequestFlow.start} looks the request's key up in the store
 *   ({@link RequestFlow.lookupStoredPin}, bounded, never rejects) before
 *   `decide()`; a table that keeps no pins in the store skips it
 *   synchronously (no promise, no allocation);
 * - each transport calls {@link RequestFlow.storePins} when the response head
 *   of the endpoint that really answered arrives (after a retry or a
 *   redispatch too), with the endpoint's `Set-Cookie`.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { classifyFailure, classifyUpstreamError, connectionWasUsed, TetherError } from './errors.ts';
import type { ProxyMetrics } from './metrics.ts';
import { clientIpKey, findCookieValues, headerKey, resolveClientAddress } from './routing/affinity-key.ts';
import type { CompiledTable } from './routing/compiled-table.ts';
import { encodeAffinityCookie, SESSION_ID_BYTES } from './routing/cookie-codec.ts';
import { type Hop, isHttps } from './routing/forwarded-headers.ts';
import { cidrContains, parseIp } from './routing/ip.ts';
import {
  decideByStoredPin,
  findLearnedCookie,
  type PinContext,
  pinContextFor,
  planStoreWrites,
} from './routing/learn.ts';
import {
  type Decision,
  decideByCookie,
  decideByKey,
  type EndpointView,
  keepsPin,
  redispatch,
} from './routing/pick-endpoint.ts';
import { formatSetCookie } from './routing/set-cookie.ts';
import type { PinStore } from './session-store/pin-store.ts';
import type { EndpointRuntime, ServedTable, Upstreams } from './upstreams.ts';

/** Methods safe to send again after a broken connection (RFC 9110 §9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** What the affinity decision reads of a request, from either transport. */
export interface RequestView {
  /** The peer's address as the socket reports it. */
  readonly remoteAddress: string | undefined;
  /** The proxy port the client connected to. */
  readonly localPort: number | undefined;
  /** The value of a request header (lower-case name), repeated ones joined with `, ` (`Cookie` with `; `). */
  header(lower: string): string | undefined;
}

/** The retry state of one client request across its attempts. */
export interface FlowExchange {
  readonly method: string;
  /** The one retry after a broken connection was used. */
  retried: boolean;
  /** The one redispatch after a failed connect was used. */
  redispatched: boolean;
  /** A pin the session store keeps (Learn, persisted pins): the key, and what the store said of it; set by {@link RequestFlow.start}. */
  pin: PinContext | undefined;
}

/** What a transport does for the flow: send an attempt, answer an error, report the exchange's state. */
export interface Transport<X extends FlowExchange> {
  /**
   * One attempt to send the request to `rt`'s endpoint.
   * @param fresh - on a new connection of its own (the retry after a broken keep-alive connection).
   */
  forward(served: ServedTable, ex: X, decision: Decision, rt: EndpointRuntime, fresh: boolean): void;
  /** Answers the client with an error of the proxy, once. */
  answer(ex: X, table: CompiledTable | undefined, endpoint: string | undefined, err: TetherError): void;
  /** The request's body can be sent again (none, buffered whole, or not yet begun to flow). */
  replayable(ex: X): boolean;
  /** The client has gone: nothing is answered any more. */
  clientGone(ex: X): boolean;
  /** The exchange is over (answered by the proxy, or its client gone): a late store lookup drops it. */
  settled(ex: X): boolean;
}

export interface RequestFlowOptions {
  upstreams: Upstreams;
  metrics: ProxyMetrics;
  /** Current cookie keys; the first signs. Read per request so a key reload applies at once. */
  cookieKeys: () => readonly KeyObject[];
  /** The session store's pins (`--session-store`): Learn affinity and persisted ClientIP/Header pins. */
  pins?: PinStore | undefined;
}

/** The transport-independent orchestration of a request; see the module comment. */
export class RequestFlow {
  private readonly o: RequestFlowOptions;

  constructor(o: RequestFlowOptions) {
    this.o = o;
  }

  /**
   * Decides on an endpoint for a request whose head (and buffered body) is
   * in, and sends the first attempt; answers 503 when no endpoint can take it.
   * When the table keeps pins in the session store, the decision waits for
   * the store's answer (bounded by `--session-store-timeout`); the exchange
   * is dropped then if it was settled meanwhile ({@link Transport.settled}).
   */
  start<X extends FlowExchange>(ex: X, view: RequestView, t: Transport<X>): void {
    const served = this.o.upstreams.current;
    if (served === undefined) {
      t.answer(ex, undefined, undefined, new TetherError('TETHER_NO_TABLE', 'no routing table loaded yet'));
      return;
    }
    const table = served.table;
    // Checked inline: the common case (no pins in the store) costs no call and no promise.
    if (this.o.pins !== undefined && (table.affinityType === 'Learn' || table.pinTimeoutMs !== 0)) {
      const pin = this.lookupStoredPin(table, view);
      if (pin instanceof Promise) {
        void pin.then((ctx) => {
          ex.pin = ctx;
          if (!t.settled(ex)) this.decideAndForward(served, ex, view, t);
        });
        return;
      }
      ex.pin = pin;
    }
    this.decideAndForward(served, ex, view, t);
  }

  private decideAndForward<X extends FlowExchange>(
    served: ServedTable,
    ex: X,
    view: RequestView,
    t: Transport<X>,
  ): void {
    const table = served.table;
    const decision = this.decide(table, view, Date.now(), served, ex.pin);
    this.o.metrics.countDecision(table.pool, decision.outcome, decision.reason);
    if (decision.endpoint === undefined) {
      t.answer(
        ex,
        table,
        undefined,
        new TetherError('TETHER_NO_ENDPOINT', `no endpoint of pool ${table.pool} can take the request`),
      );
      return;
    }
    t.forward(served, ex, decision, served.at(decision.endpoint.index), false);
  }

  /**
   * The async step before the decision, for pins the session store keeps
   * (Learn; ClientIP/Header with `sessionStore.persistPins`): the request's
   * pin context, with what the store said of its key once looked up
   * (bounded by the store's timeout; never rejects).
   *
   * @returns the context at once when there is nothing to look up
   *   (undefined: the table keeps no pins in the store, or there is no
   *   store), else a promise of it.
   */
  lookupStoredPin(table: CompiledTable, view: RequestView): PinContext | undefined | Promise<PinContext> {
    const pins = this.o.pins;
    if (pins === undefined || (table.affinityType !== 'Learn' && table.pinTimeoutMs === 0)) return undefined;
    const k = this.storedPinKeyOf(table, view);
    const ctx = pinContextFor(table, 'key' in k ? k.key : undefined, 'problem' in k ? k.problem : undefined);
    if (ctx?.storeKey === undefined) return ctx;
    return pins.lookup(table.pool, ctx.storeKey, ctx.ttlMs).then((answer) => ({ ...ctx, answer }));
  }

  /** The affinity key a store-kept pin is filed under: Learn's cookie value, or the ClientIP/Header key. */
  private storedPinKeyOf(
    table: CompiledTable,
    view: RequestView,
  ): { key: string } | { problem: 'missing' | 'invalid' } {
    if (table.affinityType === 'Learn') {
      const c = findLearnedCookie(view.header('cookie'), table.learn.cookieName);
      return 'value' in c ? { key: c.value } : c;
    }
    if (table.affinityType === 'Header') return headerKey(view.header(table.headerName));
    const addr = resolveClientAddress(
      view.remoteAddress,
      view.header('x-forwarded-for'),
      table.trustedProxies,
    );
    if (addr === undefined) return { problem: 'invalid' };
    return { key: clientIpKey(addr, table.ipv4PrefixLength, table.ipv6PrefixLength) };
  }

  /**
   * The response hook of store-kept pins, when the response head of the
   * endpoint that answered arrives: learns the app's cookie, stores a new or
   * moved pin (fire-and-forget, bounded; see {@link planStoreWrites}).
   * Transports call it only when `pin` is defined.
   *
   * @param answeredBy - id of the endpoint whose response this is (after a retry or redispatch, the last one).
   * @param setCookie - the endpoint's `Set-Cookie` header(s).
   */
  storePins(
    pool: string,
    pin: PinContext,
    answeredBy: string,
    setCookie: string | readonly string[] | undefined,
  ): void {
    this.o.pins?.write(pool, planStoreWrites(pin, answeredBy, setCookie, Date.now()));
  }

  /**
   * The affinity decision for a request, by the table's affinity type.
   *
   * @param pin - what the session store said of the request's key ({@link lookupStoredPin}).
   */
  decide(
    table: CompiledTable,
    view: RequestView,
    nowMs: number,
    up: EndpointView,
    pin?: PinContext,
  ): Decision {
    if (pin?.affinityKey !== undefined && pin.answer !== undefined)
      return decideByStoredPin(table, pin.affinityKey, pin.answer, up, nowMs);
    switch (table.affinityType) {
      case 'Learn': {
        // No lookup (no cookie, or no store on this path): a new pin, or the stateless hash of the cookie.
        const c = findLearnedCookie(view.header('cookie'), table.learn.cookieName);
        return 'value' in c
          ? decideByKey(table, c.value, undefined, up, nowMs, randomKey)
          : decideByKey(table, undefined, c.problem, up, nowMs, randomKey);
      }
      case 'ClientIP': {
        const addr = resolveClientAddress(
          view.remoteAddress,
          view.header('x-forwarded-for'),
          table.trustedProxies,
        );
        if (addr === undefined) return decideByKey(table, undefined, 'invalid', up, nowMs, randomKey);
        return decideByKey(
          table,
          clientIpKey(addr, table.ipv4PrefixLength, table.ipv6PrefixLength),
          undefined,
          up,
          nowMs,
          randomKey,
        );
      }
      case 'Header': {
        const hk = headerKey(view.header(table.headerName));
        return 'key' in hk
          ? decideByKey(table, hk.key, undefined, up, nowMs, randomKey)
          : decideByKey(table, undefined, hk.problem, up, nowMs, randomKey);
      }
      default:
        return decideByCookie(
          table,
          {
            values: findCookieValues(view.header('cookie'), table.cookie.name),
            keys: this.o.cookieKeys(),
            nowMs,
            freshSessionId: randomKey,
          },
          up,
        );
    }
  }

  /** The Set-Cookie value a decision calls for, or undefined. A Set-Cookie learning hook belongs beside this. */
  setCookieHeader(table: CompiledTable, decision: Decision, hop: Hop, view: RequestView): string | undefined {
    if (decision.setCookie === undefined) return undefined;
    const value = encodeAffinityCookie(decision.setCookie, this.o.cookieKeys(), table.pool);
    return formatSetCookie(table.cookie, value, isHttps(hop, view.header('x-forwarded-proto')));
  }

  /** The hop a request came over; the peer is parsed only when the pool trusts proxies. */
  hopOf(table: CompiledTable, view: RequestView, tls: boolean): Hop {
    const peer = view.remoteAddress ?? '';
    let peerTrusted = false;
    if (table.trustedProxies.length > 0) {
      const ip = parseIp(peer);
      peerTrusted = ip !== undefined && table.trustedProxies.some((c) => cidrContains(c, ip));
    }
    return { peer, peerTrusted, tls, port: view.localPort };
  }

  /**
   * What to do after an attempt failed before any response byte reached the
   * client. Only a failure of the endpoint itself counts against its
   * passive health ({@link classifyFailure}); what follows:
   *
   * - connect failed (nothing sent): redispatch once (HAProxy `option
   *   redispatch`), even a POST;
   * - the connection broke before an answer, idempotent method, body in
   *   hand: retry once on a new connection, to the same endpoint while the
   *   table served now keeps the client there, else to the re-pin. A broken
   *   reused keep-alive connection is not held against the endpoint (RFC
   *   9112 §9.6 race); a new connection that breaks is, and then the
   *   request is redispatched once to the re-pin (at most three sends);
   * - a non-idempotent request that may have reached the endpoint is never
   *   sent again (nginx `proxy_next_upstream` without `non_idempotent`).
   *
   * Retries and redispatches use the table served *now*, with its own
   * runtimes: the failed endpoint is named by id, never by an index of the
   * table the request started with.
   */
  attemptFailed<X extends FlowExchange>(
    served: ServedTable,
    ex: X,
    decision: Decision,
    rt: EndpointRuntime,
    fresh: boolean,
    err: Error,
    t: Transport<X>,
  ): void {
    const table = served.table;
    const ep = rt.endpoint;
    const kind = classifyFailure(err);
    const replayable = t.replayable(ex);
    // Under Reject a kept pin is never moved (nginx-sticky `no_fallback`).
    const mayMove = !(table.rejectOnFailure && decision.outcome === 'hit');
    const now = this.o.upstreams.current ?? served;
    switch (kind) {
      case 'connect':
      case 'unsent': {
        if (kind === 'connect') this.o.upstreams.recordFailure(rt);
        if (!ex.redispatched && mayMove && replayable) {
          ex.redispatched = true;
          if (this.sendToRepin(now, ex, decision, ep.id, 'redispatches', false, t)) return;
        }
        // Nowhere to go: the refused connection is the truer answer than "no endpoint".
        t.answer(ex, table, ep.id, classifyUpstreamError(err));
        return;
      }
      case 'reset': {
        const idempotent = replayable && IDEMPOTENT.has(ex.method);
        if (fresh || !connectionWasUsed(err)) this.o.upstreams.recordFailure(rt);
        if (fresh && ex.retried && !ex.redispatched && idempotent && mayMove) {
          // The new connection broke too (an endpoint dying as the retry went
          // out: its listener still took the connection): the endpoint is
          // bad, so the client moves, once (HAProxy redispatches on its last retry).
          ex.redispatched = true;
          if (this.sendToRepin(now, ex, decision, ep.id, 'redispatches', false, t)) return;
        }
        if (!ex.retried && idempotent) {
          ex.retried = true;
          const same = now.byId(ep.id);
          if (same !== undefined && keepsPin(now.table, same.endpoint, now, Date.now()) === 'none') {
            this.o.metrics.retries.inc({ pool: now.table.pool });
            t.forward(now, ex, decision, same, true);
            return;
          }
          if (mayMove && this.sendToRepin(now, ex, decision, ep.id, 'retries', true, t)) return;
        }
        t.answer(ex, table, ep.id, classifyUpstreamError(err));
        return;
      }
      case 'timeout':
      case 'protocol':
        this.o.upstreams.recordFailure(rt);
        t.answer(ex, table, ep.id, classifyUpstreamError(err));
        return;
      case 'aborted':
        if (!t.clientGone(ex)) t.answer(ex, table, ep.id, classifyUpstreamError(err));
        return;
      default:
        // The request was refused as given, or something the endpoint did not do: never its fault.
        t.answer(ex, table, ep.id, classifyUpstreamError(err));
    }
  }

  /**
   * Sends an exchange whose endpoint failed to the client's re-pin in `now`
   * (the table served at this moment, the failed endpoint named by id), and
   * counts it as a redispatch or a retry.
   * @returns false when no other endpoint can take it (the caller answers).
   */
  private sendToRepin<X extends FlowExchange>(
    now: ServedTable,
    ex: X,
    decision: Decision,
    failedId: string,
    counter: 'redispatches' | 'retries',
    fresh: boolean,
    t: Transport<X>,
  ): boolean {
    const next = redispatch(now.table, decision, failedId, now, Date.now());
    if (next.endpoint === undefined) return false;
    this.o.metrics[counter].inc({ pool: now.table.pool });
    this.o.metrics.countDecision(now.table.pool, next.outcome, next.reason);
    t.forward(now, ex, next, now.at(next.endpoint.index), fresh);
    return true;
  }
}

// Random session ids come from a block refilled every 512 ids: one
// randomBytes call per id costs about as much as the HMAC that signs it.
let randomBlock = Buffer.alloc(0);
let randomAt = 0;

/** A fresh random session id (12 bytes, base64url). */
export function randomKey(): string {
  if (randomAt + SESSION_ID_BYTES > randomBlock.length) {
    randomBlock = randomBytes(SESSION_ID_BYTES * 512);
    randomAt = 0;
  }
  const id = randomBlock.toString('base64url', randomAt, randomAt + SESSION_ID_BYTES);
  randomAt += SESSION_ID_BYTES;
  return id;
}
