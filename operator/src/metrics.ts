/** The operator's Prometheus metrics (prom-client), one registry per process. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'tether_operator_reconciles_total',
    help: 'Reconciles by result: success, requeue (proxies not yet in sync), invalid (InvalidSpec), error (API failure, backoff).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'tether_operator_reconcile_duration_seconds',
    help: 'Time of one reconcile, read to status write.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'tether_operator_queue_depth',
    help: 'Pool keys waiting in the work queue.',
    registers: [this.registry],
  });
  readonly queueLatency = new Histogram({
    name: 'tether_operator_queue_latency_seconds',
    help: 'Time a key waited in the work queue before a worker took it.',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    registers: [this.registry],
  });
  readonly pushes = new Counter({
    name: 'tether_operator_pushes_total',
    help: 'Routing-table PUTs to proxies by result: ok, stale (409), unauthorized (401), rejected (other 4xx), error (network, 5xx).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'tether_operator_leader',
    help: '1 while this process holds the leader Lease.',
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'tether_operator_watch_restarts_total',
    help: 'Informer watch restarts by resource and reason: gone (410, relist), error, closed (ended by the server), stalled.',
    labelNames: ['resource', 'reason'] as const,
    registers: [this.registry],
  });
  readonly pools = new Gauge({
    name: 'tether_operator_pools',
    help: 'StickyBackendPools in the informer cache.',
    registers: [this.registry],
  });
}
