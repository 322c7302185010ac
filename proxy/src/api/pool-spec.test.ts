import { describe, expect, it } from 'vitest';
import { stickyBackendPoolSchema } from './pool-spec.ts';
import { buildRoutingTable, routingTableSchema } from './routing-table.ts';

const base = {
  apiVersion: 'tether.dev/v1alpha1',
  kind: 'StickyBackendPool',
  metadata: { name: 'shop' },
  spec: { backend: { endpoints: [{ name: 'a', address: '127.0.0.1', port: 8080 }] } },
};

describe('StickyBackendPool schema', () => {
  it('applies the documented defaults', () => {
    const p = stickyBackendPoolSchema.parse(base);
    expect(p.metadata.namespace).toBe('default');
    expect(p.spec.affinity).toMatchObject({
      type: 'Cookie',
      cookie: {
        name: 'route',
        path: '/',
        domain: '',
        lifetimeType: 'Session',
        absoluteTimeout: '24h',
        secure: 'Auto',
        httpOnly: true,
        sameSite: 'Lax',
      },
      clientIP: { ipv4PrefixLength: 24, ipv6PrefixLength: 128, trustedProxies: [] },
    });
    expect(p.spec.onEndpointFailure).toBe('Repin');
    expect(p.spec.draining).toEqual({ keepSessions: true, timeout: '5m' });
    expect(p.spec.healthCheck.passive).toEqual({ maxFails: 1, failTimeout: '10s' });
    expect(p.spec.healthCheck.active).toBeUndefined();
    expect(p.spec.balanceFactor).toBeUndefined();
  });

  it.each([
    {
      desc: 'both service and endpoints',
      spec: { backend: { service: { name: 's', port: 80 }, endpoints: [] } },
      path: 'backend',
    },
    { desc: 'neither', spec: { backend: {} }, path: 'backend' },
    {
      desc: 'bad duration',
      spec: { ...base.spec, affinity: { cookie: { absoluteTimeout: '1 day' } } },
      path: 'affinity.cookie.absoluteTimeout',
    },
    {
      desc: 'unknown affinity type',
      spec: { ...base.spec, affinity: { type: 'RoundRobin' } },
      path: 'affinity.type',
    },
    {
      desc: 'bad cookie name',
      spec: { ...base.spec, affinity: { cookie: { name: 'a b' } } },
      path: 'affinity.cookie.name',
    },
    {
      desc: 'bad trusted proxy',
      spec: { ...base.spec, affinity: { clientIP: { trustedProxies: ['10.0.0.0/33'] } } },
      path: 'affinity.clientIP.trustedProxies.0',
    },
    {
      desc: 'SameSite None without Secure',
      spec: { ...base.spec, affinity: { cookie: { sameSite: 'None', secure: 'Never' } } },
      path: 'affinity.cookie.sameSite',
    },
    { desc: 'balanceFactor below 100', spec: { ...base.spec, balanceFactor: 50 }, path: 'balanceFactor' },
    {
      desc: 'port out of range',
      spec: { backend: { endpoints: [{ address: '127.0.0.1', port: 70000 }] } },
      path: 'backend.endpoints.0.port',
    },
    {
      desc: 'bad address',
      spec: { backend: { endpoints: [{ address: '300.1.1.1', port: 80 }] } },
      path: 'backend.endpoints.0.address',
    },
    {
      // The proxy does no DNS: a name here would pass the spec and fail as a routing table.
      desc: 'a host name as address',
      spec: { backend: { endpoints: [{ address: 'shop.example', port: 80 }] } },
      path: 'backend.endpoints.0.address',
    },
    {
      desc: 'an IPv6 zone id',
      spec: { backend: { endpoints: [{ address: 'fe80::1%eth0', port: 80 }] } },
      path: 'backend.endpoints.0.address',
    },
  ])('refuses $desc, naming $path', ({ spec, path }) => {
    const r = stickyBackendPoolSchema.safeParse({ ...base, spec });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toContain(`spec.${path}`);
  });
});

describe('buildRoutingTable', () => {
  it('copies the spec with defaults and gives static endpoints stable ids', () => {
    const p = stickyBackendPoolSchema.parse({
      ...base,
      spec: {
        backend: {
          endpoints: [
            { name: 'a', address: '127.0.0.1', port: 1 },
            { address: '::1', port: 2, draining: true, weight: 3 },
          ],
        },
      },
    });
    const t = buildRoutingTable(p, 7);
    expect(routingTableSchema.parse(t)).toEqual(t);
    expect(t).toMatchObject({
      schemaVersion: 1,
      pool: 'default/shop',
      revision: 7,
      onEndpointFailure: 'Repin',
    });
    expect(t.endpoints).toEqual([
      { id: 'a', address: '127.0.0.1', port: 1, state: 'Ready', weight: 1 },
      { id: '[::1]:2', address: '::1', port: 2, state: 'Draining', weight: 3 },
    ]);
  });

  it('refuses duplicate endpoint ids', () => {
    const p = stickyBackendPoolSchema.parse({
      ...base,
      spec: {
        backend: {
          endpoints: [
            { name: 'a', address: '127.0.0.1', port: 1 },
            { name: 'a', address: '127.0.0.1', port: 2 },
          ],
        },
      },
    });
    expect(() => buildRoutingTable(p, 1)).toThrow(/duplicate endpoint id a/);
  });

  it('a Service backend needs the operator', () => {
    const p = stickyBackendPoolSchema.parse({
      ...base,
      spec: { backend: { service: { name: 'shop', port: 'http' } } },
    });
    expect(() => buildRoutingTable(p, 1)).toThrow(/needs the operator/);
  });
});

describe('sessionStore.persistPins', () => {
  it('is off by default, with a 30m sliding pin timeout, and then leaves the routing table as it was', () => {
    const p = stickyBackendPoolSchema.parse(base);
    expect(p.spec.sessionStore).toMatchObject({ persistPins: false, pinTimeout: '30m' });
    expect(buildRoutingTable(p, 1)).not.toHaveProperty('sessionStore');
  });

  it('is copied into the routing table when on', () => {
    const p = stickyBackendPoolSchema.parse({
      ...base,
      spec: {
        ...base.spec,
        affinity: { type: 'ClientIP' },
        sessionStore: { persistPins: true, pinTimeout: '2h' },
      },
    });
    const t = buildRoutingTable(p, 1);
    expect(t.sessionStore).toEqual({ persistPins: true, pinTimeout: '2h' });
    expect(routingTableSchema.parse(t)).toEqual(t);
  });
});
