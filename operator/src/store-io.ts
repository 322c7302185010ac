/**
 * The session store's I/O: observe every server and Sentinel pod by IP
 * (`INFO replication`, `CONFIG GET`, `SENTINEL MASTER/REPLICAS/SENTINELS`)
 * and carry out the actions build/store-wiring.ts decided. One short-lived
 * ioredis connection per pod and pass, every step bounded by a timeout, so
 * a dead or hung pod costs a reconcile at most about `timeoutMs` × 2.
 */
import { Redis } from 'ioredis';
import type {
  Observed,
  SentinelView,
  ServerView,
  StoreAction,
  StoreObservations,
  StorePod,
} from './build/store-wiring.ts';

export interface StoreIoOptions {
  password: string;
  masterName: string;
  serverPort: number;
  sentinelPort: number;
  /** Connect, and then each command, ms. */
  timeoutMs: number;
  /** Sentinel settings sent with `SENTINEL MONITOR`. */
  monitor: { quorum: number; downAfterMs: number; failoverTimeoutMs: number; parallelSyncs: number };
}

function clientOf(ip: string, port: number, o: StoreIoOptions): Redis {
  const c = new Redis({
    host: ip,
    port,
    ...(o.password === '' ? {} : { password: o.password }),
    lazyConnect: true,
    connectTimeout: o.timeoutMs,
    commandTimeout: o.timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  c.on('error', () => {});
  return c;
}

async function withClient<T>(
  ip: string,
  port: number,
  o: StoreIoOptions,
  fn: (c: Redis) => Promise<T>,
): Promise<T> {
  const c = clientOf(ip, port, o);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

/** Parses `INFO replication` (and the `min-replicas-to-write` value) into a {@link ServerView}. */
export function parseReplicationInfo(info: string, minReplicasToWrite: number | undefined): ServerView {
  const fields = new Map<string, string>();
  const online: string[] = [];
  for (const line of info.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at <= 0) continue;
    const k = line.slice(0, at);
    const v = line.slice(at + 1).trim();
    fields.set(k, v);
    if (/^slave\d+$/.test(k)) {
      const kv = Object.fromEntries(v.split(',').map((p) => p.split('=') as [string, string]));
      if (kv.state === 'online' && kv.ip) online.push(kv.ip);
    }
  }
  const role = fields.get('role') === 'slave' ? 'slave' : 'master';
  const port = fields.get('master_port');
  return {
    role,
    masterHost: role === 'slave' ? fields.get('master_host') : undefined,
    masterPort: role === 'slave' && port !== undefined ? Number(port) : undefined,
    linkUp: fields.get('master_link_status') === 'up',
    offset: Number(fields.get('master_repl_offset') ?? 0) || 0,
    onlineReplicas: online,
    minReplicasToWrite,
  };
}

/** A flat `[k1, v1, k2, v2, …]` reply as a map. */
function pairs(reply: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (!Array.isArray(reply)) return m;
  for (let i = 0; i + 1 < reply.length; i += 2) m.set(String(reply[i]), String(reply[i + 1]));
  return m;
}

/** Parses `SENTINEL MASTER`, `SENTINEL REPLICAS` and `SENTINEL SENTINELS` replies; `master` null: not monitored. */
export function parseSentinelView(master: unknown, replicas: unknown, sentinels: unknown): SentinelView {
  if (master === null) return { replicas: [], sentinels: [] };
  const m = pairs(master);
  const list = (x: unknown) => (Array.isArray(x) ? x.map(pairs) : []);
  return {
    master: {
      ip: m.get('ip') ?? '',
      port: Number(m.get('port') ?? 0),
      flags: (m.get('flags') ?? '').split(',').filter(Boolean),
      quorum: Number(m.get('quorum') ?? 0),
      downAfterMs: Number(m.get('down-after-milliseconds') ?? 0),
      failoverTimeoutMs: Number(m.get('failover-timeout') ?? 0),
      parallelSyncs: Number(m.get('parallel-syncs') ?? 0),
    },
    replicas: list(replicas).map((r) => `${r.get('ip')}:${r.get('port')}`),
    sentinels: list(sentinels).map((r) => r.get('ip') ?? ''),
  };
}

async function observeServer(p: StorePod, o: StoreIoOptions): Promise<Observed<ServerView>> {
  if (p.ip === undefined) return { ...p };
  try {
    return {
      ...p,
      view: await withClient(p.ip, o.serverPort, o, async (c) => {
        const info = await c.info('replication');
        const cfg = (await c.call('CONFIG', 'GET', 'min-replicas-to-write')) as string[];
        const min = cfg[1] === undefined ? undefined : Number(cfg[1]);
        return parseReplicationInfo(info, min);
      }),
    };
  } catch (err) {
    return { ...p, error: (err as Error).message };
  }
}

async function observeSentinel(p: StorePod, o: StoreIoOptions): Promise<Observed<SentinelView>> {
  if (p.ip === undefined) return { ...p };
  try {
    return {
      ...p,
      view: await withClient(p.ip, o.sentinelPort, o, async (c) => {
        let master: unknown = null;
        try {
          master = await c.call('SENTINEL', 'MASTER', o.masterName);
        } catch (err) {
          if (!/no such master/i.test((err as Error).message)) throw err;
          return parseSentinelView(null, [], []);
        }
        const replicas = await c.call('SENTINEL', 'REPLICAS', o.masterName);
        const sentinels = await c.call('SENTINEL', 'SENTINELS', o.masterName);
        return parseSentinelView(master, replicas, sentinels);
      }),
    };
  } catch (err) {
    return { ...p, error: (err as Error).message };
  }
}

/** Observes every pod at once; a pod that does not answer gets `error` instead of `view`. */
export async function observeStore(
  servers: readonly StorePod[],
  sentinels: readonly StorePod[],
  o: StoreIoOptions,
): Promise<StoreObservations> {
  const [s, t] = await Promise.all([
    Promise.all(servers.map((p) => observeServer(p, o))),
    Promise.all(sentinels.map((p) => observeSentinel(p, o))),
  ]);
  return { servers: s, sentinels: t };
}

/** One line per action, for logs. */
export function describeAction(a: StoreAction): string {
  switch (a.kind) {
    case 'replicaof':
      return `${a.pod}: REPLICAOF ${a.primary === undefined ? 'NO ONE' : `${a.primary.ip} ${a.primary.port}`}`;
    case 'config-set':
      return `${a.pod}: CONFIG SET ${a.parameter} ${a.value}`;
    case 'sentinel-monitor':
      return `${a.pod}: ${a.replace ? 'SENTINEL REMOVE + ' : ''}SENTINEL MONITOR ${a.primary.ip} ${a.primary.port}`;
    case 'sentinel-set':
      return `${a.pod}: SENTINEL SET ${a.option} ${a.value}`;
    case 'sentinel-reset':
      return `${a.pod}: SENTINEL RESET`;
    case 'sentinel-failover':
      return `${a.pod}: SENTINEL FAILOVER`;
  }
}

/**
 * Carries out the actions, each pod's in order, pods in parallel.
 * @returns one line per action that failed (it is retried by the next pass).
 */
export async function carryOutStoreActions(
  actions: readonly StoreAction[],
  o: StoreIoOptions,
): Promise<string[]> {
  const byPod = new Map<string, StoreAction[]>();
  for (const a of actions) byPod.set(a.pod, [...(byPod.get(a.pod) ?? []), a]);
  const errors: string[] = [];
  await Promise.all(
    [...byPod.values()].map(async (list) => {
      const first = list[0] as StoreAction;
      const sentinel = first.kind.startsWith('sentinel');
      try {
        await withClient(first.ip, sentinel ? o.sentinelPort : o.serverPort, o, async (c) => {
          for (const a of list) {
            try {
              await run(c, a, o);
            } catch (err) {
              errors.push(`${describeAction(a)}: ${(err as Error).message}`);
            }
          }
        });
      } catch (err) {
        errors.push(`${first.pod}: ${(err as Error).message}`);
      }
    }),
  );
  return errors;
}

async function run(c: Redis, a: StoreAction, o: StoreIoOptions): Promise<void> {
  const m = o.masterName;
  switch (a.kind) {
    case 'replicaof':
      if (a.primary === undefined) await c.call('REPLICAOF', 'NO', 'ONE');
      else await c.call('REPLICAOF', a.primary.ip, String(a.primary.port));
      return;
    case 'config-set':
      await c.call('CONFIG', 'SET', a.parameter, a.value);
      return;
    case 'sentinel-monitor': {
      if (a.replace) await c.call('SENTINEL', 'REMOVE', m).catch(() => undefined);
      await c.call('SENTINEL', 'MONITOR', m, a.primary.ip, String(a.primary.port), String(o.monitor.quorum));
      const set: string[] = [
        'down-after-milliseconds',
        String(o.monitor.downAfterMs),
        'failover-timeout',
        String(o.monitor.failoverTimeoutMs),
        'parallel-syncs',
        String(o.monitor.parallelSyncs),
      ];
      if (o.password !== '') set.push('auth-pass', o.password);
      await c.call('SENTINEL', 'SET', m, ...set);
      return;
    }
    case 'sentinel-set':
      await c.call('SENTINEL', 'SET', m, a.option, a.value);
      return;
    case 'sentinel-reset':
      await c.call('SENTINEL', 'RESET', m);
      return;
    case 'sentinel-failover':
      await c.call('SENTINEL', 'FAILOVER', m);
      return;
  }
}
