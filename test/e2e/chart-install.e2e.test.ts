/**
 * The user's path, for real: `helm install` of charts/tether into the test
 * cluster. The operator's pods are started by the pod runner as real
 * `tether-operator` processes (image localhost/tether:dev maps to this
 * checkout, the image's default command is the operator), under the chart's
 * own ServiceAccount RBAC: the operator's kubeconfig is a client certificate
 * for `system:serviceaccount:<ns>:tether` (the test cluster mints no
 * ServiceAccount tokens), mounted through the chart's extraVolumes. Then: one
 * leader, a pool applied afterwards is reconciled, sticky traffic through the
 * managed proxies, a real Prometheus scraping the targets the ServiceMonitor
 * and PodMonitor select, `helm upgrade` rolling the operator, and
 * `helm uninstall` keeping the CRD and the pools.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { freePort } from '../../tools/free-port.ts';
import { metricsComplaints } from '../helpers/promtool.ts';
import {
  CHART,
  installMonitoringCrds,
  type K8sObject,
  metricValue,
  only,
  podMonitorJob,
  renderChart,
  serviceMonitorJob,
  setFlags,
} from './chart-support.ts';
import {
  apply,
  assertPodAddress,
  cluster,
  listPods,
  type PodJson,
  podLog,
  testBackendDeployment,
} from './cluster-support.ts';
import { eventually, helm, kubectl, mintIdentity } from './support.ts';

const RELEASE = 'tether';
const IMAGE = { repository: 'localhost/tether', tag: 'dev' };
const OPERATOR_SELECTOR = `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=operator`;
const children = new ChildProcesses();
process.once('exit', () => children.killAllNow());

let ns: string;
let dir: string;
let valuesFile: string;

/** GET from a pod IP (inside the test cluster's network namespace only). */
async function podGet(
  ip: string,
  port: number,
  path = '/',
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; setCookie: string | null }> {
  assertPodAddress(ip);
  const res = await fetch(`http://${ip}:${port}${path}`, { headers, signal: AbortSignal.timeout(3_000) });
  return { status: res.status, text: await res.text(), setCookie: res.headers.get('set-cookie') };
}

/** Running operator pods of the release, not being deleted, with an IP. */
async function operatorPods(): Promise<PodJson[]> {
  return (await listPods(ns, OPERATOR_SELECTOR)).filter(
    (p) => p.status.phase === 'Running' && p.status.podIP && !p.metadata.deletionTimestamp,
  );
}

/** The operator pods' /metrics pages, by pod name ('' when a pod does not answer yet). */
async function operatorPages(pods: PodJson[]): Promise<Map<string, string>> {
  const pages = await Promise.all(
    pods.map((p) =>
      podGet(p.status.podIP!, 8080, '/metrics')
        .then((r) => (r.status === 200 ? r.text : ''))
        .catch(() => ''),
    ),
  );
  return new Map(pods.map((p, i) => [p.metadata.name, pages[i]!]));
}

/** Waits until `want` operator pods answer /readyz and exactly one reports tether_operator_leader 1; returns its name. */
async function waitForLeader(want: number, podFilter: (p: PodJson) => boolean = () => true): Promise<string> {
  return eventually(
    async () => {
      const pods = (await operatorPods()).filter(podFilter);
      if (pods.length !== want) return undefined;
      const ready = await Promise.all(
        pods.map((p) =>
          podGet(p.status.podIP!, 8080, '/readyz')
            .then((r) => r.status === 200)
            .catch(() => false),
        ),
      );
      if (!ready.every(Boolean)) return undefined;
      const pages = await operatorPages(pods);
      const leaders = [...pages].filter(([, page]) => metricValue(page, 'tether_operator_leader') === 1);
      const followers = [...pages].filter(([, page]) => metricValue(page, 'tether_operator_leader') === 0);
      return leaders.length === 1 && followers.length === want - 1 ? leaders[0]![0] : undefined;
    },
    { timeoutMs: 90_000, intervalMs: 500, what: `${want} operator pods ready with one leader` },
  );
}

/** The pool as the apiserver has it. */
// biome-ignore lint/suspicious/noExplicitAny: kubectl's JSON output
async function getPool(name: string): Promise<any> {
  return JSON.parse((await kubectl(cluster(), ['get', 'sbp', name, '-n', ns, '-o', 'json'])).stdout);
}

/** Waits until the pool's status says Ready=True with `endpoints` ready endpoints and every proxy in sync. */
async function waitForReadyPool(name: string, endpoints: number): Promise<void> {
  await eventually(
    async () => {
      const pool = await getPool(name).catch(() => undefined);
      const ready = pool?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');
      return (
        ready?.status === 'True' &&
        pool.status.observedGeneration === pool.metadata.generation &&
        pool.status.endpoints?.ready === endpoints &&
        pool.status.proxies?.desired === pool.status.proxies?.inSync &&
        pool.status.proxies?.inSync > 0
      );
    },
    { timeoutMs: 90_000, intervalMs: 500, what: `pool ${name} Ready with ${endpoints} endpoints` },
  );
}

/** Running managed proxy pods of a pool that answer /readyz (they hold a table). */
async function readyProxies(pool: string, want: number): Promise<PodJson[]> {
  return eventually(
    async () => {
      const pods = (await listPods(ns, `tether.dev/pool=${pool},app.kubernetes.io/name=tether-proxy`)).filter(
        (p) => p.status.phase === 'Running' && p.status.podIP && !p.metadata.deletionTimestamp,
      );
      if (pods.length !== want) return undefined;
      const ok = await Promise.all(
        pods.map((p) =>
          podGet(p.status.podIP!, 9901, '/readyz')
            .then((r) => r.status === 200)
            .catch(() => false),
        ),
      );
      return ok.every(Boolean) ? pods : undefined;
    },
    { timeoutMs: 90_000, intervalMs: 500, what: `${want} proxies of ${pool} holding a table` },
  );
}

/**
 * Ten clients through the proxies: each client's first answer sets the
 * cookie, its next requests (alternating between the proxies) all reach the
 * endpoint of the first one. @returns the endpoint each client was pinned to.
 */
async function stickyClients(proxies: PodJson[], clients = 10, requests = 6): Promise<string[]> {
  const pinned: string[] = [];
  for (let c = 0; c < clients; c++) {
    const first = await podGet(proxies[0]!.status.podIP!, 8080);
    expect(first.status).toBe(200);
    expect(first.setCookie).toMatch(/^route=/);
    const cookie = first.setCookie!.split(';')[0]!;
    const endpoint = (JSON.parse(first.text) as { endpoint: string }).endpoint;
    for (let i = 0; i < requests; i++) {
      const via = proxies[i % proxies.length]!;
      const r = await podGet(via.status.podIP!, 8080, '/', { cookie });
      expect(r.status).toBe(200);
      expect(
        (JSON.parse(r.text) as { endpoint: string }).endpoint,
        `client ${c} via ${via.metadata.name}`,
      ).toBe(endpoint);
    }
    pinned.push(endpoint);
  }
  return pinned;
}

const poolManifest = (name: string) => ({
  apiVersion: 'tether.dev/v1alpha1',
  kind: 'StickyBackendPool',
  metadata: { name, namespace: ns },
  spec: {
    backend: { service: { name: 'shop', port: 'http' } },
    affinity: { type: 'Cookie' },
    proxy: { mode: 'Managed', replicas: 2 },
  },
});

beforeAll(async () => {
  const c = cluster();
  ns = `chart-install-${Math.random().toString(36).slice(2, 8)}`;
  dir = mkdtempSync(join(tmpdir(), 'tether-chart-install-'));
  await kubectl(c, ['create', 'namespace', ns]);
  await installMonitoringCrds();

  // The CRD may exist already, applied with kubectl by another e2e file:
  // adopt it into the release the way Helm documents it.
  const crd = 'crd/stickybackendpools.tether.dev';
  if ((await kubectl(c, ['get', crd, '--ignore-not-found', '-o', 'name'])).stdout.trim() !== '') {
    await kubectl(c, ['label', crd, 'app.kubernetes.io/managed-by=Helm', '--overwrite']);
    await kubectl(c, [
      'annotate',
      crd,
      `meta.helm.sh/release-name=${RELEASE}`,
      `meta.helm.sh/release-namespace=${ns}`,
      '--overwrite',
    ]);
  }

  const id = await mintIdentity(c, {
    user: `system:serviceaccount:${ns}:${RELEASE}`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`],
  });
  await kubectl(c, [
    'create',
    'secret',
    'generic',
    'operator-kubeconfig',
    '-n',
    ns,
    `--from-file=kubeconfig=${id.kubeconfig}`,
  ]);
  valuesFile = join(dir, 'values.yaml');
  writeFileSync(
    valuesFile,
    stringify({
      image: IMAGE,
      operator: {
        extraArgs: ['--kubeconfig=/var/run/tether/kubeconfig', '--resync=30s'],
        extraVolumes: [{ name: 'kubeconfig', secret: { secretName: 'operator-kubeconfig' } }],
        extraVolumeMounts: [{ name: 'kubeconfig', mountPath: '/var/run/tether', readOnly: true }],
      },
      metrics: { serviceMonitor: { enabled: true }, podMonitor: { enabled: true } },
      prometheusRule: { enabled: true },
    }),
  );
  await apply(...testBackendDeployment('shop', ns, 3));
}, 180_000);

afterAll(async () => {
  await children.stopAll();
  await helm(cluster(), ['uninstall', RELEASE, '-n', ns, '--ignore-not-found']).catch(() => undefined);
  // Wait for the namespace to go (bounded), so later e2e files' operators,
  // which watch every namespace, do not meet this test's pools and proxies.
  await kubectl(cluster(), ['delete', 'namespace', ns, '--timeout=90s'], { timeoutMs: 100_000 }).catch(
    () => undefined,
  );
  rmSync(dir, { recursive: true, force: true });
});

describe('helm install charts/tether into the test cluster', () => {
  let leader: string;
  let firstPods: string[];

  it('installs; the operator pods run as real processes under the chart RBAC and one becomes leader', async () => {
    const { stdout } = await helm(cluster(), ['install', RELEASE, CHART, '-n', ns, '-f', valuesFile]);
    expect(stdout).toMatch(/STATUS: deployed/);
    expect(stdout).toMatch(/NOTES:/);
    leader = await waitForLeader(2);
    const pods = await operatorPods();
    firstPods = pods.map((p) => p.metadata.name).sort();
    const lease = JSON.parse(
      (await kubectl(cluster(), ['get', 'lease', RELEASE, '-n', ns, '-o', 'json'])).stdout,
    );
    expect(lease.spec.holderIdentity).toBe(leader);
    const log = podLog(pods.find((p) => p.metadata.name === leader)!.metadata, 'operator');
    expect(log).toMatch(/became leader/);
  });

  it('reconciles a pool applied afterwards; sticky traffic flows through the managed proxies', async () => {
    await apply(poolManifest('shop'));
    await waitForReadyPool('shop', 3);
    const proxies = await readyProxies('shop', 2);
    const deployment = JSON.parse(
      (await kubectl(cluster(), ['get', 'deployment', 'shop-proxy', '-n', ns, '-o', 'json'])).stdout,
    );
    expect(deployment.spec.template.spec.containers[0].image).toBe(`${IMAGE.repository}:${IMAGE.tag}`);
    const pinned = await stickyClients(proxies);
    expect(new Set(pinned).size).toBeGreaterThan(1); // ten clients spread over the three endpoints
  });

  it('a real Prometheus scrapes the ServiceMonitor and PodMonitor targets; the request counter grows', async () => {
    const c = cluster();
    const { objects } = await renderChart(['-f', valuesFile], { release: RELEASE, namespace: ns });
    const jobs = [
      await serviceMonitorJob(c, only(objects, 'ServiceMonitor')),
      await podMonitorJob(c, only(objects, 'PodMonitor')),
    ];
    expect(jobs[0]!.static_configs).toHaveLength(2); // both operator pods
    expect(jobs[1]!.static_configs.filter((s) => s.labels.namespace === ns)).toHaveLength(2); // both proxies
    const port = await freePort();
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      stringify({ global: { scrape_interval: '1s', evaluation_interval: '1s' }, scrape_configs: jobs }),
    );
    children.spawn('prometheus', 'prometheus', [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ]);
    const query = async (
      expr: string,
    ): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await r.json()) as {
        data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      };
      return body.data.result;
    };
    const pool = `${ns}/shop`;
    const total = async () =>
      Number((await query(`sum(tether_proxy_requests_total{pool="${pool}"})`))[0]?.value[1] ?? -1);
    const before = await eventually(
      async () => {
        // The PodMonitor selects proxies in every namespace: count this test's.
        const up = await query(
          `up{job=~"serviceMonitor/.*"} or up{job=~"podMonitor/.*",namespace="${ns}"}`,
        ).catch(() => []);
        if (up.length !== 4 || up.some((s) => s.value[1] !== '1')) return undefined;
        const t = await total();
        return t >= 0 ? t : undefined;
      },
      {
        timeoutMs: 60_000,
        intervalMs: 500,
        what: 'Prometheus: 4 targets up and the request counter scraped',
      },
    );
    await stickyClients(await readyProxies('shop', 2), 5, 4);
    await eventually(async () => (await total()) >= before + 5 * 5, {
      timeoutMs: 30_000,
      intervalMs: 500,
      what: `the request counter of ${pool} to grow by 25`,
    });
    expect(Number((await query('sum(tether_operator_leader)'))[0]?.value[1])).toBe(1);
    const revisions = await query(`tether_proxy_routing_table_revision{pool="${pool}"}`);
    expect(revisions).toHaveLength(2);
    expect(new Set(revisions.map((r) => r.value[1])).size).toBe(1);
  });

  it('promtool check metrics accepts the operator /metrics', async () => {
    const pages = await operatorPages(await operatorPods());
    expect(pages.size).toBe(2);
    // The leader's page has every labelled series (it reconciled and pushed); the follower's too is checked.
    expect(pages.get(leader)).toMatch(/tether_operator_reconciles_total\{result="success"\}/);
    expect(pages.get(leader)).toMatch(/tether_operator_pushes_total\{result="ok"\}/);
    for (const [pod, page] of pages) expect(metricsComplaints(page), pod).toEqual([]);
  });

  it('helm upgrade with changed values rolls the operator; the new pods lead and reconcile', async () => {
    await helm(cluster(), [
      'upgrade',
      RELEASE,
      CHART,
      '-n',
      ns,
      '-f',
      valuesFile,
      ...setFlags(['operator.workers=2', 'operator.logLevel=debug']),
    ]);
    const isNew = (p: PodJson) => !firstPods.includes(p.metadata.name);
    await eventually(async () => (await operatorPods()).every(isNew) && (await operatorPods()).length === 2, {
      timeoutMs: 90_000,
      intervalMs: 500,
      what: 'both operator pods replaced',
    });
    const newLeader = await waitForLeader(2, isNew);
    expect(firstPods).not.toContain(newLeader);
    const dep = JSON.parse(
      (await kubectl(cluster(), ['get', 'deployment', RELEASE, '-n', ns, '-o', 'json'])).stdout,
    );
    expect(dep.spec.template.spec.containers[0].args).toEqual(
      expect.arrayContaining(['--workers=2', '--log-level=debug']),
    );
    // A change after the roll is reconciled by the new leader.
    await kubectl(cluster(), ['scale', 'deployment/shop', '-n', ns, '--replicas=4']);
    await waitForReadyPool('shop', 4);
  });

  it('helm uninstall keeps the CRD and the pools; the proxies keep serving', async () => {
    await helm(cluster(), ['uninstall', RELEASE, '-n', ns]);
    await eventually(async () => (await listPods(ns, OPERATOR_SELECTOR)).length === 0, {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: 'operator pods gone',
    });
    const crd = JSON.parse(
      (await kubectl(cluster(), ['get', 'crd', 'stickybackendpools.tether.dev', '-o', 'json'])).stdout,
    ) as K8sObject;
    expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect((await getPool('shop')).metadata.name).toBe('shop');
    const clusterRole = await kubectl(cluster(), [
      'get',
      'clusterrole',
      RELEASE,
      '--ignore-not-found',
      '-o',
      'name',
    ]);
    expect(clusterRole.stdout.trim()).toBe('');
    await stickyClients(await readyProxies('shop', 2), 3, 3);
  });
});
