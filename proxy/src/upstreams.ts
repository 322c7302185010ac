/**
 * The proxy's live view of its endpoints: one undici keep-alive `Pool` per
 * endpoint origin, health (passive and active) and load kept by endpoint id
 * across table swaps.
 *
 * Each routing table gets its own {@link ServedTable}: the runtimes of *its*
 * endpoints, by *its* indexes. A request holds the ServedTable it started
 * with, so an index can never reach another table's endpoints; state that
 * must outlive a swap (health, requests in flight) sits in an
 * {@link EndpointState} shared by id, so every table's runtime of one
 * endpoint sees the same counts.
 *
 * Applying a table is two steps, so a failure leaves nothing half done:
 * {@link Upstreams.prepare} builds everything that can fail (pools for new
 * origins) without touching the served state; {@link Upstreams.commit}
 * then swaps it in and cannot fail.
 */
import type { Socket } from 'node:net';
import { buildConnector, Client, Pool } from 'undici';
import { parseDuration } from './api/duration.ts';
import { SOCKET_BYTES_READ } from './errors.ts';
import type { ProxyMetrics } from './metrics.ts';
import type { CompiledEndpoint, CompiledTable } from './routing/compiled-table.ts';
import { EndpointHealth } from './routing/endpoint-health.ts';
import type { EndpointView } from './routing/pick-endpoint.ts';

/** Settings of the connections to endpoints. */
export interface UpstreamOptions {
  /** TCP connect timeout, ms (HAProxy `timeout connect`). */
  connectTimeoutMs: number;
  /** Time to wait for response headers, and between body chunks, ms (nginx `proxy_read_timeout`). */
  readTimeoutMs: number;
  /** Most connections per endpoint. */
  connectionsPerEndpoint: number;
  /** Idle keep-alive time, ms; below Node's 5 s server default so the proxy closes first. */
  keepAliveTimeoutMs: number;
}

/** What one endpoint id carries across tables: health and load. */
export class EndpointState {
  readonly health = new EndpointHealth();
  /** Requests of this proxy to the endpoint from dispatch to their end, retries included. */
  inflight = 0;
  /** Of those, requests handed to the endpoint's pool (they hold or wait for one of its connections). */
  pooled = 0;
  /** Of those, requests still waiting for a connection of the pool. */
  queued = 0;
}

/** One endpoint of one table with its live state. */
export class EndpointRuntime {
  readonly endpoint: CompiledEndpoint;
  /** The table this runtime belongs to (its passive-health settings apply). */
  readonly table: CompiledTable;
  readonly pool: Pool;
  readonly state: EndpointState;

  constructor(endpoint: CompiledEndpoint, table: CompiledTable, pool: Pool, state: EndpointState) {
    this.endpoint = endpoint;
    this.table = table;
    this.pool = pool;
    this.state = state;
  }

  get health(): EndpointHealth {
    return this.state.health;
  }

  /** Requests in flight to the endpoint (shared by every table's runtime of it). */
  get inflight(): number {
    return this.state.inflight;
  }

  set inflight(n: number) {
    this.state.inflight = n;
  }
}

/** A table as served: its endpoints' runtimes by its own indexes. */
export class ServedTable implements EndpointView {
  readonly table: CompiledTable;
  readonly runtimes: readonly EndpointRuntime[];

  constructor(table: CompiledTable, runtimes: readonly EndpointRuntime[]) {
    this.table = table;
    this.runtimes = runtimes;
  }

  /** The runtime of `table.endpoints[index]`. */
  at(index: number): EndpointRuntime {
    return this.runtimes[index] as EndpointRuntime;
  }

  /** The runtime of the endpoint with this id, if the table has it. */
  byId(id: string): EndpointRuntime | undefined {
    for (const rt of this.runtimes) if (rt.endpoint.id === id) return rt;
    return undefined;
  }

  isHealthy(index: number, nowMs: number): boolean {
    return (this.runtimes[index] as EndpointRuntime).state.health.isHealthy(nowMs);
  }

  inflight(index: number): number {
    return (this.runtimes[index] as EndpointRuntime).state.inflight;
  }
}

/** A table prepared by {@link Upstreams.prepare}, not yet served. */
export interface PreparedTable {
  readonly served: ServedTable;
  /** Pools made for origins the served table lacks; closed if the table is dropped. */
  readonly created: ReadonlyMap<string, Pool>;
  /** States made for ids the served table lacks. */
  readonly states: ReadonlyMap<string, EndpointState>;
}

export class Upstreams {
  private served: ServedTable | undefined;
  private readonly pools = new Map<string, Pool>();
  private readonly states = new Map<string, EndpointState>();
  private checkTimers: NodeJS.Timeout[] = [];
  private readonly options: UpstreamOptions;
  private readonly metrics: ProxyMetrics;
  private readonly connect: buildConnector.connector;

  constructor(options: UpstreamOptions, metrics: ProxyMetrics) {
    this.options = options;
    this.metrics = metrics;
    const base = buildConnector({ timeout: options.connectTimeoutMs });
    // Tags each socket error with the bytes the socket had read, so a reset
    // on a reused keep-alive connection can be told from one on a fresh
    // connection (undici's own SocketError carries this; a raw ECONNRESET does not).
    this.connect = (opts, callback) =>
      base(opts, (err, socket) => {
        // On a failed connect undici passes no socket (undefined, not null).
        if (err === null && socket) {
          const s = socket as Socket;
          s.prependListener('error', (e: unknown) => {
            if (e !== null && typeof e === 'object' && Object.isExtensible(e))
              (e as Record<symbol, number>)[SOCKET_BYTES_READ] = s.bytesRead;
          });
        }
        (callback as (e: Error | null, s: typeof socket) => void)(err, socket);
      });
  }

  /** The table served now, with its runtimes; undefined before the first. */
  get current(): ServedTable | undefined {
    return this.served;
  }

  /**
   * Builds what serving `table` needs, without changing what is served.
   *
   * @throws {Error} when an endpoint's origin cannot become a pool (undici's
   *   own error); pools made so far are closed first.
   */
  prepare(table: CompiledTable): PreparedTable {
    const created = new Map<string, Pool>();
    const states = new Map<string, EndpointState>();
    try {
      const runtimes = table.endpoints.map((e) => {
        let pool = this.pools.get(e.origin) ?? created.get(e.origin);
        if (pool === undefined) {
          pool = this.newPool(e.origin);
          created.set(e.origin, pool);
        }
        let state = this.states.get(e.id) ?? states.get(e.id);
        if (state === undefined) {
          state = new EndpointState();
          states.set(e.id, state);
        }
        return new EndpointRuntime(e, table, pool, state);
      });
      return { served: new ServedTable(table, runtimes), created, states };
    } catch (err) {
      for (const p of created.values()) p.destroy().catch(() => {});
      throw err;
    }
  }

  /**
   * Serves a prepared table: keeps pools and state of endpoints that stay,
   * closes the pools of endpoints that left (after their in-flight
   * requests), drops their metric series, and restarts active checks.
   */
  commit(prepared: PreparedTable): void {
    const before = this.served?.table;
    const table = prepared.served.table;
    for (const [origin, pool] of prepared.created) this.pools.set(origin, pool);
    for (const [id, state] of prepared.states) this.states.set(id, state);
    const keep = new Set(table.endpoints.map((e) => e.origin));
    const keepIds = new Set(table.endpoints.map((e) => e.id));
    for (const [origin, pool] of this.pools) {
      if (!keep.has(origin)) {
        this.pools.delete(origin);
        // close() waits for requests in flight: a removed endpoint finishes what it has.
        pool.close().catch(() => {});
      }
    }
    for (const id of [...this.states.keys()]) if (!keepIds.has(id)) this.states.delete(id);
    if (before !== undefined) {
      for (const e of before.endpoints)
        if (!keepIds.has(e.id) || before.pool !== table.pool) this.metrics.forgetEndpoint(before.pool, e.id);
      if (before.pool !== table.pool) this.metrics.forgetPool(before.pool);
    }
    this.served = prepared.served;
    this.publishHealth();
    this.restartActiveChecks(prepared.served);
  }

  /** Prepares and commits in one step (tests, and callers with nothing to roll back). */
  adopt(table: CompiledTable): void {
    this.commit(this.prepare(table));
  }

  /** Records a failed attempt on an endpoint (passive health), by the settings of the runtime's table. */
  recordFailure(rt: EndpointRuntime): void {
    const t = rt.table;
    if (rt.state.health.recordFailure(Date.now(), t.maxFails, t.failTimeoutMs)) this.publishHealth();
  }

  /**
   * A one-request client on a new connection to `rt`'s endpoint, for the
   * retry of a request whose keep-alive connection broke: the pool's other
   * idle connections may be just as stale. Close it when the request ends.
   */
  freshClient(rt: EndpointRuntime): Client {
    return new Client(rt.endpoint.origin, {
      pipelining: 1,
      connect: this.connect,
      headersTimeout: this.options.readTimeoutMs,
      bodyTimeout: this.options.readTimeoutMs,
    });
  }

  /** The connection settings, for the native engine's own pools. */
  get settings(): Readonly<UpstreamOptions> {
    return this.options;
  }

  /** Most connections per endpoint (the pool's size). */
  get connectionsPerEndpoint(): number {
    return this.options.connectionsPerEndpoint;
  }

  private newPool(origin: string): Pool {
    return new Pool(origin, {
      connections: this.options.connectionsPerEndpoint,
      pipelining: 1,
      keepAliveTimeout: this.options.keepAliveTimeoutMs,
      keepAliveMaxTimeout: 600_000,
      connect: this.connect,
      headersTimeout: this.options.readTimeoutMs,
      bodyTimeout: this.options.readTimeoutMs,
    });
  }

  private publishHealth(): void {
    const served = this.served;
    if (served === undefined) return;
    const t = served.table;
    const now = Date.now();
    for (const rt of served.runtimes) {
      const labels = { pool: t.pool, endpoint: rt.endpoint.id };
      this.metrics.endpointHealthy.set(labels, rt.health.isHealthy(now) ? 1 : 0);
      this.metrics.endpointDraining.set(labels, rt.endpoint.draining ? 1 : 0);
    }
  }

  private restartActiveChecks(served: ServedTable): void {
    for (const t of this.checkTimers) clearInterval(t);
    this.checkTimers = [];
    const table = served.table;
    const spec = table.source.healthCheck.active;
    if (spec === undefined) return;
    const intervalMs = parseDuration(spec.interval);
    const timeoutMs = parseDuration(spec.timeout);
    for (const rt of served.runtimes) {
      const check = (): void => {
        void this.checkOnce(served, rt, spec.path, timeoutMs).then((ok) => {
          if (this.served !== served) return;
          this.metrics.healthChecks.inc({
            pool: table.pool,
            endpoint: rt.endpoint.id,
            result: ok ? 'success' : 'failure',
          });
          if (rt.health.recordCheck(ok, spec.healthyThreshold, spec.unhealthyThreshold)) this.publishHealth();
        });
      };
      const timer = setInterval(check, intervalMs);
      timer.unref();
      this.checkTimers.push(timer);
      check();
    }
    // Passive recoveries happen by time alone; refresh the gauge on the check cadence too.
    const refresh = setInterval(() => this.publishHealth(), Math.min(intervalMs, 5_000));
    refresh.unref();
    this.checkTimers.push(refresh);
  }

  private async checkOnce(
    served: ServedTable,
    rt: EndpointRuntime,
    path: string,
    timeoutMs: number,
  ): Promise<boolean> {
    try {
      const res = await rt.pool.request({
        path,
        method: 'GET',
        headers: {
          'user-agent': 'tether-proxy-health-check',
          // IPv6 bracketed (RFC 9110 §7.2), as the origin has it.
          host: rt.endpoint.origin.slice('http://'.length),
        },
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 400 && this.served === served;
    } catch {
      return false;
    }
  }

  /** Stops checks and closes every pool, waiting for requests in flight. */
  async close(): Promise<void> {
    for (const t of this.checkTimers) clearInterval(t);
    this.checkTimers = [];
    await Promise.allSettled([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}
