import { describe, expect, it } from 'vitest';
import { stickyBackendPoolSchema } from '../api/index.ts';
import { desiredObjects, secretFor } from './desired-objects.ts';

const pool = (proxy: Record<string, unknown>) =>
  stickyBackendPoolSchema.parse({
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name: 'shop', namespace: 'web', uid: 'uid-1' },
    spec: { backend: { service: { name: 'shop', port: 'http' } }, proxy },
  });

describe('desiredObjects', () => {
  it('Managed: a Deployment and a Service owned by the pool, selecting the pool label', () => {
    // biome-ignore lint/suspicious/noExplicitAny: plain objects
    const [d, s] = desiredObjects(pool({ replicas: 3 }), { proxyImage: 'img:1', valkeyImage: 'v' }) as any[];
    expect(d.kind).toBe('Deployment');
    expect(d.metadata).toMatchObject({ name: 'shop-proxy', namespace: 'web' });
    expect(d.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'StickyBackendPool', name: 'shop', uid: 'uid-1', controller: true }),
    ]);
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.template.metadata.labels).toMatchObject({ 'tether.dev/pool': 'shop' });
    expect(d.spec.template.spec.containers[0].image).toBe('img:1');
    expect(d.spec.template.spec.containers[0].args).toContain('--admin-token-file=/etc/tether/admin-token');
    expect(d.spec.template.spec.volumes[0].secret.secretName).toBe('shop-tether');
    expect(s.kind).toBe('Service');
    expect(s.spec.selector).toEqual(d.spec.selector.matchLabels);
  });

  it('Sidecar: nothing to apply', () => {
    expect(desiredObjects(pool({ mode: 'Sidecar' }), { proxyImage: 'img', valkeyImage: 'v' })).toEqual([]);
  });

  it('refuses a pool without a uid (an owner reference needs it)', () => {
    const p = pool({});
    delete (p.metadata as { uid?: string }).uid;
    expect(() => desiredObjects(p, { proxyImage: 'i', valkeyImage: 'v' })).toThrow(/no uid/);
  });

  it('the Secret holds a 32-byte admin token and one cookie key', () => {
    let n = 0;
    // biome-ignore lint/suspicious/noExplicitAny: plain object
    const s = secretFor(pool({}), (len) => Buffer.alloc(len, ++n)) as any;
    expect(s.metadata.name).toBe('shop-tether');
    expect(Buffer.from(s.stringData['admin-token'], 'base64url')).toHaveLength(32);
    expect(s.stringData['cookie-keys'].trim().split('\n')).toHaveLength(1);
  });
});

describe('desiredObjects with the session store on', () => {
  const storePool = () =>
    stickyBackendPoolSchema.parse({
      apiVersion: 'tether.dev/v1alpha1',
      kind: 'StickyBackendPool',
      metadata: { name: 'shop', namespace: 'web', uid: 'uid-1' },
      spec: { backend: { service: { name: 'shop', port: 'http' } }, sessionStore: { enabled: true } },
    });

  it('the proxies get --session-store and the store Secret in session-store/ of their one projected volume', () => {
    // biome-ignore lint/suspicious/noExplicitAny: plain objects
    const [d] = desiredObjects(storePool(), { proxyImage: 'img', valkeyImage: 'v' }) as any[];
    const spec = d.spec.template.spec;
    expect(spec.containers[0].args).toContain('--session-store=/etc/tether/session-store');
    expect(spec.containers[0].volumeMounts).toEqual([
      { name: 'tether', mountPath: '/etc/tether', readOnly: true },
    ]);
    const [pool, store] = spec.volumes[0].projected.sources;
    expect(pool).toEqual({ secret: { name: 'shop-tether' } });
    expect(store.secret.name).toBe('shop-session-store');
    expect(store.secret.items.map((i: { path: string }) => i.path)).toEqual([
      'session-store/sentinels',
      'session-store/masterName',
      'session-store/password',
      'session-store/writeMode',
      'session-store/waitReplicas',
      'session-store/waitTimeoutMs',
    ]);
  });

  it('store off: no flag, the plain Secret volume', () => {
    // biome-ignore lint/suspicious/noExplicitAny: plain objects
    const [d] = desiredObjects(pool({}), { proxyImage: 'img', valkeyImage: 'v' }) as any[];
    expect(d.spec.template.spec.containers[0].args.join(' ')).not.toContain('--session-store');
    expect(d.spec.template.spec.volumes).toEqual([{ name: 'tether', secret: { secretName: 'shop-tether' } }]);
  });
});
