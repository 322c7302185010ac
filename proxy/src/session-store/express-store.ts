/**
 * The express-session store for apps behind Tether: connect-redis 8's
 * `RedisStore` (key prefix, JSON serialization, TTL from the session
 * cookie, the callback contract express-session expects) over the
 * Sentinel-aware ioredis client of `connection.ts`, with one addition:
 * in `Sync` mode each write is followed by Redis `WAIT` and fails when too
 * few replicas acknowledge it.
 *
 * connect-redis talks to whatever client it is given through six calls
 * (`get`, `set`, `expire`, `del`, `mget`, `scan`), and treats a client
 * without `scanIterator` as ioredis. So the `WAIT` goes into a thin client
 * in front of ioredis, not into a fork of connect-redis: its store logic
 * stays exactly as released.
 */
import { RedisStore } from 'connect-redis';
import type { ChainableCommander, Redis, RedisOptions } from 'ioredis';
import { createSessionStoreClient, type SessionStoreConnection } from './connection.ts';
import {
  type ConnectionSource,
  checkWaitReply,
  effectiveCommandTimeoutMs,
  resolveConnection,
  resolveWriteConcern,
  SessionStoreError,
  type WriteConcern,
} from './store-config.ts';

/** Settings of {@link createSessionStore}: a connection source, and optional overrides. */
export interface SessionStoreOptions extends ConnectionSource, Partial<WriteConcern> {
  /** Key prefix in the store; `sess:` (connect-redis' default). */
  readonly prefix?: string;
  /**
   * TTL of a session whose cookie has no expiry (no `maxAge`/`expires`), s;
   * 86,400 (connect-redis' default, one day). A cookie with an expiry sets
   * the TTL itself: `ceil((expires - now) / 1000)` s, and a session already
   * past it is deleted instead of written.
   */
  readonly ttlSeconds?: number;
  /** Do not refresh the TTL on `touch` (connect-redis `disableTouch`); false. */
  readonly disableTouch?: boolean;
  /** Connecting to a Sentinel or to the primary, ms; 2,000. */
  readonly connectTimeoutMs?: number;
  /**
   * One command from call to reply, queued time included, ms; 2,000, and in
   * `Sync` mode at least `waitTimeoutMs + 1000`. This bounds how long a
   * request waits while no primary is reachable (a failover takes Sentinel's
   * `down-after-milliseconds` plus an election): the call then fails with
   * ioredis' `Command timed out`, and express-session passes it on.
   */
  readonly commandTimeoutMs?: number;
  /**
   * Longest pause between two reconnect attempts, ms; 500. After a primary
   * dies, ioredis asks the Sentinels again on each attempt, so this bounds
   * how long after the promotion the app finds the new primary.
   */
  readonly reconnectMaxDelayMs?: number;
  /**
   * Called with the client's connection errors (refused, reset, a Sentinel
   * down). They are never emitted as `'error'` on the store, which would
   * crash an app without a listener; every failed call also reaches its own
   * callback. Ignored by default.
   */
  readonly onClientError?: (err: Error) => void;
  /** More ioredis options, applied last (e.g. `tls`, `failoverDetector: true`). */
  readonly redisOptions?: RedisOptions;
}

/** What connect-redis calls on its client (the ioredis flavour of its `normalizeClient`). */
interface ConnectRedisClient {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ex?: 'EX', ttlSeconds?: number): Promise<unknown>;
  expire(key: string, ttlSeconds: number): Promise<unknown>;
  del(keys: string[]): Promise<unknown>;
  mget(keys: string[]): Promise<(string | null)[]>;
  scan(...args: (string | number)[]): Promise<[string, string[]]>;
}

/** Write counters of one store, since it was created. */
export interface SessionStoreStats {
  /** Writes (set, touch, destroy) that succeeded, and in `Sync` mode were acknowledged by enough replicas. */
  readonly acknowledged: number;
  /** `Sync` writes that failed with `TETHER_SESSION_NOT_REPLICATED`. */
  readonly notReplicated: number;
  /** Writes that failed otherwise (no primary, timeout, `NOREPLICAS`, …). */
  readonly failed: number;
}

/**
 * The client connect-redis gets: reads go straight to ioredis; each write
 * in `Sync` mode is one pipeline `[write, WAIT n t]`. One pipeline is one
 * batch on one connection, and ioredis aborts the rest of a pipeline whose
 * replies stopped halfway when the connection closes: so a `WAIT` is never
 * answered on a new connection (where it would count acknowledgements of
 * nothing and pass), while a pipeline not answered at all is sent again,
 * whole, to the new primary.
 */
function createWriteConcernClient(
  redis: Redis,
  wc: WriteConcern,
  count: (outcome: keyof SessionStoreStats) => void,
): ConnectRedisClient {
  // `op` names the call, never the key: a session id is a bearer token, and error messages get logged.
  const write = async (op: string, add: (p: ChainableCommander) => void): Promise<unknown> => {
    try {
      const p = redis.pipeline();
      add(p);
      if (wc.writeMode === 'Sync') p.call('WAIT', wc.waitReplicas, wc.waitTimeoutMs);
      const replies = await p.exec();
      if (replies === null) throw new Error(`${op}: the pipeline was discarded`);
      for (const [err] of replies) if (err) throw err;
      if (wc.writeMode === 'Sync') checkWaitReply(op, replies[1]?.[1], wc);
      count('acknowledged');
      return replies[0]?.[1];
    } catch (err) {
      count(
        err instanceof SessionStoreError && err.code === 'TETHER_SESSION_NOT_REPLICATED'
          ? 'notReplicated'
          : 'failed',
      );
      throw err;
    }
  };
  return {
    get: (key) => redis.get(key),
    set: (key, value, ex, ttl) =>
      write('set', (p) => {
        if (ex === 'EX' && ttl !== undefined) p.set(key, value, 'EX', ttl);
        else p.set(key, value);
      }),
    expire: (key, ttl) => write('touch', (p) => p.expire(key, ttl)),
    del: (keys) => write('destroy', (p) => p.del(...keys)),
    mget: (keys) => redis.mget(keys),
    scan: (...args) => redis.call('SCAN', ...args) as Promise<[string, string[]]>,
  };
}

/**
 * An express-session `Store` (connect-redis 8's `RedisStore`) on the pool's
 * replicated store. `get(sid, cb)`, `set(sid, session, cb)`,
 * `touch(sid, session, cb)`, `destroy(sid, cb)` (and `clear`, `length`,
 * `ids`, `all`) follow express-session's store contract: errors go to the
 * callback (or reject the returned promise when no callback is given),
 * never to an `'error'` event.
 *
 * Sessions live under `prefix + sid` as JSON with a TTL (see
 * {@link SessionStoreOptions.ttlSeconds}).
 */
export class TetherSessionStore extends RedisStore {
  /** The ioredis client (Sentinel-aware); for health checks and inspection. */
  readonly redis: Redis;
  /** The connection it was made from. */
  readonly connection: SessionStoreConnection;
  /** How writes are acknowledged. */
  readonly writeConcern: WriteConcern;
  private readonly counters: { acknowledged: number; notReplicated: number; failed: number };

  /** Use {@link createSessionStore}; this wires an existing client. */
  constructor(
    redis: Redis,
    connection: SessionStoreConnection,
    writeConcern: WriteConcern,
    o: Pick<SessionStoreOptions, 'prefix' | 'ttlSeconds' | 'disableTouch'> = {},
  ) {
    const counters = { acknowledged: 0, notReplicated: 0, failed: 0 };
    super({
      client: createWriteConcernClient(redis, writeConcern, (k) => {
        counters[k]++;
      }),
      prefix: o.prefix ?? 'sess:',
      ttl: o.ttlSeconds ?? 86_400,
      disableTouch: o.disableTouch ?? false,
    });
    this.redis = redis;
    this.connection = connection;
    this.writeConcern = writeConcern;
    this.counters = counters;
  }

  /** Write outcomes so far. */
  stats(): SessionStoreStats {
    return { ...this.counters };
  }

  /**
   * Closes the connection after the replies of commands already sent
   * (`QUIT`), and the failover detector's Sentinel subscriptions with it;
   * later calls fail with `Connection is closed.`.
   */
  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      // Not connected: nothing to wait for.
    }
    // ioredis' QUIT leaves the failover detector's Sentinel connections open
    // (and reconnecting once the Sentinels go): only disconnect() ends them.
    this.redis.disconnect();
  }
}

/**
 * Creates the store from the Secret the operator provides for the pool
 * (its name is in the pool's `status`), read from a mounted directory, from
 * `envFrom: secretRef` environment variables, or given in full:
 *
 * ```ts
 * import session from 'express-session';
 * import { createSessionStore } from 'tether/session-store';
 * const store = createSessionStore({ secretDir: '/etc/tether/session-store' });
 * app.use(session({ store, secret: …, resave: false, saveUninitialized: false }));
 * ```
 *
 * The client connects at once and keeps reconnecting in the background
 * (through the Sentinels, so it follows a failover); calls made meanwhile
 * wait in ioredis' offline queue for at most `commandTimeoutMs`.
 *
 * @throws {SessionStoreError} `TETHER_SESSION_STORE_CONFIG` for a missing or
 *   malformed connection or option (nothing is connected then).
 */
export function createSessionStore(o: SessionStoreOptions): TetherSessionStore {
  const connection = resolveConnection(o);
  const writeConcern = resolveWriteConcern(connection, o);
  const maxDelay = o.reconnectMaxDelayMs ?? 500;
  const redis = createSessionStoreClient(
    connection,
    {
      connectTimeoutMs: o.connectTimeoutMs ?? 2_000,
      commandTimeoutMs: effectiveCommandTimeoutMs(writeConcern, o.commandTimeoutMs ?? 2_000),
    },
    {
      retryStrategy: (attempt: number) => Math.min(attempt * 50, maxDelay),
      // A primary demoted while we stay connected answers writes with READONLY:
      // reconnect (asking the Sentinels again) and resend (ioredis' failover recipe).
      // ioredis' `failoverDetector` (subscribing to +switch-master) would notice
      // that sooner, but its Sentinel connections have no 'error' listener: every
      // app would log "[ioredis] Unhandled error event" while one Sentinel is
      // down. Left to `redisOptions` for those who want it.
      reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
      ...o.redisOptions,
    },
  );
  redis.on('error', o.onClientError ?? (() => {}));
  return new TetherSessionStore(redis, connection, writeConcern, o);
}
