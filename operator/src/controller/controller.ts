/**
 * The controller: informers → work queue → reconcile workers (kube-rs's
 * `Controller::new(pools).owns(..).run(reconcile, error_policy)`).
 *
 * Informers run from the start, so a standby's caches are warm when it
 * becomes leader; workers run only while leading, and stop the moment
 * leadership is lost (their in-flight API calls are aborted).
 */
import { POOL_LABEL } from '../api/index.ts';
import { SERVICE_NAME_LABEL } from '../build/routing-table-for.ts';
import { STORE_LABEL } from '../build/session-store-objects.ts';
import type { Informer } from '../kube/informer.ts';
import { type EndpointSlice, type KubeObject, keyOf, type Pod } from '../kube/types.ts';
import type { OperatorMetrics } from '../metrics.ts';
import type { Reconciler } from '../reconcile.ts';
import { realClock } from './clock.ts';
import { WorkQueue } from './work-queue.ts';

/** Longest wait before pushing again to proxies not in sync (pod events also wake the pool). */
export const MAX_SYNC_RETRY_MS = 30_000;

export interface ControllerDeps {
  pools: Informer<KubeObject>[];
  slices: Informer<EndpointSlice>[];
  pods: Informer<Pod>[];
  reconciler: Reconciler;
  metrics: OperatorMetrics;
  workers: number;
  resyncMs: number;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** Pool keys per `namespace/service`, so an EndpointSlice change wakes only its pools. */
export class ServiceIndex {
  private readonly byService = new Map<string, Set<string>>();
  private readonly byPool = new Map<string, string>();

  set(poolKey: string, serviceKey: string | undefined): void {
    this.delete(poolKey);
    if (serviceKey === undefined) return;
    this.byPool.set(poolKey, serviceKey);
    const s = this.byService.get(serviceKey) ?? new Set<string>();
    this.byService.set(serviceKey, s);
    s.add(poolKey);
  }

  delete(poolKey: string): void {
    const svc = this.byPool.get(poolKey);
    if (svc === undefined) return;
    this.byPool.delete(poolKey);
    const s = this.byService.get(svc);
    s?.delete(poolKey);
    if (s?.size === 0) this.byService.delete(svc);
  }

  poolsOf(serviceKey: string): Iterable<string> {
    return this.byService.get(serviceKey) ?? [];
  }
}

export class Controller {
  readonly queue: WorkQueue;
  private readonly d: ControllerDeps;
  private readonly index = new ServiceIndex();
  private abort = new AbortController();
  private running: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(d: ControllerDeps) {
    this.d = d;
    this.queue = new WorkQueue(realClock, undefined, {
      onDepth: (n) => d.metrics.queueDepth.set(n),
      onLatency: (ms) => d.metrics.queueLatency.observe(ms / 1000),
    });
  }

  /** Handlers for the informers (pass as their onEvent). */
  onPool = (type: string, obj: KubeObject): void => {
    const key = keyOf(obj);
    if (type === 'delete') this.index.delete(key);
    else {
      const svc = (obj as { spec?: { backend?: { service?: { name?: unknown } } } }).spec?.backend?.service
        ?.name;
      this.index.set(key, typeof svc === 'string' ? `${obj.metadata.namespace}/${svc}` : undefined);
    }
    this.queue.add(key);
  };

  onSlice = (_type: string, obj: EndpointSlice): void => {
    const svc = obj.metadata.labels?.[SERVICE_NAME_LABEL];
    if (svc === undefined) return;
    for (const k of this.index.poolsOf(`${obj.metadata.namespace}/${svc}`)) this.queue.add(k);
  };

  onPod = (_type: string, obj: Pod): void => {
    const pool = obj.metadata.labels?.[POOL_LABEL];
    if (pool !== undefined && obj.metadata.namespace) this.queue.add(`${obj.metadata.namespace}/${pool}`);
  };

  /** A session store pod (label `tether.dev/session-store: <pool>`) changed: its pool rewires. */
  onStorePod = (_type: string, obj: Pod): void => {
    const pool = obj.metadata.labels?.[STORE_LABEL];
    if (pool !== undefined && obj.metadata.namespace) this.queue.add(`${obj.metadata.namespace}/${pool}`);
  };

  /** Starts the reconcile workers (call when leading). Every cached pool is queued. */
  startWorkers(): void {
    this.abort = new AbortController();
    for (const inf of this.d.pools) for (const k of inf.cache.keys()) this.queue.add(k);
    for (let i = 0; i < this.d.workers; i++) this.running.push(this.work(this.abort.signal));
    this.resyncTimer = setInterval(() => {
      for (const inf of this.d.pools) for (const k of inf.cache.keys()) this.queue.add(k);
    }, this.d.resyncMs);
    this.resyncTimer.unref();
  }

  /** Stops reconciling now: no new key is taken, in-flight API calls and pushes are aborted. */
  async stopWorkers(): Promise<void> {
    clearInterval(this.resyncTimer);
    this.abort.abort();
    this.queue.shutDown();
    await Promise.allSettled(this.running);
    this.running = [];
  }

  private async work(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined || signal.aborted) return;
      const end = this.d.metrics.reconcileDuration.startTimer();
      try {
        const r = await this.d.reconciler.reconcile(key, signal);
        this.d.metrics.reconciles.inc({ result: r.outcome === 'done' ? 'success' : r.outcome });
        if (r.outcome === 'requeue') {
          // Proxies not in sync yet: back off per key (5 ms doubling), without counting an error.
          if (r.afterMs !== undefined) this.queue.addAfter(key, r.afterMs);
          else
            this.queue.addAfter(
              key,
              Math.min(this.queue.limiter.when(key), MAX_SYNC_RETRY_MS, r.atMostMs ?? MAX_SYNC_RETRY_MS),
            );
        } else {
          this.queue.forget(key);
          // Done, but to be looked at again (a session store's roles change without an event).
          if (r.outcome === 'done' && r.afterMs !== undefined) this.queue.addAfter(key, r.afterMs);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.d.metrics.reconciles.inc({ result: 'error' });
        this.d.log('warn', 'reconcile failed; requeued with backoff', {
          pool: key,
          retries: this.queue.limiter.retries(key),
          error: String((err as Error).message ?? err),
        });
        this.queue.addRateLimited(key);
      } finally {
        end();
        this.queue.done(key);
      }
    }
  }
}
