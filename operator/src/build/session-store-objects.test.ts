import { describe, expect, it } from 'vitest';
import {
  parseSessionStoreConnection,
  SESSION_STORE_KEYS,
} from '../../../proxy/src/session-store/connection.ts';
import { stickyBackendPoolSchema } from '../api/index.ts';
import { serverConfig, storeObjects, storeSecretFor, storeSettingsFor } from './session-store-objects.ts';

const pool = (sessionStore: Record<string, unknown> = { enabled: true }, name = 'shop') =>
  stickyBackendPoolSchema.parse({
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name, namespace: 'web', uid: 'uid-1' },
    spec: { backend: { service: { name: 'shop', port: 'http' } }, sessionStore },
  });

// biome-ignore lint/suspicious/noExplicitAny: plain objects
const byKind = (objs: object[]) => objs.map((o: any) => `${o.kind}/${o.metadata.name}`);

describe('storeSettingsFor', () => {
  it.each([
    {
      desc: '0 replicas: nothing to wait for, writes never refused',
      replicas: 0,
      sentinels: 1,
      want: [1, 1, 0, 0],
    },
    {
      desc: '1 replica: WAIT 1, but losing it must not stop writes',
      replicas: 1,
      sentinels: 3,
      want: [2, 2, 0, 1],
    },
    { desc: 'the default 2 replicas, 3 Sentinels', replicas: 2, sentinels: 3, want: [3, 2, 1, 1] },
    { desc: '3 replicas, 5 Sentinels', replicas: 3, sentinels: 5, want: [4, 3, 1, 2] },
    {
      desc: '4 replicas: a majority of 5 servers holds a Sync write',
      replicas: 4,
      sentinels: 5,
      want: [5, 3, 2, 2],
    },
  ])('$desc', ({ replicas, sentinels, want }) => {
    const s = storeSettingsFor(pool({ enabled: true, replicas, sentinels }));
    expect([s.servers, s.quorum, s.minReplicasToWrite, s.waitReplicas]).toEqual(want);
  });

  it('the master name is <namespace>-<pool>, within what connection.ts accepts', () => {
    expect(storeSettingsFor(pool()).masterName).toBe('web-shop');
    const long = storeSettingsFor(pool({ enabled: true }, `a.${'b'.repeat(200)}`)).masterName;
    expect(long).toHaveLength(128);
    expect(long).toMatch(/^[A-Za-z0-9._-]+$/);
  });
});

describe('storeObjects', () => {
  // biome-ignore lint/suspicious/noExplicitAny: plain objects
  const objs = storeObjects(pool({ enabled: true, replicas: 2, sentinels: 3 }), 'valkey:8') as any[];
  const get = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);

  it('a ConfigMap, two StatefulSets, two headless Services and a PodDisruptionBudget, all owned by the pool', () => {
    expect(byKind(objs)).toEqual([
      'ConfigMap/shop-store',
      'StatefulSet/shop-store',
      'Service/shop-store',
      'StatefulSet/shop-sentinel',
      'Service/shop-sentinel',
      'PodDisruptionBudget/shop-store',
    ]);
    for (const o of objs) {
      expect(o.metadata.namespace).toBe('web');
      expect(o.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: 'StickyBackendPool', name: 'shop', uid: 'uid-1', controller: true }),
      ]);
      // Store pods must never look like proxies (push.ts selects tether.dev/pool).
      expect(JSON.stringify(o)).not.toContain('tether.dev/pool');
    }
  });

  it('servers: 1 + replicas, bound to the pod IP, detached at start, announcing the pod IP, password from the Secret', () => {
    const sts = get('StatefulSet', 'shop-store');
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(sts.spec.serviceName).toBe('shop-store');
    const c = sts.spec.template.spec.containers[0];
    expect(c.image).toBe('valkey:8');
    expect(c.command).toEqual(['valkey-server']);
    expect(c.args.join(' ')).toBe(
      '/etc/valkey/valkey.conf --bind $(POD_IP) --dir /data --replica-announce-ip $(POD_IP) ' +
        '--replicaof $(POD_IP) 6379 --requirepass $(VALKEY_PASSWORD) --masterauth $(VALKEY_PASSWORD)',
    );
    expect(c.env).toContainEqual({
      name: 'VALKEY_PASSWORD',
      valueFrom: { secretKeyRef: { name: 'shop-session-store', key: 'password' } },
    });
    expect(sts.spec.template.metadata.labels).toEqual({
      'app.kubernetes.io/name': 'tether-session-store',
      'app.kubernetes.io/component': 'server',
      'tether.dev/session-store': 'shop',
    });
    const term =
      sts.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0];
    expect(term.podAffinityTerm).toEqual({
      labelSelector: { matchLabels: sts.spec.selector.matchLabels },
      topologyKey: 'kubernetes.io/hostname',
    });
  });

  it('Sentinels: `sentinels` pods, a writable copy of the config made by an init container', () => {
    const sts = get('StatefulSet', 'shop-sentinel');
    expect(sts.spec.replicas).toBe(3);
    const spec = sts.spec.template.spec;
    expect(spec.initContainers[0].command).toEqual([
      'cp',
      '/etc/valkey/sentinel.conf',
      '/data/sentinel.conf',
    ]);
    expect(spec.containers[0].command).toEqual(['valkey-sentinel']);
    expect(spec.containers[0].args.slice(0, 3)).toEqual(['/data/sentinel.conf', '--bind', '$(POD_IP)']);
    expect(spec.containers[0].args.join(' ')).toContain('--sentinel announce-ip $(POD_IP)');
    expect(spec.volumes).toContainEqual({ name: 'data', emptyDir: {} });
  });

  it('Services are headless and publish not-ready pods; the PDB allows one store pod down', () => {
    for (const n of ['shop-store', 'shop-sentinel']) {
      expect(get('Service', n).spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    }
    expect(get('PodDisruptionBudget', 'shop-store').spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: { 'tether.dev/session-store': 'shop' } },
    });
  });

  it('the server config carries min-replicas-to-write and persistence on the pod', () => {
    const conf = get('ConfigMap', 'shop-store').data['valkey.conf'];
    expect(conf).toBe(serverConfig(storeSettingsFor(pool())));
    expect(conf).toMatch(/^min-replicas-to-write 1$/m);
    expect(conf).toMatch(/^min-replicas-max-lag 10$/m);
    expect(conf).toMatch(/^appendonly yes$/m);
  });
});

describe('storeSecretFor', () => {
  it('holds exactly the keys of connection.ts, and parses with its schema', () => {
    const ips = ['10.0.1.1', '10.0.1.2'];
    // biome-ignore lint/suspicious/noExplicitAny: plain object
    const s = storeSecretFor(pool({ enabled: true, writeMode: 'Sync' }), 'pw', ips) as any;
    expect(s.metadata.name).toBe('shop-session-store');
    expect(Object.keys(s.data).sort()).toEqual([...SESSION_STORE_KEYS].sort());
    const values = Object.fromEntries(
      Object.entries(s.data as Record<string, string>).map(([k, v]) => [
        k,
        Buffer.from(v, 'base64').toString(),
      ]),
    );
    expect(values.sentinels).toBe('10.0.1.1:26379,10.0.1.2:26379');
    expect(parseSessionStoreConnection(values)).toEqual({
      sentinels: [
        { host: '10.0.1.1', port: 26379 },
        { host: '10.0.1.2', port: 26379 },
      ],
      masterName: 'web-shop',
      password: 'pw',
      writeMode: 'Sync',
      waitReplicas: 1,
      waitTimeoutMs: 500,
    });
  });

  it('before any Sentinel pod has an IP, `sentinels` is empty (every key still present for the mounts)', () => {
    // biome-ignore lint/suspicious/noExplicitAny: plain object
    const s = storeSecretFor(pool(), 'pw', []) as any;
    expect(s.data.sentinels).toBe('');
    expect(Object.keys(s.data)).toHaveLength(SESSION_STORE_KEYS.length);
  });
});
