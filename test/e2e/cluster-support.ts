/**
 * Helpers for e2e tests of workloads on the test cluster: apply objects, list
 * pods and EndpointSlices, talk to a pod over HTTP, and read what the pod
 * runner did to a pod (its events.log and process logs).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import type { ClusterInfo } from '../cluster/cluster.ts';
import { cidrContains } from '../cluster/cluster.ts';
import { TEST_BACKEND_IMAGE } from '../cluster/images.ts';
import { kubectl } from './support.ts';

export { TEST_BACKEND_IMAGE, TETHER_IMAGE } from '../cluster/images.ts';

/** The cluster started by global-setup.ts. */
export function cluster(): ClusterInfo {
  return inject('cluster');
}

/** `kubectl apply` of objects given as JS values. */
export async function apply(...objects: object[]): Promise<void> {
  await kubectl(cluster(), ['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  });
}

/** A pod as far as these tests look at it. */
export interface PodJson {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
  };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
}

/** Pods of `namespace` matching `selector` (e.g. `app=web`). */
export async function listPods(namespace: string, selector: string): Promise<PodJson[]> {
  const { stdout } = await kubectl(cluster(), ['get', 'pods', '-n', namespace, '-l', selector, '-o', 'json']);
  return (JSON.parse(stdout) as { items: PodJson[] }).items;
}

/** An endpoint of an EndpointSlice. */
export interface SliceEndpoint {
  addresses: string[];
  conditions: { ready?: boolean; serving?: boolean; terminating?: boolean };
  targetRef?: { name: string };
}

/** Endpoints of every EndpointSlice of Service `service`. */
export async function sliceEndpoints(namespace: string, service: string): Promise<SliceEndpoint[]> {
  const { stdout } = await kubectl(cluster(), [
    'get',
    'endpointslices',
    '-n',
    namespace,
    '-l',
    `kubernetes.io/service-name=${service}`,
    '-o',
    'json',
  ]);
  return (JSON.parse(stdout) as { items: Array<{ endpoints?: SliceEndpoint[] }> }).items.flatMap(
    (s) => s.endpoints ?? [],
  );
}

/**
 * GET `http://ip:port/path` with a 2 s timeout; resolves to the JSON body.
 * @throws Error unless `ip` lies in the cluster's pod range and this process
 *   runs in the cluster's private network namespace: a pod IP must never be
 *   dialled from the host's namespace (it would leave the machine).
 */
export async function getFromPod(ip: string, port: number, path = '/'): Promise<unknown> {
  assertPodAddress(ip);
  const res = await fetch(`http://${ip}:${port}${path}`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`GET ${ip}:${port}${path}: ${res.status}`);
  return res.json();
}

/** See {@link getFromPod}. */
export function assertPodAddress(ip: string): void {
  if (process.env.TETHER_NETNS !== '1') {
    throw new Error(
      'refusing to dial a pod IP outside the private network namespace (run via make test-e2e)',
    );
  }
  if (!cidrContains(cluster().podRange, `${ip}/32`)) {
    throw new Error(`refusing to dial ${ip}: not in the cluster's pod range ${cluster().podRange}`);
  }
}

/** The pod runner's directory for a pod (undefined until it ran the pod). */
export function runnerDir(pod: { namespace: string; name: string; uid?: string }): string | undefined {
  const pods = join(cluster().runDir, 'pods');
  if (!existsSync(pods)) return undefined;
  const prefix = `${pod.namespace}_${pod.name}_${pod.uid ? pod.uid.slice(0, 8) : ''}`;
  const hit = readdirSync(pods).find((d) => d.startsWith(prefix));
  return hit ? join(pods, hit) : undefined;
}

/** What the runner did to a pod (events.log), '' if nothing yet. */
export function podEvents(pod: { namespace: string; name: string; uid?: string }): string {
  const dir = runnerDir(pod);
  return dir && existsSync(join(dir, 'events.log')) ? readFileSync(join(dir, 'events.log'), 'utf8') : '';
}

/** A container's output, '' if none yet. */
export function podLog(pod: { namespace: string; name: string; uid?: string }, container: string): string {
  const dir = runnerDir(pod);
  const file = dir && join(dir, `${container}.log`);
  return file && existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** Process ids the runner started for a pod (from events.log). */
export function podPids(pod: { namespace: string; name: string; uid?: string }): number[] {
  return [...podEvents(pod).matchAll(/started \S+ pid (\d+)/g)].map((m) => Number(m[1]));
}

/** True while a process exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A Deployment of `replicas` test backends labelled `app=<name>` on port 8080, and a Service for them. */
export function testBackendDeployment(
  name: string,
  namespace: string,
  replicas: number,
  opts: { graceSeconds?: number; args?: string[] } = {},
): object[] {
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            terminationGracePeriodSeconds: opts.graceSeconds ?? 5,
            containers: [
              {
                name: 'backend',
                image: TEST_BACKEND_IMAGE,
                args: ['--port=8080', ...(opts.args ?? [])],
                env: [
                  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                ],
                ports: [{ containerPort: 8080, name: 'http' }],
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace },
      spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 'http', name: 'http' }] },
    },
  ];
}

/** Running pods (no deletionTimestamp) of `app=<name>` with an IP and answering HTTP with their own name. */
export async function answeringPods(namespace: string, name: string): Promise<PodJson[]> {
  const pods = (await listPods(namespace, `app=${name}`)).filter(
    (p) => !p.metadata.deletionTimestamp && p.status.phase === 'Running' && p.status.podIP,
  );
  const answers = await Promise.all(
    pods.map(async (p) => {
      try {
        const body = (await getFromPod(p.status.podIP!, 8080)) as { endpoint?: string };
        return body.endpoint === p.metadata.name;
      } catch {
        return false;
      }
    }),
  );
  return pods.filter((_, i) => answers[i]);
}
