/**
 * The proxy's live view of its endpoints: one undici keep-alive `Pool` per
 * endpoint origin, health (passive and active) kept by endpoint id across
 * table swaps, and requests in flight for bounded load.
 */
import { Pool } from 'undici';
import { parseDuration } from './api/duration.ts';
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

/** One endpoint of the current table with its live state. */
export interface EndpointRuntime {
  readonly endpoint: CompiledEndpoint;
  readonly pool: Pool;
  readonly health: EndpointHealth;
  inflight: number;
}

export class Upstreams implements EndpointView {
  private runtimes: EndpointRuntime[] = [];
  private table: CompiledTable | undefined;
  private readonly pools = new Map<string, Pool>();
  private readonly health = new Map<string, EndpointHealth>();
  private checkTimers: NodeJS.Timeout[] = [];
  private readonly options: UpstreamOptions;
  private readonly metrics: ProxyMetrics;

  constructor(options: UpstreamOptions, metrics: ProxyMetrics) {
    this.options = options;
    this.metrics = metrics;
  }

  /** The runtime of an endpoint of the current table, by index. */
  at(index: number): EndpointRuntime {
    return this.runtimes[index] as EndpointRuntime;
  }

  isHealthy(index: number, nowMs: number): boolean {
    return (this.runtimes[index] as EndpointRuntime).health.isHealthy(nowMs);
  }

  inflight(index: number): number {
    return (this.runtimes[index] as EndpointRuntime).inflight;
  }

  /**
   * Moves to a new table: reuses pools and health of endpoints that stay,
   * closes the pools of endpoints that left (after their in-flight requests)
   * and drops their metric series, and restarts active checks.
   */
  adopt(table: CompiledTable): void {
    const before = this.table;
    const keep = new Set(table.endpoints.map((e) => e.origin));
    const keepIds = new Set(table.endpoints.map((e) => e.id));
    const previous = new Map(this.runtimes.map((r) => [r.endpoint.id, r]));
    this.runtimes = table.endpoints.map((e) => {
      let pool = this.pools.get(e.origin);
      if (pool === undefined) {
        pool = new Pool(e.origin, {
          connections: this.options.connectionsPerEndpoint,
          pipelining: 1,
          keepAliveTimeout: this.options.keepAliveTimeoutMs,
          keepAliveMaxTimeout: 600_000,
          connectTimeout: this.options.connectTimeoutMs,
          headersTimeout: this.options.readTimeoutMs,
          bodyTimeout: this.options.readTimeoutMs,
        });
        this.pools.set(e.origin, pool);
      }
      let health = this.health.get(e.id);
      if (health === undefined) {
        health = new EndpointHealth();
        this.health.set(e.id, health);
      }
      const old = previous.get(e.id);
      return { endpoint: e, pool, health, inflight: old?.inflight ?? 0 };
    });
    for (const [origin, pool] of this.pools) {
      if (!keep.has(origin)) {
        this.pools.delete(origin);
        // close() waits for requests in flight: a removed endpoint finishes what it has.
        pool.close().catch(() => {});
      }
    }
    for (const id of [...this.health.keys()]) if (!keepIds.has(id)) this.health.delete(id);
    if (before !== undefined) {
      for (const e of before.endpoints)
        if (!keepIds.has(e.id) || before.pool !== table.pool) this.metrics.forgetEndpoint(before.pool, e.id);
      if (before.pool !== table.pool) this.metrics.forgetPool(before.pool);
    }
    this.table = table;
    this.publishHealth();
    this.restartActiveChecks(table);
  }

  /** Records a failed attempt on an endpoint (passive health). */
  recordFailure(rt: EndpointRuntime): void {
    const t = this.table;
    if (t === undefined) return;
    if (rt.health.recordFailure(Date.now(), t.maxFails, t.failTimeoutMs)) this.publishHealth();
  }

  private publishHealth(): void {
    const t = this.table;
    if (t === undefined) return;
    const now = Date.now();
    for (const rt of this.runtimes) {
      const labels = { pool: t.pool, endpoint: rt.endpoint.id };
      this.metrics.endpointHealthy.set(labels, rt.health.isHealthy(now) ? 1 : 0);
      this.metrics.endpointDraining.set(labels, rt.endpoint.draining ? 1 : 0);
    }
  }

  private restartActiveChecks(table: CompiledTable): void {
    for (const t of this.checkTimers) clearInterval(t);
    this.checkTimers = [];
    const spec = table.source.healthCheck.active;
    if (spec === undefined) return;
    const intervalMs = parseDuration(spec.interval);
    const timeoutMs = parseDuration(spec.timeout);
    for (const rt of this.runtimes) {
      const check = (): void => {
        void this.checkOnce(table, rt, spec.path, timeoutMs).then((ok) => {
          if (this.table !== table) return;
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
    table: CompiledTable,
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
          host: `${rt.endpoint.address}:${rt.endpoint.port}`,
        },
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 400 && this.table === table;
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
