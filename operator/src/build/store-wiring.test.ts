import { describe, expect, it } from 'vitest';
import {
  type Observed,
  planStoreWiring,
  type SentinelView,
  type ServerView,
  type StoreAction,
  type StoreObservations,
  type WiringSpec,
} from './store-wiring.ts';

const spec: WiringSpec = {
  masterName: 'web-shop',
  servers: 3,
  sentinels: 3,
  quorum: 2,
  minReplicasToWrite: 1,
  serverPort: 6379,
  downAfterMs: 5000,
  failoverTimeoutMs: 10000,
  parallelSyncs: 1,
};

const IP = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
const SIP = ['10.0.1.1', '10.0.1.2', '10.0.1.3'];

/** A server pod; `view` null: it does not answer. */
function server(n: number, ip: string | undefined, v: Partial<ServerView> | null = {}): Observed<ServerView> {
  return {
    name: `shop-store-${n}`,
    ordinal: n,
    ip,
    ...(v === null
      ? { error: 'connect ECONNREFUSED' }
      : {
          view: {
            role: 'master',
            linkUp: false,
            offset: 0,
            onlineReplicas: [],
            minReplicasToWrite: 1,
            ...v,
          },
        }),
  };
}
/** Detached, as every server starts: a replica of itself. */
const detached = (n: number, ip = IP[n]) =>
  server(n, ip, { role: 'slave', masterHost: ip, masterPort: 6379 });
const primaryOf = (n: number, replicas: string[], ip = IP[n]) =>
  server(n, ip, { role: 'master', onlineReplicas: replicas, offset: 1000 });
const replicaOf = (n: number, primaryIp: string, ip = IP[n]) =>
  server(n, ip, { role: 'slave', masterHost: primaryIp, masterPort: 6379, linkUp: true, offset: 1000 });

/** A Sentinel pod; `monitor` undefined: monitors nothing; null: does not answer. */
function sentinel(
  n: number,
  monitor: string | undefined | null,
  o: { replicas?: string[]; sentinels?: string[]; flags?: string[]; quorum?: number; ip?: string } = {},
): Observed<SentinelView> {
  const ip = o.ip ?? SIP[n];
  if (monitor === null) return { name: `shop-sentinel-${n}`, ordinal: n, ip, error: 'timeout' };
  return {
    name: `shop-sentinel-${n}`,
    ordinal: n,
    ip,
    view:
      monitor === undefined
        ? { replicas: [], sentinels: [] }
        : {
            master: {
              ip: monitor,
              port: 6379,
              flags: o.flags ?? ['master'],
              quorum: o.quorum ?? 2,
              downAfterMs: 5000,
              failoverTimeoutMs: 10000,
              parallelSyncs: 1,
            },
            replicas: o.replicas ?? [],
            sentinels: o.sentinels ?? SIP.filter((x) => x !== ip),
          },
  };
}

/** Settled store: store-0 primary, store-1/2 linked, three Sentinels agreeing. */
function settled(): StoreObservations {
  const reps = [`${IP[1]}:6379`, `${IP[2]}:6379`];
  return {
    servers: [
      primaryOf(0, [IP[1] as string, IP[2] as string]),
      replicaOf(1, IP[0] as string),
      replicaOf(2, IP[0] as string),
    ],
    sentinels: [0, 1, 2].map((n) => sentinel(n, IP[0], { replicas: reps })),
  };
}

/** An action as a short string: `pod: what`. */
function short(a: StoreAction): string {
  switch (a.kind) {
    case 'replicaof':
      return `${a.pod}: REPLICAOF ${a.primary === undefined ? 'NO ONE' : a.primary.ip}`;
    case 'config-set':
      return `${a.pod}: CONFIG SET ${a.parameter} ${a.value}`;
    case 'sentinel-monitor':
      return `${a.pod}: MONITOR ${a.primary.ip}${a.replace ? ' (replace)' : ''}`;
    case 'sentinel-set':
      return `${a.pod}: SET ${a.option} ${a.value}`;
    case 'sentinel-reset':
      return `${a.pod}: RESET`;
    case 'sentinel-failover':
      return `${a.pod}: FAILOVER`;
  }
}

function summary(o: StoreObservations) {
  const plan = planStoreWiring(spec, o);
  return {
    primary: plan.primary?.pod,
    source: plan.source,
    reason: plan.reason,
    actions: plan.actions.map(short),
  };
}

describe('planStoreWiring', () => {
  it.each([
    {
      desc: 'first start: every server detached, no Sentinel monitoring → pod 0 is primary, all wired to it',
      o: (): StoreObservations => ({
        servers: [detached(0), detached(1), detached(2)],
        sentinels: [sentinel(0, undefined), sentinel(1, undefined), sentinel(2, undefined)],
      }),
      want: {
        primary: 'shop-store-0',
        source: 'bootstrap',
        reason: 'ReplicasMissing',
        actions: [
          'shop-store-0: REPLICAOF NO ONE',
          'shop-store-1: REPLICAOF 10.0.0.1',
          'shop-store-2: REPLICAOF 10.0.0.1',
          'shop-sentinel-0: MONITOR 10.0.0.1',
          'shop-sentinel-1: MONITOR 10.0.0.1',
          'shop-sentinel-2: MONITOR 10.0.0.1',
        ],
      },
    },
    {
      desc: 'first start with pod 0 not answering yet → wait (pod 0 is not skipped for starting late)',
      o: (): StoreObservations => ({
        servers: [server(0, IP[0], null), detached(1), detached(2)],
        sentinels: [sentinel(0, undefined)],
      }),
      want: { primary: undefined, source: 'none', reason: 'StoreNotReady', actions: [] },
    },
    {
      desc: 'first start with pod 2 without an IP yet → wait',
      o: (): StoreObservations => ({
        servers: [detached(0), detached(1), server(2, undefined)],
        sentinels: [],
      }),
      want: { primary: undefined, source: 'none', reason: 'StoreNotReady', actions: [] },
    },
    {
      desc: 'settled: nothing to do, Ready',
      o: settled,
      want: { primary: 'shop-store-0', source: 'sentinels', reason: 'StoreReady', actions: [] },
    },
    {
      desc: 'the primary pod is gone, its replicas live: wait for Sentinel failover, touch nothing',
      o: (): StoreObservations => {
        const s = settled();
        s.servers = [detached(0, '10.0.0.9'), replicaOf(1, IP[0] as string), replicaOf(2, IP[0] as string)];
        s.sentinels = s.sentinels.map((x) => ({
          ...x,
          view: {
            ...(x.view as SentinelView),
            master: {
              ...(x.view?.master as NonNullable<SentinelView['master']>),
              flags: ['master', 's_down'],
            },
          },
        }));
        return s;
      },
      want: { primary: undefined, source: 'none', reason: 'FailoverInProgress', actions: [] },
    },
    {
      desc: 'the restarted primary kept its IP and came up detached: a Sentinel is asked to fail it over now',
      o: (): StoreObservations => {
        const s = settled();
        s.servers[0] = detached(0);
        return s;
      },
      want: {
        primary: undefined,
        source: 'none',
        reason: 'FailoverInProgress',
        actions: ['shop-sentinel-0: FAILOVER'],
      },
    },
    {
      desc: '… and not asked again while that failover runs',
      o: (): StoreObservations => {
        const s = settled();
        s.servers[0] = detached(0);
        s.sentinels[0] = sentinel(0, IP[0], { flags: ['master', 'failover_in_progress'] });
        return s;
      },
      want: { primary: undefined, source: 'none', reason: 'FailoverInProgress', actions: [] },
    },
    {
      desc: 'the reported primary is a replica of another server (a failover half done): wait',
      o: (): StoreObservations => {
        const s = settled();
        s.servers[0] = replicaOf(0, IP[1] as string);
        return s;
      },
      want: { primary: undefined, source: 'none', reason: 'FailoverInProgress', actions: [] },
    },
    {
      desc: 'after the failover: the new pod joins as a replica; one Sentinel forgets the dead address per pass',
      o: (): StoreObservations => ({
        servers: [detached(0, '10.0.0.9'), primaryOf(1, [IP[2] as string]), replicaOf(2, IP[1] as string)],
        sentinels: [0, 1, 2].map((n) => sentinel(n, IP[1], { replicas: [`${IP[2]}:6379`, `${IP[0]}:6379`] })),
      }),
      want: {
        primary: 'shop-store-1',
        source: 'sentinels',
        reason: 'ReplicasMissing',
        actions: ['shop-store-0: REPLICAOF 10.0.0.2', 'shop-sentinel-0: RESET'],
      },
    },
    {
      desc: 'no reset while a Sentinel is rediscovering its peers (it was just reset)',
      o: (): StoreObservations => ({
        servers: [
          replicaOf(0, IP[1] as string, '10.0.0.9'),
          primaryOf(1, ['10.0.0.9', IP[2] as string]),
          replicaOf(2, IP[1] as string),
        ],
        sentinels: [
          sentinel(0, IP[1], { replicas: [], sentinels: [] }),
          sentinel(1, IP[1], { replicas: [`${IP[2]}:6379`, `${IP[0]}:6379`] }),
          sentinel(2, IP[1], { replicas: [`${IP[2]}:6379`, `${IP[0]}:6379`] }),
        ],
      }),
      want: { primary: 'shop-store-1', source: 'sentinels', reason: 'SentinelsDisagree', actions: [] },
    },
    {
      desc: 'a replaced Sentinel pod monitors nothing: it is told to; the others forget its old IP, one a pass',
      o: (): StoreObservations => {
        const s = settled();
        const reps = [`${IP[1]}:6379`, `${IP[2]}:6379`];
        s.sentinels = [
          sentinel(0, IP[0], { replicas: reps, sentinels: ['10.0.1.9', SIP[1] as string] }),
          sentinel(1, IP[0], { replicas: reps, sentinels: ['10.0.1.9', SIP[0] as string] }),
          sentinel(2, undefined),
        ];
        return s;
      },
      want: {
        primary: 'shop-store-0',
        source: 'sentinels',
        reason: 'SentinelsDisagree',
        actions: ['shop-sentinel-2: MONITOR 10.0.0.1', 'shop-sentinel-0: RESET'],
      },
    },
    {
      desc: 'every Sentinel replaced, the servers still wired: the existing primary is kept, only MONITOR is sent',
      o: (): StoreObservations => ({
        servers: [
          replicaOf(0, IP[2] as string),
          replicaOf(1, IP[2] as string),
          primaryOf(2, [IP[0] as string, IP[1] as string]),
        ],
        sentinels: [sentinel(0, undefined), sentinel(1, undefined), sentinel(2, undefined)],
      }),
      want: {
        primary: 'shop-store-2',
        source: 'bootstrap',
        reason: 'SentinelsDisagree',
        actions: [
          'shop-sentinel-0: MONITOR 10.0.0.3',
          'shop-sentinel-1: MONITOR 10.0.0.3',
          'shop-sentinel-2: MONITOR 10.0.0.3',
        ],
      },
    },
    {
      desc: 'every server replaced: the Sentinels monitor a dead address no live replica backs → bootstrap anew',
      o: (): StoreObservations => ({
        servers: [detached(0, '10.0.0.7'), detached(1, '10.0.0.8'), detached(2, '10.0.0.9')],
        sentinels: [0, 1, 2].map((n) => sentinel(n, IP[0], { replicas: [`${IP[1]}:6379`] })),
      }),
      want: {
        primary: 'shop-store-0',
        source: 'bootstrap',
        reason: 'ReplicasMissing',
        actions: [
          'shop-store-0: REPLICAOF NO ONE',
          'shop-store-1: REPLICAOF 10.0.0.7',
          'shop-store-2: REPLICAOF 10.0.0.7',
          'shop-sentinel-0: MONITOR 10.0.0.7 (replace)',
          'shop-sentinel-1: MONITOR 10.0.0.7 (replace)',
          'shop-sentinel-2: MONITOR 10.0.0.7 (replace)',
        ],
      },
    },
    {
      desc: 'bootstrap prefers the highest replication offset (data first) over pod 0',
      o: (): StoreObservations => ({
        servers: [
          detached(0),
          server(1, IP[1], { role: 'slave', masterHost: '10.0.0.99', masterPort: 6379, offset: 500 }),
          detached(2),
        ],
        sentinels: [],
      }),
      want: {
        primary: 'shop-store-1',
        source: 'bootstrap',
        reason: 'ReplicasMissing',
        actions: [
          'shop-store-1: REPLICAOF NO ONE',
          'shop-store-0: REPLICAOF 10.0.0.2',
          'shop-store-2: REPLICAOF 10.0.0.2',
        ],
      },
    },
    {
      desc: 'a failover running (o_down): servers are not touched by the Sentinel rules, no Sentinel command',
      o: (): StoreObservations => {
        const s = settled();
        s.sentinels[0] = sentinel(0, IP[0], { flags: ['master', 'o_down', 'failover_in_progress'] });
        s.sentinels[2] = sentinel(2, undefined);
        return s;
      },
      want: { primary: 'shop-store-0', source: 'sentinels', reason: 'FailoverInProgress', actions: [] },
    },
    {
      desc: 'Sentinels split evenly between two masters: wait',
      o: (): StoreObservations => ({
        servers: [primaryOf(0, []), primaryOf(1, []), detached(2)],
        sentinels: [sentinel(0, IP[0]), sentinel(1, IP[1]), sentinel(2, null)],
      }),
      want: { primary: undefined, source: 'none', reason: 'SentinelsDisagree', actions: [] },
    },
    {
      desc: 'a Sentinel stuck on a dead address while the majority agrees: it is re-pointed',
      o: (): StoreObservations => {
        const s = settled();
        s.sentinels[2] = sentinel(2, '10.0.0.99');
        return s;
      },
      want: {
        primary: 'shop-store-0',
        source: 'sentinels',
        reason: 'SentinelsDisagree',
        actions: ['shop-sentinel-2: MONITOR 10.0.0.1 (replace)'],
      },
    },
    {
      desc: 'a setting drifted (quorum after a change of sentinels; min-replicas-to-write): set back',
      o: (): StoreObservations => {
        const s = settled();
        s.sentinels[1] = sentinel(1, IP[0], { replicas: [`${IP[1]}:6379`, `${IP[2]}:6379`], quorum: 1 });
        s.servers[2] = server(2, IP[2], {
          role: 'slave',
          masterHost: IP[0],
          masterPort: 6379,
          linkUp: true,
          minReplicasToWrite: 0,
        });
        return s;
      },
      want: {
        primary: 'shop-store-0',
        source: 'sentinels',
        reason: 'StoreReady',
        actions: ['shop-store-2: CONFIG SET min-replicas-to-write 1', 'shop-sentinel-1: SET quorum 2'],
      },
    },
    {
      desc: 'a replica that lost its link is not Ready (ReplicasMissing), nothing to send',
      o: (): StoreObservations => {
        const s = settled();
        s.servers[0] = primaryOf(0, [IP[1] as string]);
        s.servers[2] = server(2, IP[2], {
          role: 'slave',
          masterHost: IP[0],
          masterPort: 6379,
          linkUp: false,
        });
        return s;
      },
      want: { primary: 'shop-store-0', source: 'sentinels', reason: 'ReplicasMissing', actions: [] },
    },
  ])('$desc', ({ o, want }) => {
    expect(summary(o())).toEqual(want);
  });

  it('reports the role map: linked replicas and Sentinels monitoring the primary', () => {
    const s = settled();
    s.sentinels[2] = sentinel(2, null);
    const plan = planStoreWiring(spec, s);
    expect(plan.roles).toEqual({
      replicas: [
        { pod: 'shop-store-1', ip: '10.0.0.2', linked: true },
        { pod: 'shop-store-2', ip: '10.0.0.3', linked: true },
      ],
      sentinels: [
        { pod: 'shop-sentinel-0', ip: '10.0.1.1', monitoring: true },
        { pod: 'shop-sentinel-1', ip: '10.0.1.2', monitoring: true },
        { pod: 'shop-sentinel-2', ip: '10.0.1.3', monitoring: false },
      ],
    });
    expect(plan.ready).toBe(false);
    expect(plan.reason).toBe('SentinelsDisagree');
    expect(plan.message).toMatch(/2\/3 Sentinels/);
  });

  it('is deterministic whatever order the pods are listed in', () => {
    const s = settled();
    const shuffled = { servers: [...s.servers].reverse(), sentinels: [...s.sentinels].reverse() };
    s.servers[0] = detached(0);
    shuffled.servers[2] = detached(0);
    expect(planStoreWiring(spec, shuffled)).toEqual(planStoreWiring(spec, s));
  });
});
