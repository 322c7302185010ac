/**
 * The proxy's side of the session store: pin lookups on the request path
 * and pin writes after responses, over one Sentinel-aware ioredis client
 * (`connection.ts`). Whatever the store does, a request never waits more
 * than `timeoutMs` for it:
 *
 * - no primary known right now (store down, failover under way): the
 *   client refuses at once (`enableOfflineQueue: false`), reason `not_connected`;
 * - every call races a timer of `timeoutMs`, reason `timeout`;
 * - after a few consecutive failures a circuit breaker skips the store for
 *   a while (`breaker.ts`), reason `circuit_open`, so a store that hangs
 *   costs only a few requests the timeout;
 * - writes are fire-and-forget, at most `maxPendingWrites` in flight.
 *
 * Each fallback is counted (`tether_proxy_session_store_fallbacks_total`)
 * and said in a log line at most once per `logIntervalMs`, with the count
 * of those left out.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../json-log.ts';
import type { ProxyMetrics, StoreWriteResult } from '../metrics.ts';
import type { FallbackReason, StoreAnswer, StoreWrite } from '../routing/learn.ts';
import { CircuitBreaker } from './breaker.ts';
import { createSessionStoreClient, type SessionStoreConnection } from './connection.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** Default bound on one store call on the request path, ms (`--session-store-timeout`). */
export const DEFAULT_STORE_TIMEOUT_MS = 50;

/** Settings of a {@link PinStore}. */
export interface PinStoreOptions {
  /** Undefined: not published yet (no Sentinel address); calls fall back until {@link PinStore.reconnect}. */
  readonly connection: SessionStoreConnection | undefined;
  /** Bound on every call, ms. */
  readonly timeoutMs: number;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  /** Writes in flight at most; more are dropped and counted `overload`. 1,000. */
  readonly maxPendingWrites?: number;
  /** Least time between two log lines about store trouble, ms. 10,000. */
  readonly logIntervalMs?: number;
  /** Connecting to a Sentinel or the primary, ms (never on the request path). 1,000. */
  readonly connectTimeoutMs?: number;
}

type Bounded<T> = { ok: true; value: T } | { ok: false; reason: FallbackReason; error: string };

/** Pins in the session store, for one proxy process. */
export class PinStore {
  private readonly o: PinStoreOptions;
  private client: Redis | undefined;
  private readonly breaker = new CircuitBreaker({ failureThreshold: 3, openMs: 500, maxOpenMs: 5_000 });
  private readonly fallbackLog: RateLimitedLog;
  private readonly writeLog: RateLimitedLog;
  private readonly errorLog: RateLimitedLog;
  private readonly breakerLog: RateLimitedLog;
  private pendingWrites = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(o: PinStoreOptions) {
    this.o = o;
    const interval = o.logIntervalMs ?? 10_000;
    this.fallbackLog = new RateLimitedLog(interval);
    this.writeLog = new RateLimitedLog(interval);
    this.errorLog = new RateLimitedLog(interval);
    this.breakerLog = new RateLimitedLog(interval);
    o.metrics.enableSessionStore();
    this.client = o.connection === undefined ? undefined : this.connect(o.connection);
    this.refreshUp();
  }

  /** Whether the client has a primary and the breaker lets calls through (the `up` gauge). */
  get up(): boolean {
    return this.client?.status === 'ready' && this.breaker.state === 'closed';
  }

  private connect(conn: SessionStoreConnection): Redis {
    const client = createSessionStoreClient(
      conn,
      // The request path's bound is the race in `call`; ioredis's own command timeout only
      // has to end what that race gave up on, and must not fail the connection's ready check
      // (an INFO) on a loaded machine.
      {
        connectTimeoutMs: this.o.connectTimeoutMs ?? 1_000,
        commandTimeoutMs: Math.max(1_000, this.o.timeoutMs),
      },
      {
        // Fail at once while no primary is known, rather than queue behind a reconnect.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        // Asking a Sentinel for the primary is off the request path: give it more time than a lookup.
        sentinelCommandTimeout: Math.max(1_000, this.o.timeoutMs),
        // Reconnect when Sentinels announce a new primary, even if the old one still holds the connection.
        failoverDetector: true,
        // Reconnect quickly, and keep trying: a store that comes back is used again.
        retryStrategy: (times: number) => Math.min(50 * times, 1_000),
        sentinelRetryStrategy: (times: number) => Math.min(100 * times, 1_000),
      },
    );
    client.on('error', (err: Error) => {
      const t = this.errorLog.take(Date.now());
      if (t !== undefined)
        this.o.log('warn', 'session store connection error', {
          error: err.message,
          suppressed: t.suppressed,
        });
    });
    for (const ev of ['ready', 'close', 'end', 'reconnecting'])
      client.on(ev, () => {
        if (ev === 'ready' && client === this.client) {
          // A new connection (a reconnect, a failover) is a fresh start: what made the breaker open was the old one.
          this.breaker.succeed();
          this.o.log('info', 'session store connected');
        }
        this.refreshUp();
      });
    return client;
  }

  /** Replaces the connection (the Secret changed): new client first, then the old one goes. */
  reconnect(conn: SessionStoreConnection): void {
    if (this.closed) return;
    const old = this.client;
    this.client = this.connect(conn);
    old?.disconnect();
    this.refreshUp();
  }

  private refreshUp(): void {
    this.o.metrics.storeUp.set(this.up ? 1 : 0);
  }

  /**
   * The endpoint id kept under `key`, refreshing its TTL (`GETEX key PX
   * ttlMs`: the sliding timeout). Never rejects; resolves within about
   * `timeoutMs`. A fallback is counted for `pool` and logged (rate-limited).
   */
  async lookup(pool: string, key: string, ttlMs: number): Promise<StoreAnswer> {
    const answer = await this.call('lookup', (c) => c.getex(key, 'PX', ttlMs));
    if (answer.ok)
      return answer.value === null ? { kind: 'absent' } : { kind: 'found', endpointId: answer.value };
    this.o.metrics.storeFallbacks.inc({ pool, reason: answer.reason });
    const t = this.fallbackLog.take(Date.now());
    if (t !== undefined)
      this.o.log('warn', 'session store unavailable: pins decided by consistent hashing', {
        pool,
        reason: answer.reason,
        error: answer.error,
        suppressed: t.suppressed,
      });
    return { kind: 'unavailable', reason: answer.reason };
  }

  /** Carries out writes without waiting for them (they never delay a response); each is counted. */
  write(pool: string, writes: readonly StoreWrite[]): void {
    for (const w of writes) {
      if (this.pendingWrites >= (this.o.maxPendingWrites ?? 1_000)) {
        this.countWrite(pool, 'overload', 'too many writes in flight');
        continue;
      }
      this.pendingWrites++;
      const op =
        w.op === 'set'
          ? this.call('write', (c) => c.set(w.key, w.endpointId, 'PX', w.ttlMs))
          : this.call('delete', (c) => c.del(w.key));
      void op.then((r) => {
        this.pendingWrites--;
        this.countWrite(pool, r.ok ? 'ok' : r.reason, r.ok ? '' : r.error);
      });
    }
  }

  private countWrite(pool: string, result: StoreWriteResult, error: string): void {
    this.o.metrics.storeWrites.inc({ pool, result });
    if (result === 'ok') return;
    const t = this.writeLog.take(Date.now());
    if (t !== undefined)
      this.o.log(
        'warn',
        'session store write failed: the pin stays unknown to other proxies until learned again',
        {
          pool,
          result,
          error,
          suppressed: t.suppressed,
        },
      );
  }

  /** One store call, bounded in time, through the breaker; never rejects. */
  private async call<T>(
    operation: 'lookup' | 'write' | 'delete' | 'probe',
    fn: (c: Redis) => Promise<T>,
  ): Promise<Bounded<T>> {
    const client = this.client;
    if (this.closed || client === undefined || client.status !== 'ready')
      return {
        ok: false,
        reason: 'not_connected',
        error:
          client === undefined
            ? 'no Sentinel address published yet'
            : `store connection ${this.closed ? 'closed' : client.status}`,
      };
    const now = Date.now();
    if (!this.breaker.allow(now)) {
      this.refreshUp();
      return { ok: false, reason: 'circuit_open', error: 'recent store calls failed' };
    }
    const started = performance.now();
    const r = await bounded(fn(client), this.o.timeoutMs);
    this.o.metrics.storeDuration.observe({ operation }, (performance.now() - started) / 1000);
    if (r.ok) this.breaker.succeed();
    // A closed connection is the reconnect's business, not a sign of a slow store.
    else if (r.reason !== 'not_connected' && this.breaker.fail(Date.now())) {
      this.scheduleProbe();
      const t = this.breakerLog.take(Date.now());
      if (t !== undefined)
        this.o.log('warn', 'session store circuit breaker open: skipping the store for a while', {
          error: r.error,
          suppressed: t.suppressed,
        });
    }
    this.refreshUp();
    return r;
  }

  /**
   * Probes the store with a PING when the open breaker allows it, so the
   * breaker (and the `up` gauge) recovers without waiting for a request:
   * a quiet proxy must not report a store down long after it came back.
   */
  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    const wait = Math.max(0, this.breaker.probeAtMs - Date.now());
    this.probeTimer = setTimeout(() => {
      if (this.closed || this.breaker.state === 'closed') return;
      void this.call('probe', (c) => c.ping());
    }, wait);
    this.probeTimer.unref();
  }

  /** Closes the connection; later calls fall back at once. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.probeTimer);
    this.client?.disconnect();
    this.o.metrics.storeUp.set(0);
  }
}

/** `p`, or a timeout after `ms`; a late rejection of `p` is swallowed. */
async function bounded<T>(p: Promise<T>, ms: number): Promise<Bounded<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Bounded<T>>((resolve) => {
    timer = setTimeout(
      () => resolve({ ok: false, reason: 'timeout', error: `no answer within ${ms} ms` }),
      ms,
    );
  });
  const settled = p.then(
    (value): Bounded<T> => ({ ok: true, value }),
    (err: Error): Bounded<T> => ({
      ok: false,
      reason: /timed out/i.test(err.message)
        ? 'timeout'
        : /closed|writeable|not connected|ECONNREFUSED|ECONNRESET/i.test(err.message)
          ? 'not_connected'
          : 'error',
      error: err.message,
    }),
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
