import { describe, expect, it } from 'vitest';
import { type Observations, statusFor } from './status-for.ts';

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
