/**
 * Prometheus metrics of the proxy (prom-client). Names follow the
 * Prometheus naming guide: `tether_proxy_` prefix, base units (seconds),
 * `_total` counters. No label ever holds a client address or a cookie value;
 * an endpoint's series are removed when it leaves the routing table.
 *
 * With `--workers N` every worker has its own registry and the primary's
 * `/metrics` aggregates them (prom-client's `AggregatorRegistry.aggregate`):
 * counters and histograms are summed, each gauge says how it is combined
 * (its `aggregator`), and the routing-table series come from the primary
 * alone (it decides swaps; workers do not set them).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { FALLBACK_REASONS } from './routing/learn.ts';
import {
  AFFINITY_OUTCOMES,
  type AffinityOutcome,
  PIN_REASONS,
  type PinReason,
} from './routing/pick-endpoint.ts';

/** Results of a session-store write: done, or why not (a fallback reason, or `overload`: too many writes in flight). */
export const STORE_WRITE_RESULTS = ['ok', ...FALLBACK_REASONS, 'overload'] as const;
export type StoreWriteResult = (typeof STORE_WRITE_RESULTS)[number];

/** Session-store call buckets, s: a healthy store answers in well under a millisecond on the same node. */
export const STORE_LATENCY_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

/** Status classes a request is counted under; `error` is a request the proxy answered itself. */
export const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type CodeClass = (typeof CODE_CLASSES)[number];

/** Upstream latency buckets, s: sub-millisecond at the low end for loopback and same-node pods. */
export const LATENCY_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'tether_proxy_requests_total',
    help: 'Requests answered, by pool, endpoint and status class (endpoint "" when the proxy answered itself).',
    labelNames: ['pool', 'endpoint', 'code_class'] as const,
    registers: [this.registry],
  });
  readonly upstreamLatency = new Histogram({
    name: 'tether_proxy_upstream_duration_seconds',
    help: 'Time from dispatching a request to an endpoint to the end of its response, s.',
    labelNames: ['pool', 'endpoint'] as const,
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });
  readonly affinity = new Counter({
    name: 'tether_proxy_affinity_decisions_total',
    help: 'Affinity decisions: hit (pin kept), new (no key), repin, by reason.',
    labelNames: ['pool', 'outcome', 'reason'] as const,
    registers: [this.registry],
  });
  readonly redispatches = new Counter({
    name: 'tether_proxy_redispatches_total',
    help: 'Requests retried once on a re-pinned endpoint after a connection failure.',
    labelNames: ['pool'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'tether_proxy_retries_total',
    help: 'Idempotent requests sent again on a new connection after theirs broke before any response byte.',
    labelNames: ['pool'] as const,
    registers: [this.registry],
  });
  readonly openConnections = new Gauge({
    name: 'tether_proxy_open_connections',
    help: 'Client connections open to the proxy listener.',
    aggregator: 'sum',
    registers: [this.registry],
  });
  readonly openWebSockets = new Gauge({
    name: 'tether_proxy_open_websockets',
    help: 'WebSocket connections being proxied, by pool.',
    labelNames: ['pool'] as const,
    aggregator: 'sum',
    registers: [this.registry],
  });
  readonly tableRevision = new Gauge({
    name: 'tether_proxy_routing_table_revision',
    help: 'Revision of the routing table being served, by pool.',
    labelNames: ['pool'] as const,
    // --workers: set by the primary only, once every worker serves the revision.
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly tableSwaps = new Counter({
    name: 'tether_proxy_routing_table_swaps_total',
    help: 'Routing tables accepted and swapped in, by source (file, admin).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly tableRejections = new Counter({
    name: 'tether_proxy_routing_table_rejections_total',
    help: 'Routing tables refused, by source and reason (invalid, stale, wrong_pool); the last good table keeps serving.',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  readonly healthChecks = new Counter({
    name: 'tether_proxy_health_checks_total',
    help: 'Active health checks, by pool, endpoint and result (success, failure).',
    labelNames: ['pool', 'endpoint', 'result'] as const,
    registers: [this.registry],
  });
  readonly endpointHealthy = new Gauge({
    name: 'tether_proxy_endpoint_healthy',
    help: '1 when the endpoint passes passive and active health, else 0 (--workers: the share of workers that see it healthy).',
    labelNames: ['pool', 'endpoint'] as const,
    // Passive health is per worker (nginx without a shared zone): the mean is the share
    // of workers that would send to the endpoint, and stays 0 only when none would.
    aggregator: 'average',
    registers: [this.registry],
  });
  readonly endpointDraining = new Gauge({
    name: 'tether_proxy_endpoint_draining',
    help: '1 while the endpoint drains (keeps its pins, takes no new ones).',
    labelNames: ['pool', 'endpoint'] as const,
    // From the table, the same in every worker.
    aggregator: 'max',
    registers: [this.registry],
  });

  readonly storeFallbacks = new Counter({
    name: 'tether_proxy_session_store_fallbacks_total',
    help: 'Requests whose store-kept pin (Learn, persisted ClientIP/Header) was decided by consistent hashing without the session store, by reason (timeout, error, not_connected, circuit_open).',
    labelNames: ['pool', 'reason'] as const,
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'tether_proxy_session_store_up',
    help: '1 while the session store is connected to a primary and its circuit breaker is closed; absent without --session-store.',
    // --workers: 1 only while every worker's client is up (each has its own).
    aggregator: 'min',
    registers: [],
  });
  readonly storeDuration = new Histogram({
    name: 'tether_proxy_session_store_duration_seconds',
    help: 'Session-store calls, from send to answer or timeout, s, by operation (lookup, write, delete, probe).',
    labelNames: ['operation'] as const,
    buckets: STORE_LATENCY_BUCKETS_S,
    registers: [],
  });
  readonly storeWrites = new Counter({
    name: 'tether_proxy_session_store_writes_total',
    help: 'Pins written to the session store after a response (fire-and-forget), by result (ok, timeout, error, not_connected, circuit_open, overload).',
    labelNames: ['pool', 'result'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tether_proxy_' });
  }

  /** Registers the session store's gauge and histogram: only a proxy started with `--session-store` exports them. */
  enableSessionStore(): void {
    if (this.registry.getSingleMetric('tether_proxy_session_store_up') !== undefined) return;
    this.registry.registerMetric(this.storeUp);
    this.registry.registerMetric(this.storeDuration);
  }

  /** Counts one affinity decision. */
  countDecision(pool: string, outcome: AffinityOutcome, reason: PinReason): void {
    this.affinity.inc({ pool, outcome, reason });
  }

  /** Removes every series of an endpoint that left the table. */
  forgetEndpoint(pool: string, endpoint: string): void {
    for (const code_class of CODE_CLASSES) this.requests.remove({ pool, endpoint, code_class });
    this.upstreamLatency.remove({ pool, endpoint });
    for (const result of ['success', 'failure']) this.healthChecks.remove({ pool, endpoint, result });
    this.endpointHealthy.remove({ pool, endpoint });
    this.endpointDraining.remove({ pool, endpoint });
  }

  /** Removes a pool's per-pool series (the proxy moved to another pool). */
  forgetPool(pool: string): void {
    this.tableRevision.remove({ pool });
    this.openWebSockets.remove({ pool });
    this.redispatches.remove({ pool });
    this.retries.remove({ pool });
    for (const reason of FALLBACK_REASONS) this.storeFallbacks.remove({ pool, reason });
    for (const result of STORE_WRITE_RESULTS) this.storeWrites.remove({ pool, result });
    for (const outcome of AFFINITY_OUTCOMES) {
      for (const reason of PIN_REASONS) {
        this.affinity.remove({ pool, outcome, reason });
      }
    }
  }
}

/** The status class label of a status code. */
export function codeClass(status: number): CodeClass {
  const c = Math.floor(status / 100);
  return (CODE_CLASSES[c - 1] ?? '5xx') as CodeClass;
}
