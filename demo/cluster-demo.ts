/**
 * `make demo-cluster`: the operator on the test cluster, start to finish,
 * printed as it goes. Runs inside the cluster's private network namespace
 * (the Makefile starts it through test/cluster/in-netns.sh): pod IPs are
 * local there and never leave the machine.
 *
 * 1. start the test cluster (etcd, kube-apiserver, controller-manager,
 *    scheduler, KWOK nodes, the pod runner);
 * 2. `kubectl apply -f crds/`, start `tether-operator`;
 * 3. a Deployment of 3 test backends + Service, and a Managed pool for it;
 * 4. sticky traffic through both proxy replicas (cookie clients);
 * 5. `kubectl rollout restart` of the backends under that traffic, printing
 *    the table revision the proxies serve and where clients land.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster } from '../test/cluster/cluster.ts';
import { TEST_BACKEND_IMAGE, TETHER_IMAGE } from '../test/cluster/images.ts';
import { kubectl, waitForCrdEstablished } from '../test/control-plane/control-plane.ts';
import { ChildProcesses, waitForLine } from '../tools/child-processes.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const say = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(300);
  }
}

async function main(): Promise<void> {
  if (process.env.TETHER_NETNS !== '1') {
    throw new Error('run through make demo-cluster (inside the test network namespace)');
  }
  const children = new ChildProcesses();
  process.on('exit', () => children.killAllNow());
  say('== starting the test cluster (first run builds binaries: many minutes)');
  const c = await startCluster();
  const k = (args: string[], input?: string) =>
    kubectl(c, ['-n', 'demo', ...args], input === undefined ? {} : { input });
  try {
    say(
      `   kube-apiserver ${c.versions.kubernetes} at ${c.server}; nodes ${c.nodes.map((n) => n.name).join(', ')}`,
    );
    say('== kubectl apply -f crds/ and start tether-operator');
    await kubectl(c, ['apply', '--server-side', '-f', join(REPO, 'crds')]);
    await waitForCrdEstablished(c, 'stickybackendpools.tether.dev');
    await kubectl(c, ['create', 'namespace', 'demo']);
    const op = children.spawn('tether-operator', join(REPO, 'node_modules/.bin/node'), [
      join(REPO, 'bin/tether-operator.js'),
      `--kubeconfig=${c.adminKubeconfig}`,
      '--leader-election-namespace=demo',
      `--proxy-image=${TETHER_IMAGE}`,
      '--metrics-listen=127.0.0.1:0',
    ]);
    await waitForLine(op, 'it started', 30_000, (l) => (l.includes('became leader') ? true : undefined));
    say('   operator is leader');

    say(
      '== Deployment shop (3 test backends) + Service, and StickyBackendPool shop (Cookie, 2 managed proxies)',
    );
    const manifests = [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'shop' },
        spec: {
          replicas: 3,
          selector: { matchLabels: { app: 'shop' } },
          template: {
            metadata: { labels: { app: 'shop' } },
            spec: {
              terminationGracePeriodSeconds: 6,
              containers: [
                {
                  name: 'backend',
                  image: TEST_BACKEND_IMAGE,
                  args: ['--port=8080', '--drain=4'],
                  env: [
                    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                  ],
                  ports: [{ name: 'http', containerPort: 8080 }],
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'shop' },
        spec: { selector: { app: 'shop' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
      {
        apiVersion: 'tether.dev/v1alpha1',
        kind: 'StickyBackendPool',
        metadata: { name: 'shop' },
        spec: {
          backend: { service: { name: 'shop', port: 'http' } },
          proxy: { mode: 'Managed', replicas: 2 },
        },
      },
    ];
    await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }));
    const proxies = await until('2 proxies with 3 endpoints', async () => {
      const pods = JSON.parse(
        (await k(['get', 'pods', '-l', 'tether.dev/pool=shop', '-o', 'json'])).stdout,
      ) as {
        items: Array<{
          metadata: { name: string; deletionTimestamp?: string };
          status: { podIP?: string; phase?: string };
        }>;
      };
      const ips = pods.items
        .filter((p) => !p.metadata.deletionTimestamp && p.status.podIP && p.status.phase === 'Running')
        .map((p) => p.status.podIP as string);
      if (ips.length !== 2) return undefined;
      const tables = await Promise.all(
        ips.map(
          async (ip) =>
            (await (await fetch(`http://${ip}:9901/v1/routing-table`)).json()) as { endpoints: unknown[] },
        ),
      );
      return tables.every((t) => t.endpoints.length === 3) ? ips : undefined;
    });
    say((await k(['get', 'sbp', 'shop', '-o', 'wide'])).stdout.trimEnd());

    const revisionOf = async (ip: string) =>
      ((await (await fetch(`http://${ip}:9901/v1/routing-table`)).json()) as { revision: number }).revision;
    const get = async (ip: string, cookie?: string) => {
      const res = await fetch(`http://${ip}:8080/`, {
        headers: cookie ? { cookie } : {},
        signal: AbortSignal.timeout(5_000),
      });
      const body = (await res.json().catch(() => ({}))) as { endpoint?: string };
      return {
        status: res.status,
        endpoint: body.endpoint,
        cookie: res.headers.getSetCookie()[0]?.split(';')[0],
      };
    };
    say('== sticky traffic: 6 clients, each request alternating between the two proxies');
    const clients: Array<{ cookie?: string; endpoint?: string }> = [];
    for (let i = 0; i < 6; i++) {
      const r = await get(proxies[i % 2] as string);
      clients.push({ cookie: r.cookie, endpoint: r.endpoint });
    }
    for (const [i, cl] of clients.entries()) {
      const seen = [];
      for (const ip of [...proxies, ...proxies]) seen.push((await get(ip, cl.cookie)).endpoint);
      say(`   client ${i}: ${seen.join(' → ')}`);
    }

    say(
      '== kubectl rollout restart deployment/shop, traffic continues (revision = the table the proxies serve)',
    );
    await k(['rollout', 'restart', 'deployment/shop']);
    let failed = 0;
    const t0 = Date.now();
    let finalRound = false;
    for (let round = 0; round < 200; round++) {
      const line: string[] = [];
      for (const [i, cl] of clients.entries()) {
        const r = await get(proxies[i % 2] as string, cl.cookie).catch(() => ({
          status: 0,
          endpoint: undefined,
          cookie: undefined,
        }));
        if (r.status !== 200) failed++;
        if (r.cookie) cl.cookie = r.cookie;
        line.push(r.endpoint === cl.endpoint ? '.' : `→${r.endpoint}`);
        cl.endpoint = r.endpoint ?? cl.endpoint;
      }
      const revs = await Promise.all(proxies.map(revisionOf));
      const status = (
        await k(['rollout', 'status', 'deployment/shop', '--timeout=1s']).catch(() => ({ stdout: '' }))
      ).stdout;
      say(`   t+${((Date.now() - t0) / 1000).toFixed(1)}s revisions ${revs.join('/')}  ${line.join(' ')}`);
      if (status.includes('successfully rolled out') && round > 3) {
        const pods = (await k(['get', 'pods', '-l', 'app=shop', '-o', 'name'])).stdout.trim().split('\n');
        // One more round after the old pods are gone: their last clients re-pin now.
        if (pods.length === 3) {
          if (finalRound) break;
          finalRound = true;
        }
      }
      await sleep(700);
    }
    say(`== rollout done: ${failed} failed requests`);
    say((await k(['get', 'sbp', 'shop', '-o', 'wide'])).stdout.trimEnd());
  } finally {
    await children.stopAll();
    await c.stop();
  }
}

await main();
