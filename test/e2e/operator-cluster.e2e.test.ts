// The operator on the test cluster (issue 8): real Deployments, ReplicaSets,
// EndpointSlices, rollouts and garbage collection; the pod runner starts
// this checkout's test backends and tether-proxy processes for pods. The
// operator runs as a process of this test (inside the cluster's network
// namespace) under exactly operator/rbac.yaml.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apply,
  assertPodAddress,
  cluster,
  listPods,
  type PodJson,
  TETHER_IMAGE,
  testBackendDeployment,
} from './cluster-support.ts';
import { installCrd, type OperatorProcess, operatorIdentity, startOperator } from './operator-harness.ts';
import { eventually, type Identity, kubectl } from './support.ts';

const NS = `opc-${Math.random().toString(36).slice(2, 7)}`;
let id: Identity;
let op: OperatorProcess;
const k = (args: string[]) => kubectl(cluster(), ['-n', NS, ...args]);

interface Pool {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    proxies?: { desired: number; inSync: number };
    endpoints?: { ready: number; draining: number };
    routingTableRevision?: number;
  };
}
const getPool = async (name: string) =>
  JSON.parse((await k(['get', 'sbp', name, '-o', 'json'])).stdout) as Pool;
const readyOf = (p: Pool) => p.status?.conditions?.find((c) => c.type === 'Ready');

/** GET through a proxy pod: status, the endpoint that answered, the affinity cookie set (if any). */
async function via(
  proxyIp: string,
  o: { cookie?: string; xff?: string } = {},
): Promise<{ status: number; endpoint?: string; setCookie?: string; error?: string }> {
  assertPodAddress(proxyIp);
  const res = await fetch(`http://${proxyIp}:8080/`, {
    headers: { ...(o.cookie ? { cookie: o.cookie } : {}), ...(o.xff ? { 'x-forwarded-for': o.xff } : {}) },
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  let endpoint: string | undefined;
  try {
    endpoint = (JSON.parse(text) as { endpoint?: string }).endpoint;
  } catch {
    endpoint = undefined;
  }
  const sc = res.headers.getSetCookie().find((c) => c.startsWith('route='));
  const error =
    res.status === 200
      ? undefined
      : `${res.status} ${res.headers.get('x-tether-error') ?? ''} ${text.slice(0, 200)}`;
  return { status: res.status, endpoint, setCookie: sc?.split(';')[0], ...(error ? { error } : {}) };
}

async function tableOn(
  ip: string,
): Promise<{ revision: number; endpoints: Array<{ id: string; state: string }> } | undefined> {
  assertPodAddress(ip);
  const res = await fetch(`http://${ip}:9901/v1/routing-table`, { signal: AbortSignal.timeout(2_000) });
  return res.ok
    ? ((await res.json()) as { revision: number; endpoints: Array<{ id: string; state: string }> })
    : undefined;
}

/** Running proxy pods of a pool with their IPs. */
async function proxyPods(pool: string): Promise<PodJson[]> {
  return (await listPods(NS, `tether.dev/pool=${pool}`)).filter(
    (p) => !p.metadata.deletionTimestamp && p.status.phase === 'Running' && p.status.podIP,
  );
}

/** Waits until `n` proxy pods of `pool` serve a table with `endpoints` Ready endpoints; returns their IPs. */
async function proxiesServing(
  pool: string,
  n: number,
  endpoints: number,
  timeoutMs = 60_000,
): Promise<string[]> {
  return eventually(
    async () => {
      const pods = await proxyPods(pool);
      if (pods.length !== n) return undefined;
      const ips = pods.map((p) => p.status.podIP as string);
      const tables = await Promise.all(ips.map((ip) => tableOn(ip).catch(() => undefined)));
      const ok = tables.every(
        (t) => t !== undefined && t.endpoints.filter((e) => e.state === 'Ready').length === endpoints,
      );
      return ok ? ips : undefined;
    },
    { timeoutMs, intervalMs: 250, what: `${n} proxies of ${pool} serving ${endpoints} ready endpoints` },
  );
}

function pool(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name, namespace: NS },
    spec: { backend: { service: { name: 'shop', port: 'http' } }, ...spec },
  };
}

/** The flags of this file's operators (the first, and the one that restarts it): short leases so handovers fit a test. */
const OPERATOR_ARGS = [
  `--namespaces=${NS}`,
  `--proxy-image=${TETHER_IMAGE}`,
  '--lease-duration=4s',
  '--renew-deadline=3s',
  '--retry-period=1s',
];

beforeAll(async () => {
  await installCrd();
  await kubectl(cluster(), ['create', 'namespace', NS]);
  id = await operatorIdentity(NS);
  op = await startOperator({
    kubeconfig: id.kubeconfig,
    leaseNamespace: NS,
    identity: 'op-cluster',
    args: OPERATOR_ARGS,
  });
  await apply(...testBackendDeployment('shop', NS, 3, { graceSeconds: 6, args: ['--drain=4'] }));
});

afterAll(async () => {
  await op?.stop();
  await kubectl(cluster(), ['delete', 'namespace', NS, '--wait=false']).catch(() => {});
});

describe('tether-operator on the test cluster', () => {
  let proxies: string[];

  it('Managed pool: the operator creates the proxy Deployment; both proxies get the table; Cookie traffic is sticky through either', async () => {
    await apply(pool('shop', { proxy: { mode: 'Managed', replicas: 2 } }));
    proxies = await proxiesServing('shop', 2, 3, 90_000);
    await eventually(async () => readyOf(await getPool('shop'))?.status === 'True', {
      timeoutMs: 30_000,
      what: 'Ready',
    });
    const [a, b] = proxies as [string, string];
    for (let c = 0; c < 12; c++) {
      const first = await via(a);
      expect(first.status).toBe(200);
      expect(first.setCookie).toBeDefined();
      for (const ip of [a, b, a, b]) {
        const r = await via(ip, { cookie: first.setCookie });
        expect(r.endpoint).toBe(first.endpoint);
      }
    }
  });

  it('ClientIP pool: the same client lands on the same endpoint through both proxies', async () => {
    await apply(
      pool('shop-ip', {
        affinity: {
          type: 'ClientIP',
          clientIP: { ipv4PrefixLength: 32, trustedProxies: ['10.0.0.0/8', '127.0.0.0/8'] },
        },
        proxy: { mode: 'Managed', replicas: 2 },
      }),
    );
    const [a, b] = (await proxiesServing('shop-ip', 2, 3, 90_000)) as [string, string];
    const seen = new Set<string>();
    for (let c = 1; c <= 30; c++) {
      const xff = `203.0.113.${c}`;
      const r1 = await via(a, { xff });
      const r2 = await via(b, { xff });
      expect(r1.status).toBe(200);
      expect(r2.endpoint).toBe(r1.endpoint);
      seen.add(r1.endpoint as string);
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  it('scale up and down: proxies get the new table within seconds; scaling down moves only the clients of removed pods', async () => {
    const [a] = proxies as [string];
    const clients: Array<{ cookie: string; endpoint: string }> = [];
    await k(['scale', 'deployment/shop', '--replicas=5']);
    const t0 = Date.now();
    await proxiesServing('shop', 2, 5, 60_000);
    process.stderr.write(
      `[e2e] scale 3→5: both proxies hold 5 endpoints ${Date.now() - t0} ms after kubectl scale\n`,
    );
    for (let c = 0; c < 40; c++) {
      const r = await via(a);
      clients.push({ cookie: r.setCookie as string, endpoint: r.endpoint as string });
    }
    await k(['scale', 'deployment/shop', '--replicas=3']);
    await proxiesServing('shop', 2, 3, 60_000);
    const remaining = new Set(
      (await listPods(NS, 'app=shop'))
        .filter((p) => !p.metadata.deletionTimestamp)
        .map((p) => p.metadata.name),
    );
    let moved = 0;
    for (const c of clients) {
      const r = await eventually(async () => {
        const x = await via(a, { cookie: c.cookie });
        return x.status === 200 ? x : undefined;
      });
      if (remaining.has(c.endpoint)) expect(r.endpoint, 'a client of a surviving pod stays').toBe(c.endpoint);
      else moved++;
    }
    process.stderr.write(
      `[e2e] scale 5→3: ${moved}/${clients.length} clients moved (those of the 2 removed pods)\n`,
    );
  });

  it('rollout restart under steady cookie traffic: 0 failed GETs; draining pods keep their clients', async () => {
    const [a, b] = proxies as [string, string];
    const clients: Array<{ cookie?: string; endpoint?: string; moves: number }> = [];
    for (let c = 0; c < 20; c++) {
      const r = await via(c % 2 ? a : b);
      clients.push({ cookie: r.setCookie, endpoint: r.endpoint, moves: 0 });
    }
    await k(['rollout', 'restart', 'deployment/shop']);
    let failed = 0;
    const failures: string[] = [];
    let requests = 0;
    const deadline = Date.now() + 90_000;
    let done = false;
    while (!done && Date.now() < deadline) {
      for (const [i, c] of clients.entries()) {
        const r = await via(i % 2 ? a : b, { cookie: c.cookie }).catch(
          (err: Error) => ({ status: 0, error: `fetch: ${err.message}` }) as const,
        );
        requests++;
        if (r.status !== 200) {
          failed++;
          failures.push(`${c.endpoint}: ${r.error}`);
          continue;
        }
        if ('endpoint' in r && r.endpoint !== c.endpoint) {
          c.moves++;
          c.endpoint = r.endpoint;
        }
        if ('setCookie' in r && r.setCookie) c.cookie = r.setCookie;
      }
      const status = (
        await k(['rollout', 'status', 'deployment/shop', '--timeout=1s']).catch(() => ({ stdout: '' }))
      ).stdout;
      const pods = await listPods(NS, 'app=shop');
      done = status.includes('successfully rolled out') && pods.every((p) => !p.metadata.deletionTimestamp);
    }
    expect(done, 'rollout finished').toBe(true);
    const moved = clients.filter((c) => c.moves > 0).length;
    process.stderr.write(
      `[e2e] rollout restart: ${requests} GETs, ${failed} failed, ${moved}/${clients.length} clients moved\n`,
    );
    expect(failures).toEqual([]);
    // Every old pod went away, so every client moved exactly once (at its pod's end, not before).
    expect(clients.every((c) => c.moves <= 1)).toBe(true);
  });

  it('no endpoints: Ready=False NoReadyEndpoints and the proxies answer 503; scaling back recovers', async () => {
    await k(['scale', 'deployment/shop', '--replicas=0']);
    await eventually(async () => readyOf(await getPool('shop'))?.reason === 'NoReadyEndpoints', {
      timeoutMs: 60_000,
      what: 'NoReadyEndpoints',
    });
    await eventually(async () => (await via(proxies[0] as string)).status === 503, {
      timeoutMs: 30_000,
      what: '503',
    });
    await k(['scale', 'deployment/shop', '--replicas=3']);
    await proxiesServing('shop', 2, 3, 90_000);
  });

  it('a deleted proxy pod is recreated by its Deployment and gets the current table', async () => {
    const pods = await proxyPods('shop');
    await k(['delete', 'pod', pods[0]?.metadata.name as string, '--wait=false']);
    const ips = await proxiesServing('shop', 2, 3, 90_000);
    const rev = (await getPool('shop')).status?.routingTableRevision;
    const tables = await Promise.all(ips.map(tableOn));
    expect(tables.map((t) => t?.revision)).toEqual([rev, rev]);
    proxies = ips;
  });

  it('Sidecar mode: pods labelled for the pool with the proxy container receive the table', async () => {
    await apply(pool('side', { proxy: { mode: 'Sidecar' } }));
    await eventually(async () => (await k(['get', 'secret', 'side-tether'])).stdout.includes('side-tether'), {
      timeoutMs: 30_000,
      what: 'Secret',
    });
    await apply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'side-app', namespace: NS },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'side-app' } },
        template: {
          metadata: { labels: { app: 'side-app', 'tether.dev/pool': 'side' } },
          spec: {
            containers: [
              {
                name: 'proxy',
                image: TETHER_IMAGE,
                command: ['tether-proxy'],
                args: [
                  '--listen=$(POD_IP):8080',
                  '--admin-listen=$(POD_IP):9901',
                  '--admin-token-file=/etc/tether/admin-token',
                  '--cookie-keys-file=/etc/tether/cookie-keys',
                ],
                env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
                ports: [{ name: 'tether-admin', containerPort: 9901 }],
                volumeMounts: [{ name: 'tether', mountPath: '/etc/tether', readOnly: true }],
              },
            ],
            volumes: [{ name: 'tether', secret: { secretName: 'side-tether' } }],
          },
        },
      },
    });
    const ips = await proxiesServing('side', 2, 3, 90_000);
    expect(ips).toHaveLength(2);
    await eventually(async () => (await getPool('side')).status?.proxies?.inSync === 2, { what: 'inSync 2' });
    expect(
      (await k(['get', 'deployment', 'side-proxy']).catch((e: Error) => ({ stdout: e.message }))).stdout,
    ).toMatch(/NotFound|not found/);
  });

  it('an operator restart does not lower the revision', async () => {
    const rev = (await getPool('shop')).status?.routingTableRevision ?? 0;
    await op.stop();
    op = await startOperator({
      kubeconfig: id.kubeconfig,
      leaseNamespace: NS,
      identity: 'op-cluster-2',
      args: OPERATOR_ARGS,
    });
    await eventually(async () => (await op.metric('tether_operator_leader')) === 1, {
      timeoutMs: 20_000,
      what: 'leader',
    });
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await getPool('shop')).status?.routingTableRevision).toBeGreaterThanOrEqual(rev);
    for (const ip of proxies) expect((await tableOn(ip))?.revision).toBeGreaterThanOrEqual(rev);
  });

  it('deleting the pool: the garbage collector removes its Deployment, Service and Secret', async () => {
    await k(['delete', 'sbp', 'shop-ip']);
    await eventually(
      async () => {
        const out = (await k(['get', 'deployment,service,secret', '-o', 'name'])).stdout;
        return !/shop-ip-proxy|shop-ip-tether/.test(out);
      },
      { timeoutMs: 60_000, what: 'owned objects gone' },
    );
  });
});
