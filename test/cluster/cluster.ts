/**
 * The test cluster: a Kubernetes cluster whose every part is real except the
 * container runtime and the network.
 *
 * Real: etcd, kube-apiserver, kube-controller-manager (deployment,
 * replicaset, endpointslice, garbage collector, namespace, service-account,
 * node-lifecycle, … every default controller), kube-scheduler, all built from
 * Go modules (build.sh). Simulated: the Nodes and the Pods' lifecycle (KWOK
 * with its stock stages: node fast + heartbeat-with-lease, pod general, the
 * pod delete stage waiting for the grace period's end). Added by us: the pod
 * runner (pod-runner.ts), which starts real processes for pods of known
 * images (images.ts) on the pod's IP. The network is one private network
 * namespace (in-netns.sh) where the pod range, 10.244.0.0/16 by default, is
 * local: pod IPs are reachable from inside it, and nothing leaves the machine.
 *
 * API (for test harnesses, e.g. the operator's e2e tests):
 * - {@link startCluster}(options) → {@link Cluster}: starts everything and
 *   waits until every component is ready; `cluster.stop()` ends it all.
 *   Must run inside the namespace: `test/cluster/in-netns.sh CMD` (vitest's
 *   e2e project is run that way by `make test-e2e`). Throws, with a clear
 *   message, when not in a private namespace, when a node's pod CIDR is not
 *   local there or lies outside the range, or when a binary is missing.
 * - {@link ClusterInfo} (plain JSON, handed to vitest workers as
 *   `inject('cluster')`): `adminKubeconfig`, `nodes` (name, podCIDR),
 *   `podRange`, `runDir` (pod logs: {@link podDir}), component `logs`, and
 *   everything of the control plane (`binaries.kubectl`, `server`, …).
 * - Image table: `images` option (default {@link defaultImageTable}); add the
 *   operator's entry point in images.ts.
 * - Per-pod logs: `podDir(info.runDir, {namespace, name, uid})` holds
 *   `<container>.log` and `events.log` (started, SIGTERM, SIGKILL, exited).
 * - Namespace per test: test/e2e/support.ts `useNamespace()`.
 */

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { freePort } from '../../tools/free-port.ts';
import {
  type ControlPlane,
  type ControlPlaneInfo,
  defaultBinDir,
  httpsGet,
  isExecutable,
  kubectl,
  readVersions,
  type Server,
  startControlPlane,
  startServer,
  stopProcessGroup,
  waitFor,
} from '../control-plane/control-plane.ts';
import { defaultImageTable, type ImageRule } from './images.ts';
import { type PodRunner, startPodRunner } from './pod-runner.ts';

export { podDir } from './pod-runner.ts';

/** A simulated Node: its name and the pod CIDR KWOK takes pod IPs from. */
export interface NodeSpec {
  name: string;
  /** e.g. `10.244.1.0/24`; must lie in the namespace's local pod range. */
  podCIDR: string;
}

/** The default: two Nodes, pods at 10.244.1.x and 10.244.2.x. */
export const DEFAULT_NODES: readonly NodeSpec[] = [
  { name: 'tether-node-1', podCIDR: '10.244.1.0/24' },
  { name: 'tether-node-2', podCIDR: '10.244.2.0/24' },
];

/** Paths of the binaries the cluster needs beyond the control plane's. */
export interface ClusterBinaries {
  kubeControllerManager: string;
  kubeScheduler: string;
  kwok: string;
  /** Directory of KWOK's stock stage files (copied by build.sh). */
  kwokStages: string;
}

/** Everything a test needs about a running cluster; plain JSON. */
export interface ClusterInfo extends ControlPlaneInfo {
  /** The namespace's local range (`TETHER_POD_RANGE`), e.g. `10.244.0.0/16`. */
  podRange: string;
  nodes: NodeSpec[];
  /** Pod runner's directory: `runner.log` and `pods/<ns>_<name>_<uid8>/`. */
  runDir: string;
  clusterBinaries: ClusterBinaries;
  clusterLogs: { kubeControllerManager: string; kubeScheduler: string; kwok: string; podRunner: string };
  clusterPids: { kubeControllerManager: number; kubeScheduler: number; kwok: number };
  /** How long startCluster took until every component was ready, in ms. */
  readyMs: number;
}

/** A running cluster, owned by the process that started it. */
export interface Cluster extends ClusterInfo {
  /** Stops the pod runner's processes, kwok, scheduler, controller-manager, then the control plane. Never throws. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Directory of cached binaries; default as build.sh. */
  binDir?: string;
  /** Working directory (created); default a temporary one. */
  dir?: string;
  /** Keep the directory (logs) after stop. */
  keepDir?: boolean;
  /** Simulated Nodes; default {@link DEFAULT_NODES}. */
  nodes?: readonly NodeSpec[];
  /** Local pod range of the namespace; default `$TETHER_POD_RANGE` or 10.244.0.0/16. */
  podRange?: string;
  /** Images the pod runner runs; default {@link defaultImageTable}. */
  images?: ImageRule[];
  /** Give up after this many ms per component. Default 120 000. */
  readyTimeoutMs?: number;
  /** Leave everything running when this process exits (make cluster-up). Default false. */
  detach?: boolean;
  /**
   * Delay and jitter of KWOK's pod stages (create, ready, …) in ms. KWOK's
   * stock values (1 s + up to 5 s jitter, twice before Ready) make a pod take
   * up to 12 s; a kubelet starting a small image takes about 1 s. Default 200 and 500.
   */
  podStageDelayMs?: number;
  podStageJitterMs?: number;
}

/** Parses `a.b.c.d/n` (IPv4 only). @throws Error naming the bad value. */
export function parseCidr(cidr: string): { base: number; bits: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m ? Number(m[5]) : -1;
  if (!m || octets.some((o) => o > 255) || bits > 32)
    throw new Error(`not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - bits);
  return { base: addr - (addr % size), bits };
}

/** True if CIDR `inner` lies inside CIDR `outer`. */
export function cidrContains(outer: string, inner: string): boolean {
  const o = parseCidr(outer);
  const i = parseCidr(inner);
  if (i.bits < o.bits) return false;
  const size = 2 ** (32 - o.bits);
  return i.base - (i.base % size) === o.base;
}

/** The n-th address of a CIDR, dotted. */
export function cidrHost(cidr: string, n: number): string {
  const v = parseCidr(cidr).base + n;
  return [24, 16, 8, 0].map((s) => Math.floor(v / 2 ** s) % 256).join('.');
}

/**
 * Checks that the cluster can run here: inside a private network namespace
 * (not PID 1's), every node CIDR inside `podRange`, and its addresses local.
 * @throws Error saying what is wrong and how to fix it.
 */
export async function checkNetwork(podRange: string, nodes: readonly NodeSpec[]): Promise<void> {
  const own = readlinkSafe('/proc/self/ns/net');
  const host = readlinkSafe('/proc/1/ns/net');
  if (own !== undefined && own === host) {
    throw new Error(
      "the test cluster must run in a private network namespace, not the host's (pod IPs would leave the machine): " +
        'run it through test/cluster/in-netns.sh (make test-e2e and make cluster-up do)',
    );
  }
  parseCidr(podRange);
  for (const n of nodes) {
    if (!cidrContains(podRange, n.podCIDR)) {
      throw new Error(
        `node ${n.name}: pod CIDR ${n.podCIDR} lies outside the namespace's local pod range ${podRange} ` +
          '(set TETHER_POD_RANGE for in-netns.sh, or pick a CIDR inside it)',
      );
    }
    const probe = cidrHost(n.podCIDR, 1);
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `node ${n.name}: pod address ${probe} is not local in this network namespace (${err.code}); ` +
              `in-netns.sh makes ${podRange} local with "ip route add local ${podRange} dev lo"`,
          ),
        ),
      );
      srv.listen(0, probe, () => srv.close(() => resolve()));
    });
  }
}

function readlinkSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** Paths of the cluster's extra binaries (they may not exist yet). */
export function clusterBinaryPaths(binDir: string, versions = readVersions()): ClusterBinaries {
  return {
    kubeControllerManager: join(binDir, `kube-controller-manager-${versions.kubernetes}`),
    kubeScheduler: join(binDir, `kube-scheduler-${versions.kubernetes}`),
    kwok: join(binDir, `kwok-${versions.kwok}`),
    kwokStages: join(binDir, `kwok-stages-${versions.kwok}`),
  };
}

/**
 * KWOK's configuration: its stock stage files, with the pod stages' delays
 * set to `delayMs`/`jitterMs`, and `pod-delete` replaced by one that deletes
 * a pod when its grace period ends (the stock one picks a random moment
 * before), so terminating pods stay visible as on a real cluster.
 */
export function kwokConfig(stagesDir: string, delayMs: number, jitterMs: number): string {
  // Stages only: a KwokConfiguration document here would replace KWOK's
  // defaults wholesale (a zero lease parallelism makes it exit).
  const docs: unknown[] = [];
  for (const file of readdirSync(stagesDir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(stagesDir, file), 'utf8'))) {
      const stage = doc.toJS() as {
        kind?: string;
        metadata?: { name?: string };
        spec?: { resourceRef?: { kind?: string }; delay?: Record<string, unknown> };
      } | null;
      if (stage?.kind !== 'Stage') continue;
      const delay = stage.spec?.delay;
      if (stage.spec?.resourceRef?.kind === 'Pod' && delay) {
        if (stage.metadata?.name === 'pod-delete') {
          stage.spec.delay = {
            durationMilliseconds: 0,
            // A time: KWOK waits until then. deletionTimestamp = deletion + grace.
            durationFrom: { expressionFrom: '.metadata.deletionTimestamp' },
          };
        } else {
          if ('durationMilliseconds' in delay) delay.durationMilliseconds = delayMs;
          if ('jitterDurationMilliseconds' in delay) delay.jitterDurationMilliseconds = delayMs + jitterMs;
        }
      }
      docs.push(stage);
    }
  }
  if (docs.length === 0)
    throw new Error(`no KWOK stage files in ${stagesDir} (run test/control-plane/build.sh)`);
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

/** `n` distinct free loopback ports. */
async function ports(n: number): Promise<number[]> {
  const out = new Set<number>();
  for (let i = 0; out.size < n && i < 100; i++) out.add(await freePort());
  return [...out];
}

/**
 * Starts the whole cluster (see the module comment) and waits until the
 * controller-manager, scheduler and kwok are healthy, every Node is Ready
 * without the not-ready taint, and the `default` ServiceAccount exists.
 * On failure, whatever started is stopped and the logs' directory kept.
 * @throws Error (clear message) for a wrong network namespace or pod CIDR, a
 *   missing binary, or a component not ready in time (with its log's tail).
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const t0 = Date.now();
  const nodes = [...(opts.nodes ?? DEFAULT_NODES)];
  const podRange = opts.podRange ?? process.env.TETHER_POD_RANGE ?? '10.244.0.0/16';
  const binDir = opts.binDir ?? defaultBinDir();
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000;
  const detach = opts.detach ?? false;
  const bins = clusterBinaryPaths(binDir);
  for (const [name, path] of Object.entries(bins)) {
    const ok = name === 'kwokStages' ? existsSync(path) : isExecutable(path);
    if (!ok)
      throw new Error(`${name} binary missing: ${path} (run test/control-plane/build.sh or make tools)`);
  }
  await checkNetwork(podRange, nodes);

  const cp: ControlPlane = await startControlPlane({
    binDir,
    ...(opts.dir ? { dir: opts.dir } : {}),
    // Kept by the control plane; removed by stop() below unless opts.keepDir,
    // so a failed start leaves its logs.
    keepDir: true,
    readyTimeoutMs,
    detach,
  });
  const started: Server[] = [];
  let runner: PodRunner | undefined;
  const stopComponents = async (graceMs: number): Promise<void> => {
    await runner?.stop(graceMs);
    for (const s of [...started].reverse()) await stopProcessGroup(s.pid, graceMs);
  };
  try {
    const runDir = join(cp.dir, 'run');
    mkdirSync(runDir, { recursive: true });
    const logs = {
      kubeControllerManager: join(cp.dir, 'kube-controller-manager.log'),
      kubeScheduler: join(cp.dir, 'kube-scheduler.log'),
      kwok: join(cp.dir, 'kwok.log'),
      podRunner: join(runDir, 'runner.log'),
    };
    const pki = join(cp.dir, 'pki');
    const tls = {
      ca: readFileSync(cp.caCertFile, 'utf8'),
      cert: readFileSync(join(pki, 'admin.crt'), 'utf8'),
      key: readFileSync(join(pki, 'admin.key'), 'utf8'),
    };
    const [kcmPort = 0, schedPort = 0, kwokPort = 0] = await ports(3);
    const serving = [
      `--tls-cert-file=${join(pki, 'kube-apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'kube-apiserver.key')}`,
    ];

    const kcm = startServer(
      bins.kubeControllerManager,
      [
        `--kubeconfig=${cp.adminKubeconfig}`,
        `--authentication-kubeconfig=${cp.adminKubeconfig}`,
        `--authorization-kubeconfig=${cp.adminKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        ...serving,
        '--leader-elect=false',
        '--controllers=*',
        `--service-account-private-key-file=${join(pki, 'service-account.key')}`,
        `--root-ca-file=${cp.caCertFile}`,
        `--cluster-signing-cert-file=${cp.caCertFile}`,
        `--cluster-signing-key-file=${cp.caKeyFile}`,
        // The Nodes come with their pod CIDRs; nodeipam must not hand out others.
        '--allocate-node-cidrs=false',
        '--use-service-account-credentials=false',
        '--v=1',
      ],
      logs.kubeControllerManager,
      detach,
    );
    started.push(kcm);
    const sched = startServer(
      bins.kubeScheduler,
      [
        `--kubeconfig=${cp.adminKubeconfig}`,
        `--authentication-kubeconfig=${cp.adminKubeconfig}`,
        `--authorization-kubeconfig=${cp.adminKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        ...serving,
        '--leader-elect=false',
        '--v=1',
      ],
      logs.kubeScheduler,
      detach,
    );
    started.push(sched);
    const kwokConfigFile = join(cp.dir, 'kwok.yaml');
    writeFileSync(
      kwokConfigFile,
      kwokConfig(bins.kwokStages, opts.podStageDelayMs ?? 200, opts.podStageJitterMs ?? 500),
    );
    const kwok = startServer(
      bins.kwok,
      [
        `--kubeconfig=${cp.adminKubeconfig}`,
        `--config=${kwokConfigFile}`,
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        `--server-address=127.0.0.1:${kwokPort}`,
        // Host IP of every simulated Node: inside the range, outside every node's pod CIDR.
        `--node-ip=${cidrHost(podRange, 1)}`,
        '--node-lease-duration-seconds=40',
      ],
      logs.kwok,
      detach,
    );
    started.push(kwok);

    const healthz = (port: number) => async (): Promise<boolean> =>
      (await httpsGet(`https://127.0.0.1:${port}/healthz`, tls)).status === 200;
    await waitFor('kube-controller-manager', kcm, readyTimeoutMs, healthz(kcmPort));
    await waitFor('kube-scheduler', sched, readyTimeoutMs, healthz(schedPort));
    await waitFor('kwok', kwok, readyTimeoutMs, async () => {
      const res = await fetch(`http://127.0.0.1:${kwokPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
      return res.ok;
    });

    const nodeObjects = nodes.map((n) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: n.name,
        annotations: { 'kwok.x-k8s.io/node': 'fake' },
        labels: {
          'kubernetes.io/hostname': n.name,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          type: 'kwok',
          'tether.dev/test-node': 'true',
        },
      },
      spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
    }));
    await kubectl(cp, ['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nodeObjects }),
    });
    await waitFor('Nodes Ready (kwok, node-lifecycle-controller)', kwok, readyTimeoutMs, async () => {
      const { stdout } = await kubectl(cp, ['get', 'nodes', '-o', 'json']);
      const items = (JSON.parse(stdout) as { items: NodeJson[] }).items;
      return nodes.every((n) => {
        const node = items.find((i) => i.metadata.name === n.name);
        const ready = node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        const tainted = node?.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/'));
        return ready && !tainted;
      });
    });
    await waitFor('default ServiceAccount (serviceaccount controller)', kcm, readyTimeoutMs, async () => {
      await kubectl(cp, ['get', 'serviceaccount', 'default', '-n', 'default', '-o', 'name']);
      return true;
    });

    runner = await startPodRunner({
      kubeconfig: cp.adminKubeconfig,
      nodeNames: nodes.map((n) => n.name),
      runDir,
      images: opts.images ?? defaultImageTable(),
    });

    const { stop: stopControlPlane, ...cpInfo } = cp;
    const info: ClusterInfo = {
      ...cpInfo,
      podRange,
      nodes,
      runDir,
      clusterBinaries: bins,
      clusterLogs: logs,
      clusterPids: { kubeControllerManager: kcm.pid, kubeScheduler: sched.pid, kwok: kwok.pid },
      readyMs: Date.now() - t0,
    };
    writeFileSync(join(cp.dir, 'cluster.json'), `${JSON.stringify(info, null, 2)}\n`);
    let stopped = false;
    return {
      ...info,
      async stop(graceMs = 10_000): Promise<void> {
        if (stopped) return;
        stopped = true;
        await stopComponents(graceMs);
        await stopControlPlane(graceMs);
        if (!opts.keepDir) rmSync(cp.dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopComponents(2_000);
    await cp.stop(2_000);
    if (err instanceof Error) err.message += `\n(logs kept in ${cp.dir})`;
    throw err;
  }
}

interface NodeJson {
  metadata: { name: string };
  spec?: { taints?: Array<{ key: string }> };
  status?: { conditions?: Array<{ type: string; status: string }> };
}
