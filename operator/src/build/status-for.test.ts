import { describe, expect, it } from 'vitest';
import { type Observations, statusFor } from './status-for.ts';
import type { StorePlan } from './store-wiring.ts';

const base: Observations = {
  generation: 2,
  endpoints: { ready: 3, draining: 0 },
  proxies: { desired: 2, inSync: 2 },
  pushErrors: [],
  revision: 5,
  hash: 'h',
  mode: 'Managed',
};
const conds = (o: Partial<Observations>) =>
  Object.fromEntries(
    (statusFor({ ...base, ...o }, undefined, 'T').conditions ?? []).map((c) => [
      c.type,
      `${c.status}/${c.reason}`,
    ]),
  );

describe('statusFor', () => {
  it.each([
    {
      desc: 'all in sync',
      o: {},
      want: {
        Ready: 'True/RoutingTableServed',
        Progressing: 'False/AsExpected',
        Degraded: 'False/AsExpected',
      },
    },
    {
      desc: 'invalid spec',
      o: { invalid: 'spec.affinity.type: bad' },
      want: { Ready: 'False/InvalidSpec', Progressing: 'False/InvalidSpec', Degraded: 'True/InvalidSpec' },
    },
    {
      desc: 'Service missing',
      o: { backendProblem: { reason: 'ServiceNotFound', message: 'm' } },
      want: {
        Ready: 'False/ServiceNotFound',
        Progressing: 'False/ServiceNotFound',
        Degraded: 'True/ServiceNotFound',
      },
    },
    {
      desc: 'no endpoints',
      o: { endpoints: { ready: 0, draining: 1 } },
      want: {
        Ready: 'False/NoReadyEndpoints',
        Progressing: 'False/AsExpected',
        Degraded: 'False/AsExpected',
      },
    },
    {
      desc: 'one of two in sync, a push failed',
      o: { proxies: { desired: 2, inSync: 1 }, pushErrors: ['p1: refused'] },
      want: {
        Ready: 'True/RoutingTableServed',
        Progressing: 'True/PushingRoutingTable',
        Degraded: 'True/PushFailed',
      },
    },
    {
      desc: 'no proxies yet',
      o: { proxies: { desired: 0, inSync: 0 } },
      want: { Ready: 'False/NoProxies', Progressing: 'False/AsExpected', Degraded: 'False/AsExpected' },
    },
    {
      desc: 'none in sync',
      o: { proxies: { desired: 2, inSync: 0 } },
      want: {
        Ready: 'False/ProxiesNotInSync',
        Progressing: 'True/PushingRoutingTable',
        Degraded: 'False/AsExpected',
      },
    },
  ])('$desc', ({ o, want }) => {
    expect(conds(o)).toEqual(want);
  });

  it('keeps lastTransitionTime while a condition keeps its status; sets observedGeneration', () => {
    const first = statusFor(base, undefined, 'T1');
    const second = statusFor({ ...base, generation: 3, revision: 6 }, first, 'T2');
    const third = statusFor({ ...base, endpoints: { ready: 0, draining: 0 } }, second, 'T3');
    const at = (s: typeof first, t: string) => s.conditions?.find((c) => c.type === t)?.lastTransitionTime;
    expect(at(second, 'Ready')).toBe('T1');
    expect(at(third, 'Ready')).toBe('T3');
    expect(second.observedGeneration).toBe(3);
    expect(second.conditions?.every((c) => c.observedGeneration === 3)).toBe(true);
    expect(second.routingTableRevision).toBe(6);
  });

  it('an invalid spec keeps the last revision in status (it never goes back)', () => {
    const s = statusFor(
      { ...base, invalid: 'x', revision: undefined, hash: undefined },
      { routingTableRevision: 9 },
      'T',
    );
    expect(s.routingTableRevision).toBe(9);
  });
});

describe('statusFor with the session store', () => {
  const plan = (ready: boolean): StorePlan => ({
    primary: { pod: 'shop-store-1', ip: '10.0.0.2' },
    source: 'sentinels',
    actions: [],
    roles: {
      replicas: [
        { pod: 'shop-store-0', ip: '10.0.0.9', linked: ready },
        { pod: 'shop-store-2', ip: '10.0.0.3', linked: true },
      ],
      sentinels: [{ pod: 'shop-sentinel-0', ip: '10.0.1.1', monitoring: true }],
    },
    ready,
    reason: ready ? 'StoreReady' : 'ReplicasMissing',
    message: ready ? 'all well' : '1/2 replicas linked to primary shop-store-1',
  });
  const store = (ready: boolean, errors: string[] = []) => ({
    ...base,
    store: { secretName: 'shop-session-store', masterName: 'web-shop', plan: plan(ready), errors },
  });

  it('publishes the Secret name, the role map and Ready/Degraded', () => {
    const s = statusFor(store(true), undefined, 'T1');
    expect(s.sessionStore).toEqual({
      secretName: 'shop-session-store',
      masterName: 'web-shop',
      primary: { pod: 'shop-store-1', ip: '10.0.0.2' },
      replicas: plan(true).roles.replicas,
      sentinels: plan(true).roles.sentinels,
      conditions: [
        expect.objectContaining({
          type: 'Ready',
          status: 'True',
          reason: 'StoreReady',
          lastTransitionTime: 'T1',
        }),
        expect.objectContaining({ type: 'Degraded', status: 'False', reason: 'StoreReady' }),
      ],
    });
    expect(conds(store(true))).toMatchObject({
      Ready: 'True/RoutingTableServed',
      Degraded: 'False/AsExpected',
    });
  });

  it('a store not Ready: its Degraded=True with the reason, the pool Degraded too (traffic still served)', () => {
    const s = statusFor(store(false, ['shop-store-0: REPLICAOF 10.0.0.2 6379: timeout']), undefined, 'T');
    const c = Object.fromEntries(
      (s.sessionStore?.conditions ?? []).map((x) => [x.type, `${x.status}/${x.reason}`]),
    );
    expect(c).toEqual({ Ready: 'False/ReplicasMissing', Degraded: 'True/ReplicasMissing' });
    expect(s.sessionStore?.conditions?.[0]?.message).toMatch(
      /1\/2 replicas linked.*failed: shop-store-0: REPLICAOF/,
    );
    expect(conds(store(false))).toEqual({
      Ready: 'True/RoutingTableServed',
      Progressing: 'False/AsExpected',
      Degraded: 'True/SessionStoreReplicasMissing',
    });
  });

  it("keeps the store conditions' transition times while their status holds", () => {
    const first = statusFor(store(false), undefined, 'T1');
    const second = statusFor(store(false), first, 'T2');
    const third = statusFor(store(true), second, 'T3');
    const at = (s: typeof first) =>
      s.sessionStore?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime;
    expect([at(first), at(second), at(third)]).toEqual(['T1', 'T1', 'T3']);
  });

  it('store off: no sessionStore in status', () => {
    expect(statusFor(base, undefined, 'T').sessionStore).toBeUndefined();
  });
});
