/**
 * `make bench-operator`: how fast the operator carries an EndpointSlice
 * change to every proxy, with 1 pool and with 1 000 pools × 3 proxies.
 *
 * A real etcd + kube-apiserver (test/control-plane); the operator runs as
 * its own process (`bin/tether-operator.js`). The proxies' admin APIs are
 * stood in for by this process (three listeners on loopback, one per proxy
 * "replica"; every pool has three Pod objects pointing at them), as the
 * issue allows at that scale: the operator is what is measured. A change is
 * one EndpointSlice write; it is served when all three stand-ins hold a
 * higher revision of that pool. Changes are made one at a time.
 *
 * Also printed: the operator's RSS and CPU over the change phase, the time
 * to push every pool after a cold start, and after an operator restart.
 *
 * Environment: BENCH_POOLS (1000), BENCH_CHANGES (50), BENCH_CONCURRENCY (16,
 * API writes in flight while setting up).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeClient, resourcePath } from '../operator/src/kube/client.ts';
import { kubectl, startControlPlane, waitForCrdEstablished } from '../test/control-plane/control-plane.ts';
import { type Child, ChildProcesses, waitForLine } from '../tools/child-processes.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const POOLS = Number(process.env.BENCH_POOLS ?? 1000);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 50);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const TICKS_PER_S = 100;

/** The stand-in admin APIs: (port, pool) → revision held; waiters by key. */
class StandIns {
  readonly held = new Map<string, number>();
  /** PUTs received since `resetCount`, per key. */
  readonly putsSince = new Set<string>();
  private servers: Server[] = [];
  ports: number[] = [];
  private waiters: Array<() => void> = [];

  async start(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const srv = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const port = (srv.address() as AddressInfo).port;
          try {
            const t = JSON.parse(Buffer.concat(chunks).toString()) as { pool: string; revision: number };
            const key = `${port}|${t.pool}`;
            const cur = this.held.get(key) ?? 0;
            this.putsSince.add(key);
            if (t.revision < cur) {
              res
                .writeHead(409, { 'content-type': 'application/json' })
                .end(JSON.stringify({ error: 'stale', revision: cur }));
              return;
            }
            this.held.set(key, t.revision);
            res
              .writeHead(200, { 'content-type': 'application/json' })
              .end(JSON.stringify({ pool: t.pool, revision: t.revision }));
            for (const w of this.waiters.splice(0)) w();
          } catch {
            res.writeHead(400).end();
          }
        });
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      this.servers.push(srv);
      this.ports.push((srv.address() as AddressInfo).port);
    }
  }

  revisionEverywhere(pool: string): number {
    return Math.min(...this.ports.map((p) => this.held.get(`${p}|${pool}`) ?? 0));
  }

  /** Resolves when `ok()` holds, checked after every PUT. */
  async until(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  close(): void {
    for (const s of this.servers) s.close();
  }
}

async function inParallel<T>(items: T[], limit: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

const slice = (ns: string, pool: string, gen: number) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${pool}-1`, namespace: ns, labels: { 'kubernetes.io/service-name': pool } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [0, 1, 2].map((i) => ({
    addresses: [`198.51.100.${(gen * 3 + i) % 250}`],
    conditions: { ready: true, serving: true, terminating: false },
    targetRef: { kind: 'Pod', name: `${pool}-be-${gen}-${i}` },
  })),
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function procStats(pid: number): { rssMiB: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssMiB: rssKiB / 1024, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

interface ScenarioResult {
  pools: number;
  proxiesPerPool: number;
  changes: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  coldConvergeMs: number;
  restartConvergeMs: number;
  rssMiB: number;
  cpuPercent: number;
}

async function scenario(
  client: KubeClient,
  kubeconfig: string,
  children: ChildProcesses,
  stand: StandIns,
  ns: string,
  pools: number,
): Promise<ScenarioResult> {
  const names = Array.from({ length: pools }, (_, i) => `p${i}`);
  await client.request('POST', '/api/v1/namespaces', { body: { metadata: { name: ns } } });
  const t0 = Date.now();
  await inParallel(names, CONCURRENCY, async (name) => {
    await client.request('POST', resourcePath('tether.dev/v1alpha1', 'stickybackendpools', ns), {
      body: {
        apiVersion: 'tether.dev/v1alpha1',
        kind: 'StickyBackendPool',
        metadata: { name },
        spec: { backend: { service: { name, port: 'http' } }, proxy: { mode: 'Sidecar' } },
      },
    });
    await client.request('POST', resourcePath('discovery.k8s.io/v1', 'endpointslices', ns), {
      body: slice(ns, name, 0),
    });
    for (const [i, port] of stand.ports.entries()) {
      const pod = `${name}-proxy-${i}`;
      await client.request('POST', resourcePath('v1', 'pods', ns), {
        body: {
          metadata: { name: pod, labels: { 'tether.dev/pool': name } },
          spec: {
            nodeName: 'bench-node',
            containers: [
              { name: 'proxy', image: 'bench', ports: [{ name: 'tether-admin', containerPort: port }] },
            ],
          },
        },
      });
      await client.request('PATCH', `${resourcePath('v1', 'pods', ns, pod)}/status`, {
        body: { status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } },
        contentType: 'application/merge-patch+json',
      });
    }
  });
  process.stderr.write(
    `[bench] ${ns}: ${pools} pools, slices and ${pools * stand.ports.length} proxy pods created in ${Date.now() - t0} ms\n`,
  );

  const start = async (id: string): Promise<Child> => {
    const child = children.spawn(
      `operator-${id}`,
      join(REPO, 'node_modules/.bin/node'),
      [
        join(REPO, 'bin/tether-operator.js'),
        `--kubeconfig=${kubeconfig}`,
        `--namespaces=${ns}`,
        `--leader-election-namespace=${ns}`,
        `--identity=${id}`,
        '--metrics-listen=127.0.0.1:0',
        '--log-level=info',
      ],
      { cwd: REPO, tailLines: 40 },
    );
    await waitForLine(child, 'it started', 60_000, (l) =>
      l.includes('tether-operator started') ? true : undefined,
    ).catch(() => undefined);
    return child;
  };
  const everyPoolServed = () => names.every((n) => stand.revisionEverywhere(`${ns}/${n}`) > 0);

  const coldStart = Date.now();
  let op = await start('bench-a');
  await stand.until(everyPoolServed, 600_000, 'cold start: every pool on every stand-in');
  const coldConvergeMs = Date.now() - coldStart;

  const latencies: number[] = [];
  const before = procStats(op.proc.pid as number);
  const phaseStart = Date.now();
  for (let i = 0; i < CHANGES; i++) {
    const name = names[Math.floor(Math.random() * names.length)] as string;
    const key = `${ns}/${name}`;
    const rev = stand.revisionEverywhere(key);
    const t = performance.now();
    await client.request('PUT', resourcePath('discovery.k8s.io/v1', 'endpointslices', ns, `${name}-1`), {
      body: { ...slice(ns, name, i + 1), metadata: { ...slice(ns, name, i + 1).metadata } },
    });
    await stand.until(() => stand.revisionEverywhere(key) > rev, 60_000, `change ${i} of ${key}`);
    latencies.push(performance.now() - t);
  }
  const wall = (Date.now() - phaseStart) / 1000;
  const after = procStats(op.proc.pid as number);

  // Restart: a new process must reach every proxy again (its memory of what they hold is gone).
  await children.stop(op, 10_000);
  stand.putsSince.clear();
  const restartAt = Date.now();
  op = await start('bench-b');
  const all = names.length * stand.ports.length;
  await stand.until(() => stand.putsSince.size >= all, 600_000, 'restart: every proxy confirmed');
  const restartConvergeMs = Date.now() - restartAt;
  await children.stop(op, 10_000);

  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    pools,
    proxiesPerPool: stand.ports.length,
    changes: latencies.length,
    medianMs: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] as number,
    coldConvergeMs,
    restartConvergeMs,
    rssMiB: after.rssMiB,
    cpuPercent: ((after.cpuTicks - before.cpuTicks) / TICKS_PER_S / wall) * 100,
  };
}

async function main(): Promise<void> {
  const children = new ChildProcesses();
  process.on('exit', () => children.killAllNow());
  // Exit hooks (ours, the control plane's) run on Ctrl-C and kill too.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  const cp = await startControlPlane();
  const stand = new StandIns();
  try {
    await kubectl(cp, ['apply', '--server-side', '-f', join(REPO, 'crds')]);
    await waitForCrdEstablished(cp, 'stickybackendpools.tether.dev');
    await stand.start(3);
    const client = KubeClient.fromConfig(cp.adminKubeconfig);
    const results: ScenarioResult[] = [];
    for (const [ns, n] of [
      ['bench-one', 1],
      ['bench-many', POOLS],
    ] as const) {
      results.push(await scenario(client, cp.adminKubeconfig, children, stand, ns, n));
      const r = results[results.length - 1] as ScenarioResult;
      process.stderr.write(`[bench] ${ns}: ${JSON.stringify(r)}\n`);
    }
    const fmt = (x: number) => x.toFixed(0).padStart(8);
    console.log('\nEndpointSlice change → every proxy serving the new revision (ms), operator process alone');
    console.log(
      '   pools  proxies  changes   median      p99      max  cold-all  restart-all   RSS MiB   CPU %',
    );
    for (const r of results) {
      console.log(
        `${String(r.pools).padStart(8)} ${String(r.pools * r.proxiesPerPool).padStart(8)} ${String(r.changes).padStart(8)} ` +
          `${fmt(r.medianMs)} ${fmt(r.p99Ms)} ${fmt(r.maxMs)} ${fmt(r.coldConvergeMs)}  ${fmt(r.restartConvergeMs)}   ` +
          `${r.rssMiB.toFixed(0).padStart(7)} ${r.cpuPercent.toFixed(1).padStart(7)}`,
      );
    }
    mkdirSync(join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(join(REPO, 'bench/results/operator-latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  } finally {
    stand.close();
    await children.stopAll();
    await cp.stop();
  }
}

await main();
