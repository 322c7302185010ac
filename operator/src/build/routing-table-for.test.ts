import { describe, expect, it } from 'vitest';
import { stickyBackendPoolSchema } from '../api/index.ts';
import type { EndpointSlice, Service } from '../kube/types.ts';
import { nextRevision } from './revision.ts';
import {
  endpointsFromSlices,
  hashTableContent,
  isBackendProblem,
  routingTableFor,
  withRevision,
} from './routing-table-for.ts';

type Cond = { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
const ep = (pod: string, ip: string, conditions?: Cond) => ({
  addresses: [ip],
  ...(conditions ? { conditions } : {}),
  targetRef: { kind: 'Pod', name: pod },
});
const slice = (
  name: string,
  endpoints: ReturnType<typeof ep>[],
  opts: { service?: string; port?: number; portName?: string; ns?: string; type?: string } = {},
): EndpointSlice => ({
  metadata: {
    name,
    namespace: opts.ns ?? 'default',
    labels: { 'kubernetes.io/service-name': opts.service ?? 'shop' },
  },
  addressType: opts.type ?? 'IPv4',
  endpoints,
  ports: [{ name: opts.portName ?? 'http', port: opts.port ?? 8080, protocol: 'TCP' }],
});
const service: Service = {
  metadata: { name: 'shop', namespace: 'default' },
  spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
};
const pool = (spec: Record<string, unknown> = {}) =>
  stickyBackendPoolSchema.parse({
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name: 'shop', namespace: 'default', uid: 'u1' },
    spec: { backend: { service: { name: 'shop', port: 'http' } }, ...spec },
  });

describe('endpointsFromSlices', () => {
  it.each([
    { desc: 'no conditions (nil means ready)', c: undefined, want: 'Ready' },
    { desc: 'ready', c: { ready: true, serving: true, terminating: false }, want: 'Ready' },
    {
      desc: 'serving and terminating',
      c: { ready: false, serving: true, terminating: true },
      want: 'Draining',
    },
    {
      desc: 'terminating, not serving',
      c: { ready: false, serving: false, terminating: true },
      want: undefined,
    },
    {
      desc: 'not ready, not terminating',
      c: { ready: false, serving: false, terminating: false },
      want: undefined,
    },
    { desc: 'not ready, serving nil', c: { ready: false, terminating: null }, want: undefined },
  ])('$desc → $want', ({ c, want }) => {
    const got = endpointsFromSlices([slice('s1', [ep('a', '10.1.0.1', c)])], 'http');
    expect(got.map((e) => e.state)).toEqual(want === undefined ? [] : [want]);
  });

  it('takes ids from pod names, sorted; the port from the named slice port', () => {
    const got = endpointsFromSlices(
      [slice('s1', [ep('shop-b', '10.1.0.2')]), slice('s2', [ep('shop-a', '10.1.0.1')])],
      'http',
    );
    expect(got).toEqual([
      { id: 'shop-a', address: '10.1.0.1', port: 8080, state: 'Ready', weight: 1 },
      { id: 'shop-b', address: '10.1.0.2', port: 8080, state: 'Ready', weight: 1 },
    ]);
  });

  it('keeps an endpoint listed in two slices once, Ready over Draining', () => {
    const got = endpointsFromSlices(
      [
        slice('s1', [ep('a', '10.1.0.1', { ready: false, serving: true, terminating: true })]),
        slice('s2', [ep('a', '10.1.0.1')]),
      ],
      'http',
    );
    expect(got.map((e) => `${e.id}:${e.state}`)).toEqual(['a:Ready']);
  });

  it('ignores slices without the port and FQDN slices; ids address:port without a pod', () => {
    const noPod = { addresses: ['10.1.0.9'] } as unknown as ReturnType<typeof ep>;
    const got = endpointsFromSlices(
      [
        slice('other-port', [ep('x', '10.1.0.3')], { portName: 'metrics' }),
        slice('fqdn', [ep('y', 'example.com')], { type: 'FQDN' }),
        slice('v6', [ep('z', 'fd00::1')], { type: 'IPv6' }),
        slice('s', [noPod]),
      ],
      'http',
    );
    expect(got.map((e) => e.id)).toEqual(['10.1.0.9:8080', 'z']);
  });
});

describe('routingTableFor', () => {
  it('filters slices by the Service label and namespace and resolves a port number through the Service', () => {
    const p = pool({ backend: { service: { name: 'shop', port: 80 } } });
    const t = routingTableFor(
      p,
      [
        slice('mine', [ep('a', '10.1.0.1')]),
        slice('other-svc', [ep('b', '10.1.0.2')], { service: 'cart' }),
        slice('other-ns', [ep('c', '10.1.0.3')], { ns: 'prod' }),
      ],
      service,
    );
    if (isBackendProblem(t)) throw new Error(t.message);
    expect(t.endpoints.map((e) => e.id)).toEqual(['a']);
    expect(t.pool).toBe('default/shop');
    expect(withRevision(t, 3).revision).toBe(3);
  });

  it.each([
    { desc: 'no Service', svc: undefined, port: 80, want: 'ServiceNotFound' },
    { desc: 'no such port number', svc: service, port: 81, want: 'PortNotFound' },
  ])('$desc → $want', ({ svc, port, want }) => {
    const t = routingTableFor(pool({ backend: { service: { name: 'shop', port } } }), [], svc);
    expect(isBackendProblem(t) && t.reason).toBe(want);
  });

  it('static endpoints come from the spec', () => {
    const p = pool({ backend: { endpoints: [{ name: 'a', address: '127.0.0.1', port: 1 }] } });
    const t = routingTableFor(p, [], undefined);
    expect(!isBackendProblem(t) && t.endpoints.map((e) => e.id)).toEqual(['a']);
  });

  it('copies sessionStore.persistPins into the table only when on, so other tables keep their hash', () => {
    const slices = [slice('s', [ep('a', '10.1.0.1')])];
    const off = routingTableFor(pool({ sessionStore: { enabled: true } }), slices, service);
    const on = routingTableFor(
      pool({
        affinity: { type: 'ClientIP' },
        sessionStore: { enabled: true, persistPins: true, pinTimeout: '1h' },
      }),
      slices,
      service,
    );
    if (isBackendProblem(off) || isBackendProblem(on)) throw new Error('problem');
    expect(off).not.toHaveProperty('sessionStore');
    expect(hashTableContent(off)).toBe(
      hashTableContent(routingTableFor(pool(), slices, service) as typeof off),
    );
    expect(on.sessionStore).toEqual({ persistPins: true, pinTimeout: '1h' });
    expect(withRevision(on, 1).sessionStore).toEqual({ persistPins: true, pinTimeout: '1h' });
  });

  it('hashes equal content equally, other content otherwise', () => {
    const a = routingTableFor(pool(), [slice('s', [ep('a', '10.1.0.1')])], service);
    const b = routingTableFor(pool(), [slice('t', [ep('a', '10.1.0.1')])], service);
    const c = routingTableFor(pool(), [slice('s', [ep('b', '10.1.0.1')])], service);
    if (isBackendProblem(a) || isBackendProblem(b) || isBackendProblem(c)) throw new Error('problem');
    expect(hashTableContent(a)).toBe(hashTableContent(b));
    expect(hashTableContent(a)).not.toBe(hashTableContent(c));
  });
});

describe('nextRevision', () => {
  it.each([
    { desc: 'first table', facts: {}, want: 1 },
    {
      desc: 'unchanged content keeps status revision',
      facts: { status: { revision: 7, hash: 'h' } },
      want: 7,
    },
    { desc: 'changed content', facts: { status: { revision: 7, hash: 'x' } }, want: 8 },
    {
      desc: 'a proxy holds a higher one (died before status)',
      facts: { status: { revision: 7, hash: 'h' }, proxies: 8 },
      want: 9,
    },
    {
      desc: 'memory ahead of a stale cached status',
      facts: { memory: 9, memoryHash: 'h', status: { revision: 7, hash: 'h' } },
      want: 9,
    },
    {
      desc: 'memory ahead, new content',
      facts: { memory: 9, memoryHash: 'x', status: { revision: 7 } },
      want: 10,
    },
  ])('$desc → $want', ({ facts, want }) => {
    expect(nextRevision('h', facts)).toBe(want);
  });
});
