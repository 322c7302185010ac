/**
 * `tether-operator`: watches StickyBackendPools, their EndpointSlices and
 * proxy pods, and keeps every proxy's routing table equal to what they say.
 *
 * Exit codes: 0 after SIGTERM/SIGINT (the Lease is released), 1 when
 * leadership is lost (restart clean, like client-go's OnStoppedLeading) or
 * on a fatal error, 2 for bad flags.
 */
import { createServer } from 'node:http';
import { z } from 'zod';
import { type Logger, makeLogger } from '../../proxy/src/json-log.ts';
import { API_VERSION, POOL_LABEL, POOL_PLURAL } from './api/index.ts';
import { SERVICE_NAME_LABEL } from './build/routing-table-for.ts';
import { STORE_LABEL } from './build/session-store-objects.ts';
import { type OperatorConfig, parseConfig, USAGE } from './config.ts';
import { realClock } from './controller/clock.ts';
import { Controller } from './controller/controller.ts';
import { LeaderElector } from './controller/leader-election.ts';
import { KubeClient, resourcePath } from './kube/client.ts';
import { EventRecorder } from './kube/events.ts';
import { Informer } from './kube/informer.ts';
import { apiLeaseStore } from './kube/lease-store.ts';
import {
  type EndpointSlice,
  endpointSliceSchema,
  type KubeObject,
  kubeObjectSchema,
  type Pod,
  podSchema,
} from './kube/types.ts';
import { OperatorMetrics } from './metrics.ts';
import { Pusher } from './push.ts';
import { Reconciler } from './reconcile.ts';

function die(message: string): never {
  process.stderr.write(`tether-operator: ${message}\n`);
  process.exit(2);
}

/** A parser that logs and drops objects that do not match (never a crash on odd input). */
function parserOf<S extends z.ZodType>(schema: S, what: string, log: Logger) {
  return (raw: unknown): z.output<S> | undefined => {
    const r = schema.safeParse(raw);
    if (r.success) return r.data;
    log('warn', `ignoring a malformed ${what}`, { error: z.prettifyError(r.error).slice(0, 300) });
    return undefined;
  };
}

export async function main(argv: string[]): Promise<void> {
  let cfg: OperatorConfig | 'help';
  try {
    cfg = parseConfig(argv, process.env);
  } catch (err) {
    die(`${(err as Error).message}\n${USAGE}`);
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const log = makeLogger(cfg['log-level']);
  let client: KubeClient;
  try {
    client = KubeClient.fromConfig(cfg.kubeconfig);
  } catch (err) {
    die(`kubeconfig: ${(err as Error).message}`);
  }
  const metrics = new OperatorMetrics();
  const scopes: Array<string | undefined> = cfg.namespaces.length > 0 ? cfg.namespaces : [undefined];

  const w = Math.max(1, Math.round(cfg['watch-timeout'] / 1000));
  const watchTimeoutSeconds: [number, number] = [w, 2 * w];
  let controller: Controller | undefined;
  const restart = (resource: string) => (reason: string, err?: unknown) => {
    metrics.watchRestarts.inc({ resource, reason });
    if (reason === 'error' || reason === 'gone' || reason === 'stalled') {
      log(reason === 'error' ? 'warn' : 'info', 'watch restarted', {
        resource,
        reason,
        error: err ? String(err) : undefined,
      });
    }
  };
  const pools = scopes.map(
    (ns) =>
      new Informer<KubeObject>(client, {
        name: POOL_PLURAL,
        path: resourcePath(API_VERSION, POOL_PLURAL, ns),
        parse: parserOf(kubeObjectSchema, 'StickyBackendPool', log),
        onEvent: (t, o) => {
          controller?.onPool(t, o);
          metrics.pools.set(pools.reduce((n, i) => n + i.cache.size, 0));
        },
        onRestart: restart(POOL_PLURAL),
        watchTimeoutSeconds,
      }),
  );
  const slices = scopes.map(
    (ns) =>
      new Informer<EndpointSlice>(client, {
        name: 'endpointslices',
        path: resourcePath('discovery.k8s.io/v1', 'endpointslices', ns),
        labelSelector: SERVICE_NAME_LABEL,
        parse: parserOf(endpointSliceSchema, 'EndpointSlice', log),
        onEvent: (t, o) => controller?.onSlice(t, o),
        onRestart: restart('endpointslices'),
        watchTimeoutSeconds,
      }),
  );
  const pods = scopes.map(
    (ns) =>
      new Informer<Pod>(client, {
        name: 'pods',
        path: resourcePath('v1', 'pods', ns),
        labelSelector: POOL_LABEL,
        parse: parserOf(podSchema, 'Pod', log),
        onEvent: (t, o) => controller?.onPod(t, o),
        onRestart: restart('pods'),
        watchTimeoutSeconds,
      }),
  );
  const storePods = scopes.map(
    (ns) =>
      new Informer<Pod>(client, {
        name: 'session-store-pods',
        path: resourcePath('v1', 'pods', ns),
        labelSelector: STORE_LABEL,
        parse: parserOf(podSchema, 'Pod', log),
        onEvent: (t, o) => controller?.onStorePod(t, o),
        onRestart: restart('pods'),
        watchTimeoutSeconds,
      }),
  );
  const informers = [...pools, ...slices, ...pods, ...storePods];
  const pusher = new Pusher(metrics, cfg['push-timeout']);
  const reconciler = new Reconciler({
    client,
    // One informer per scope; the reconciler reads them through merged views.
    pools: mergedView(pools),
    slices: mergedView(slices),
    pods: mergedView(pods),
    storePods: mergedView(storePods),
    storeTimeoutMs: cfg['store-timeout'],
    pusher,
    events: new EventRecorder(client, cfg.identity, (msg, f) => log('warn', msg, f)),
    settings: { proxyImage: cfg['proxy-image'], valkeyImage: cfg['valkey-image'] },
    log,
  });
  controller = new Controller({
    pools,
    slices,
    pods,
    reconciler,
    metrics,
    workers: cfg.workers,
    resyncMs: cfg.resync,
    log,
  });

  const health = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (path === '/readyz') {
      const bad = informers.filter((i) => !i.healthy).map((i) => i.name);
      if (bad.length === 0) return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      return void res
        .writeHead(503, { 'content-type': 'text/plain' })
        .end(`informers not synced or failing: ${bad.join(', ')}\n`);
    }
    if (path === '/metrics') {
      void metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
      });
      return;
    }
    res.writeHead(404).end();
  });
  const listen = cfg['metrics-listen'];
  const port = await new Promise<number>((resolve, reject) => {
    health.once('error', reject);
    health.listen(listen.port, listen.host, () => {
      const a = health.address();
      resolve(typeof a === 'object' && a !== null ? a.port : listen.port);
    });
  }).catch((err: Error) => die(`cannot listen on ${listen.host}:${listen.port}: ${err.message}`));

  for (const i of informers) i.start();
  log('info', 'tether-operator started', {
    identity: cfg.identity,
    metrics: `${listen.host}:${port}`,
    namespaces: cfg.namespaces.length > 0 ? cfg.namespaces : 'all',
    leaderElection: cfg['leader-elect'],
    node: process.version,
  });
  await Promise.all(informers.map((i) => i.waitForSync()));
  log('info', 'caches synced', { pools: pools.reduce((n, i) => n + i.cache.size, 0) });

  let elector: LeaderElector | undefined;
  let stopping = false;
  const stop = async (signal: string, code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log('info', 'shutting down', { signal });
    await controller?.stopWorkers();
    await elector?.stop();
    await Promise.all(informers.map((i) => i.stop()));
    await pusher.close();
    health.close();
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  process.on('SIGINT', () => void stop('SIGINT', 0));

  if (!cfg['leader-elect']) {
    metrics.leader.set(1);
    controller.startWorkers();
    return;
  }
  elector = new LeaderElector(
    apiLeaseStore(client, cfg['leader-election-namespace'], cfg['leader-election-id']),
    {
      identity: cfg.identity,
      leaseDurationMs: cfg['lease-duration'],
      renewDeadlineMs: cfg['renew-deadline'],
      retryPeriodMs: cfg['retry-period'],
    },
    {
      onStartedLeading: () => {
        metrics.leader.set(1);
        log('info', 'became leader', { identity: cfg.identity });
        controller?.startWorkers();
      },
      onStoppedLeading: () => {
        metrics.leader.set(0);
        if (stopping) return;
        // Stop reconciling at once; then exit, so a restart starts from a clean state (client-go practice).
        log('error', 'leadership lost: stopped reconciling, exiting', { identity: cfg.identity });
        void controller?.stopWorkers().finally(() => process.exit(1));
      },
      onNewLeader: (holder) => log('info', 'leader is', { holder }),
    },
    realClock,
  );
  void elector.run();
}

/** One read-only view over several informers' caches (one per watched namespace). */
function mergedView<T extends KubeObject>(list: Informer<T>[]): Informer<T> {
  if (list.length === 1) return list[0] as Informer<T>;
  const cache = {
    values: function* () {
      for (const i of list) yield* i.cache.values();
    },
    get: (k: string) => {
      for (const i of list) {
        const v = i.cache.get(k);
        if (v !== undefined) return v;
      }
      return undefined;
    },
  };
  return { cache, get: cache.get } as unknown as Informer<T>;
}
