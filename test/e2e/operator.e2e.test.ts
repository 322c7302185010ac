// The operator against a real kube-apiserver (etcd + apiserver only: no
// controller-manager, so no Deployment makes pods and no EndpointSlice
// controller runs). Proxy pods and EndpointSlices are made by hand here:
// Pod objects whose status points at real tether-proxy processes on
// loopback, slices with TEST-NET-2 addresses (never dialled). The operator
// runs under exactly operator/rbac.yaml, as a minted identity.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProxyProcess, servedRevision, startProxy } from '../helpers/proxy-process.ts';
import {
  endpointSlice,
  installCrd,
  leaderOf,
  type OperatorProcess,
  operatorIdentity,
  poolManifest,
  startOperator,
} from './operator-harness.ts';
import { apiError, controlPlane, eventually, type Identity, kubeConfig, kubectl } from './support.ts';

interface PoolObject {
  metadata: { generation: number; uid: string };
  spec: Record<string, unknown> & { affinity: { cookie: { name: string } } };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    endpoints?: { ready: number; draining: number };
    proxies?: { desired: number; inSync: number };
    routingTableRevision?: number;
  };
}

const NS = `op-e2e-${Math.random().toString(36).slice(2, 7)}`;
let dir: string;
let id: Identity;
let op: OperatorProcess;
const proxies: ProxyProcess[] = [];
const cp = () => controlPlane();

const k = (args: string[], input?: string) =>
  kubectl(cp(), ['-n', NS, ...args], input === undefined ? {} : { input });
const apply = (obj: object) => k(['apply', '-f', '-'], JSON.stringify(obj));
const getPool = async (name: string): Promise<PoolObject> =>
  JSON.parse((await k(['get', 'sbp', name, '-o', 'json'])).stdout) as PoolObject;
const ready = (p: PoolObject) => p.status?.conditions?.find((c) => c.type === 'Ready');
const tableOf = async (p: ProxyProcess) =>
  (await (await fetch(`${p.adminUrl}/v1/routing-table`)).json()) as {
    revision: number;
    endpoints: Array<{ id: string; state: string }>;
  };

/** A Pod object standing for a proxy process: Running, podIP 127.0.0.1, its admin port named tether-admin. */
async function proxyPod(name: string, pool: string, p: ProxyProcess): Promise<void> {
  await apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'tether.dev/pool': pool } },
    spec: {
      nodeName: 'e2e-fake-node',
      containers: [
        {
          name: 'proxy',
          image: 'tether.dev/proxy:test',
          ports: [{ name: 'tether-admin', containerPort: Number(new URL(p.adminUrl).port) }],
        },
      ],
    },
  });
  await k([
    'patch',
    'pod',
    name,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } }),
  ]);
}

/** Starts a proxy that reads the pool's admin token and cookie keys from files written from its Secret. */
async function startPoolProxy(pool: string): Promise<ProxyProcess> {
  const secret = await eventually(
    async () =>
      (
        await kubeConfig()
          .makeApiClient(CoreV1Api)
          .readNamespacedSecret({ name: `${pool}-tether`, namespace: NS })
      ).data,
    { timeoutMs: 30_000, what: `Secret ${pool}-tether` },
  );
  const token = join(dir, `${pool}-token`);
  const keys = join(dir, `${pool}-keys`);
  writeFileSync(token, Buffer.from(secret['admin-token'] as string, 'base64'));
  writeFileSync(keys, Buffer.from(secret['cookie-keys'] as string, 'base64'));
  const p = await startProxy(['--admin-token-file', token, '--cookie-keys-file', keys]);
  proxies.push(p);
  return p;
}

async function revisionsOn(ps: ProxyProcess[]): Promise<Array<number | undefined>> {
  return Promise.all(ps.map(servedRevision));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-op-e2e-'));
  await installCrd();
  await kubectl(cp(), ['create', 'namespace', NS]);
  id = await operatorIdentity(NS);
  op = await startOperator({
    kubeconfig: id.kubeconfig,
    leaseNamespace: NS,
    identity: 'op-a',
    // Short lease timings and watch timeout: the tests see a handover and server-closed watches in seconds.
    args: [
      '--lease-duration=4s',
      '--renew-deadline=3s',
      '--retry-period=1s',
      '--watch-timeout=2s',
      `--namespaces=${NS}`,
    ],
  });
});

afterAll(async () => {
  await op?.stop();
  await Promise.all(proxies.map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
  await kubectl(cp(), ['delete', 'namespace', NS, '--wait=false']).catch(() => {});
});

describe('StickyBackendPool CRD from crds/', () => {
  it('applies defaults, answers to the short name, shows printer columns', async () => {
    await apply(poolManifest('defaults', { proxy: { mode: 'Sidecar' } }));
    const p = await getPool('defaults');
    expect(p.spec.affinity.cookie.name).toBe('route');
    expect(p.spec).toMatchObject({ onEndpointFailure: 'Repin', draining: { timeout: '5m' } });
    const { stdout } = await k(['get', 'sbp', 'defaults']);
    expect(stdout.split('\n')[0]).toMatch(
      /NAME\s+AFFINITY\s+READY-ENDPOINTS\s+PROXIES-IN-SYNC\s+READY\s+AGE/,
    );
    expect((await kubectl(cp(), ['get', 'tether', '-n', NS])).stdout).toContain('defaults');
  });

  it.each([
    {
      desc: 'both service and endpoints',
      spec: { backend: { service: { name: 's', port: 80 }, endpoints: [{ address: '10.0.0.1', port: 80 }] } },
      want: 'exactly one of backend.service and backend.endpoints',
    },
    { desc: 'neither', spec: { backend: {} }, want: 'exactly one of backend.service and backend.endpoints' },
    {
      desc: 'SameSite None without Secure',
      spec: {
        backend: { service: { name: 's', port: 80 } },
        affinity: { cookie: { sameSite: 'None', secure: 'Never' } },
      },
      want: 'sameSite None needs secure',
    },
    {
      desc: 'idle timeout under 1s',
      spec: { backend: { service: { name: 's', port: 80 } }, affinity: { cookie: { idleTimeout: '500ms' } } },
      want: 'idleTimeout must be at least 1s',
    },
    {
      desc: 'Learn without a session store',
      spec: { backend: { service: { name: 's', port: 80 } }, affinity: { type: 'Learn' } },
      want: 'Learn needs sessionStore.enabled',
    },
    {
      desc: 'health check timeout not below interval',
      spec: {
        backend: { service: { name: 's', port: 80 } },
        healthCheck: { active: { interval: '1s', timeout: '1s' } },
      },
      want: 'timeout must be shorter than interval',
    },
    {
      desc: 'balanceFactor below 100',
      spec: { backend: { service: { name: 's', port: 80 } }, balanceFactor: 50 },
      want: 'balanceFactor',
    },
    {
      desc: 'unknown affinity type',
      spec: { backend: { service: { name: 's', port: 80 } }, affinity: { type: 'RoundRobin' } },
      want: 'affinity.type',
    },
  ])('refuses $desc at apply time', async ({ spec, want }) => {
    const err = await apiError(() =>
      k(['apply', '-f', '-'], JSON.stringify({ ...poolManifest('bad'), spec })),
    );
    expect(err.body).toContain(want);
  });
});

describe('tether-operator (apiserver only; hand-made pods and slices)', () => {
  let a: ProxyProcess;
  let b: ProxyProcess;

  it('Managed pool: applies the proxy Deployment, Service and Secret with owner references', async () => {
    await apply(poolManifest('shop', { proxy: { mode: 'Managed', replicas: 2 } }));
    const pool = await getPool('shop');
    const owned = await eventually(
      async () => {
        const d = JSON.parse(
          (await k(['get', 'deployment', 'shop-proxy', '-o', 'json', '--show-managed-fields'])).stdout,
        );
        const s = JSON.parse((await k(['get', 'service', 'shop-proxy', '-o', 'json'])).stdout);
        const sec = JSON.parse((await k(['get', 'secret', 'shop-tether', '-o', 'json'])).stdout);
        return { d, s, sec };
      },
      { timeoutMs: 30_000, what: 'owned objects' },
    );
    for (const o of [owned.d, owned.s, owned.sec]) {
      expect(o.metadata.ownerReferences).toEqual([
        expect.objectContaining({
          kind: 'StickyBackendPool',
          name: 'shop',
          uid: pool.metadata.uid,
          controller: true,
        }),
      ]);
    }
    expect(owned.d.spec.replicas).toBe(2);
    expect(owned.d.metadata.managedFields.map((f: { manager: string }) => f.manager)).toContain(
      'tether-operator',
    );
  });

  it('pushes the table to every proxy pod of the pool and reports Ready', async () => {
    [a, b] = await Promise.all([startPoolProxy('shop'), startPoolProxy('shop')]);
    await proxyPod('shop-proxy-a', 'shop', a);
    await proxyPod('shop-proxy-b', 'shop', b);
    await apply(
      endpointSlice('shop-1', 'shop', [
        { pod: 'shop-0', ip: '198.51.100.10' },
        { pod: 'shop-1', ip: '198.51.100.11' },
        { pod: 'shop-2', ip: '198.51.100.12' },
      ]),
    );
    const pool = await eventually(
      async () => {
        const p = await getPool('shop');
        return ready(p)?.status === 'True' && p.status?.proxies?.inSync === 2 ? p : undefined;
      },
      { timeoutMs: 30_000, what: 'pool Ready with 2 proxies in sync' },
    );
    expect(pool.status).toMatchObject({
      observedGeneration: pool.metadata.generation,
      endpoints: { ready: 3, draining: 0 },
      proxies: { desired: 2, inSync: 2 },
    });
    const t = await tableOf(a);
    expect(t.revision).toBe(pool.status?.routingTableRevision);
    expect(t.endpoints.map((e) => e.id)).toEqual(['shop-0', 'shop-1', 'shop-2']);
    expect(await revisionsOn([a, b])).toEqual([t.revision, t.revision]);
  });

  it('a changed EndpointSlice reaches the proxies as a higher revision; terminating endpoints drain', async () => {
    const before = (await tableOf(a)).revision;
    await apply(
      endpointSlice('shop-1', 'shop', [
        { pod: 'shop-0', ip: '198.51.100.10', ready: false, serving: true, terminating: true },
        { pod: 'shop-1', ip: '198.51.100.11' },
        { pod: 'shop-2', ip: '198.51.100.12', ready: false, serving: false, terminating: true },
        { pod: 'shop-3', ip: '198.51.100.13' },
      ]),
    );
    const t = await eventually(
      async () => {
        const x = await tableOf(b);
        return x.revision > before ? x : undefined;
      },
      { timeoutMs: 15_000, what: 'a new revision' },
    );
    expect(t.endpoints.map((e) => `${e.id}:${e.state}`)).toEqual([
      'shop-0:Draining',
      'shop-1:Ready',
      'shop-3:Ready',
    ]);
    await eventually(async () => (await getPool('shop')).status?.endpoints?.draining === 1, {
      what: 'status counts',
    });
  });

  it('an idle resync keeps the revision (no push without a change)', async () => {
    const rev = (await tableOf(a)).revision;
    await k(['annotate', 'sbp', 'shop', `touched=${Date.now()}`, '--overwrite']);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await revisionsOn([a, b])).toEqual([rev, rev]);
  });

  it('no ready endpoints: Ready=False NoReadyEndpoints, and the proxies answer 503', async () => {
    await apply(endpointSlice('shop-1', 'shop', []));
    await eventually(async () => ready(await getPool('shop'))?.reason === 'NoReadyEndpoints', {
      timeoutMs: 15_000,
      what: 'NoReadyEndpoints',
    });
    await eventually(async () => (await tableOf(a)).endpoints.length === 0, {
      what: 'empty table on the proxy',
    });
    expect((await fetch(`${a.url}/`)).status).toBe(503);
  });

  it('an invalid spec the CRD lets through is Ready=False/InvalidSpec naming the field; fixing it recovers', async () => {
    await apply(endpointSlice('shop-1', 'shop', [{ pod: 'shop-1', ip: '198.51.100.11' }]));
    await eventually(async () => ready(await getPool('shop'))?.status === 'True', {
      timeoutMs: 15_000,
      what: 'Ready',
    });
    const revBefore = (await getPool('shop')).status?.routingTableRevision ?? 0;
    await k([
      'patch',
      'sbp',
      'shop',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { affinity: { clientIP: { trustedProxies: ['10.0.0.0/33'] } } } }),
    ]);
    const bad = await eventually(
      async () => {
        const p = await getPool('shop');
        return ready(p)?.reason === 'InvalidSpec' && p.status?.observedGeneration === p.metadata.generation
          ? p
          : undefined;
      },
      { timeoutMs: 15_000, what: 'InvalidSpec' },
    );
    expect(ready(bad)?.message).toContain('spec.affinity.clientIP.trustedProxies.0');
    expect(bad.status?.routingTableRevision).toBe(revBefore);
    // No hot requeue: the operator does not keep reconciling an invalid pool.
    const count = async () => op.metric('tether_operator_reconciles_total', { result: 'invalid' });
    const n1 = await count();
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await count()) ?? 0).toBeLessThanOrEqual((n1 ?? 0) + 2);
    await k([
      'patch',
      'sbp',
      'shop',
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { affinity: { clientIP: { trustedProxies: [] } } } }),
    ]);
    await eventually(async () => ready(await getPool('shop'))?.status === 'True', {
      timeoutMs: 15_000,
      what: 'recovered',
    });
    const events = (await k(['get', 'events', '--field-selector', 'involvedObject.name=shop', '-o', 'json']))
      .stdout;
    expect(events).toContain('InvalidSpec');
  });

  it('keeps working through watches the apiserver closes (--watch-timeout=2s)', async () => {
    await eventually(
      async () =>
        ((await op.metric('tether_operator_watch_restarts_total', {
          resource: 'endpointslices',
          reason: 'closed',
        })) ?? 0) >= 3,
      {
        timeoutMs: 20_000,
        what: 'three server-closed watches',
      },
    );
    const before = (await tableOf(a)).revision;
    await apply(endpointSlice('shop-1', 'shop', [{ pod: 'shop-7', ip: '198.51.100.17' }]));
    const t = await eventually(
      async () => {
        const x = await tableOf(a);
        return x.revision > before ? x : undefined;
      },
      { timeoutMs: 15_000, what: 'change after watch restarts' },
    );
    expect(t.endpoints.map((e) => e.id)).toEqual(['shop-7']);
    const ready200 = await fetch(`${op.metricsUrl}/readyz`);
    expect(ready200.status).toBe(200);
  });

  it('a recreated proxy pod gets the current table', async () => {
    const rev = (await tableOf(a)).revision;
    await k(['delete', 'pod', 'shop-proxy-b', '--grace-period=0', '--force']);
    await b.stop();
    b = await startPoolProxy('shop');
    await proxyPod('shop-proxy-b2', 'shop', b);
    await eventually(async () => (await servedRevision(b)) === rev, {
      timeoutMs: 15_000,
      what: 'table on the new proxy',
    });
  });

  it('an operator restart does not lower the revision; the next change goes higher', async () => {
    const rev = (await getPool('shop')).status?.routingTableRevision ?? 0;
    await op.stop();
    op = await startOperator({
      kubeconfig: id.kubeconfig,
      leaseNamespace: NS,
      identity: 'op-a2',
      args: ['--lease-duration=4s', '--renew-deadline=3s', '--retry-period=1s', `--namespaces=${NS}`],
    });
    await leaderOf([op]);
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await getPool('shop')).status?.routingTableRevision).toBe(rev);
    expect(await revisionsOn([a, b])).toEqual([rev, rev]);
    await apply(endpointSlice('shop-1', 'shop', [{ pod: 'shop-8', ip: '198.51.100.18' }]));
    await eventually(async () => (await revisionsOn([a, b])).every((r) => (r ?? 0) > rev), {
      timeoutMs: 15_000,
      what: 'a higher revision',
    });
  });

  it('two operators: one leads; SIGKILL the leader and the other takes over within the lease and reconciles', async () => {
    const other = await startOperator({
      kubeconfig: id.kubeconfig,
      leaseNamespace: NS,
      identity: 'op-b',
      args: ['--lease-duration=4s', '--renew-deadline=3s', '--retry-period=1s', `--namespaces=${NS}`],
    });
    try {
      const first = await leaderOf([op, other]);
      const second = first === op ? other : op;
      expect(await second.metric('tether_operator_leader')).toBe(0);
      const rev = (await tableOf(a)).revision;
      const killedAt = Date.now();
      await first.stop('SIGKILL');
      await leaderOf([second], 15_000);
      const handover = Date.now() - killedAt;
      // Lease 4 s + one retry period (1 s, jittered ≤ 1.2×) + polling slack.
      expect(handover).toBeLessThan(8_000);
      await apply(endpointSlice('shop-1', 'shop', [{ pod: 'shop-9', ip: '198.51.100.19' }]));
      await eventually(async () => (await revisionsOn([a, b])).every((r) => (r ?? 0) > rev), {
        timeoutMs: 15_000,
        what: 'the new leader pushes',
      });
      op = second;
    } finally {
      if (op !== other) await other.stop();
    }
  });

  it('the Secret is created once: a reconcile never regenerates the token', async () => {
    const token1 = readFileSync(join(dir, 'shop-token'), 'utf8');
    const s = JSON.parse((await k(['get', 'secret', 'shop-tether', '-o', 'json'])).stdout);
    expect(Buffer.from(s.data['admin-token'], 'base64').toString()).toBe(token1);
  });
});
