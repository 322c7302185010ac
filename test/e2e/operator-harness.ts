/**
 * Helpers for the operator's e2e tests: install the CRD from crds/, run
 * `tether-operator` processes under a minted identity bound to exactly the
 * RBAC in operator/rbac.yaml (never admin), read their metrics, and create
 * the objects a pool needs.
 */
import { fileURLToPath } from 'node:url';
import { type Child, ChildProcesses, waitForLine } from '../../tools/child-processes.ts';
import { metricValue } from '../helpers/prometheus-text.ts';
import {
  bindIdentity,
  controlPlane,
  eventually,
  type Identity,
  kubectl,
  mintIdentity,
  waitForCrdEstablished,
} from './support.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CRD_DIR = `${REPO}crds`;
export const RBAC_FILE = `${REPO}operator/rbac.yaml`;
export const OPERATOR_BIN = `${REPO}bin/tether-operator.js`;
export const NODE = `${REPO}node_modules/.bin/node`;
/** Stops a child (SIGTERM) when the test process ends, SIGKILL included: see tools/exit-with-parent.ts. */
const EXIT_WITH_PARENT_PRELOAD = `${REPO}tools/exit-with-parent.ts`;

export const children = new ChildProcesses();
process.on('exit', () => children.killAllNow());

let crdInstalled = false;
/** `kubectl apply -f crds/` (once per test process) and wait until Established. */
export async function installCrd(): Promise<void> {
  if (crdInstalled) return;
  const cp = controlPlane();
  await kubectl(cp, ['apply', '--server-side', '-f', CRD_DIR]);
  await waitForCrdEstablished(cp, 'stickybackendpools.tether.dev');
  crdInstalled = true;
}

/**
 * An identity holding only operator/rbac.yaml: the ClusterRole cluster-wide,
 * the leader-election Role in `leaseNamespace`.
 */
export async function operatorIdentity(leaseNamespace: string): Promise<Identity> {
  const cp = controlPlane();
  await kubectl(cp, ['apply', '-f', RBAC_FILE, '-n', leaseNamespace]);
  const id = await mintIdentity(cp, { user: `tether-operator-${Math.random().toString(36).slice(2, 8)}` });
  await bindIdentity(cp, id, { kind: 'ClusterRole', role: 'tether-operator' });
  await bindIdentity(cp, id, {
    kind: 'Role',
    role: 'tether-operator-leader-election',
    namespace: leaseNamespace,
  });
  return id;
}

/** A running operator. */
export interface OperatorProcess {
  child: Child;
  identity: string;
  metricsUrl: string;
  /** All stderr lines so far (JSON log records). */
  logs: string[];
  /** One metric's value (first series matching the labels), or undefined. */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `tether-operator` with `kubeconfig`; resolves once it logged its start. */
export async function startOperator(o: {
  kubeconfig: string;
  leaseNamespace: string;
  identity: string;
  args?: string[];
}): Promise<OperatorProcess> {
  const args = [
    '--import',
    EXIT_WITH_PARENT_PRELOAD,
    OPERATOR_BIN,
    `--kubeconfig=${o.kubeconfig}`,
    `--leader-election-namespace=${o.leaseNamespace}`,
    `--identity=${o.identity}`,
    '--metrics-listen=127.0.0.1:0',
    '--log-level=debug',
    ...(o.args ?? []),
  ];
  const child = children.spawn(`tether-operator ${o.identity}`, NODE, args, {
    cwd: REPO,
    stdin: 'pipe',
    tailLines: 80,
  });
  const logs: string[] = [];
  child.onLine((line, stream) => {
    if (stream === 'stderr') logs.push(line);
  });
  const metricsAddr = await waitForLine(child, 'it started', 30_000, (line) => {
    try {
      const r = JSON.parse(line) as { msg?: string; metrics?: string };
      return r.msg === 'tether-operator started' ? r.metrics : undefined;
    } catch {
      return undefined;
    }
  });
  const metricsUrl = `http://${metricsAddr}`;
  return {
    child,
    identity: o.identity,
    metricsUrl,
    logs,
    async metric(name, labels = {}) {
      return metricValue(await (await fetch(`${metricsUrl}/metrics`)).text(), name, labels);
    },
    async stop(signal = 'SIGTERM') {
      await children.stop(child, 10_000, signal);
    },
  };
}

/** Waits until exactly one of `ops` reports `tether_operator_leader 1`; returns it. */
export async function leaderOf(ops: OperatorProcess[], timeoutMs = 30_000): Promise<OperatorProcess> {
  return eventually(
    async () => {
      const live = ops.filter((o) => o.child.isRunning());
      const flags = await Promise.all(live.map((o) => o.metric('tether_operator_leader').catch(() => 0)));
      const leaders = live.filter((_, i) => flags[i] === 1);
      return leaders.length === 1 ? leaders[0] : undefined;
    },
    { timeoutMs, intervalMs: 250, what: 'one leader' },
  );
}

/** An EndpointSlice for Service `service` with ready/terminating pod endpoints (TEST-NET-2 addresses, never dialled). */
export function endpointSlice(
  name: string,
  service: string,
  endpoints: Array<{ pod: string; ip: string; ready?: boolean; serving?: boolean; terminating?: boolean }>,
  port = 8080,
) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ready: e.ready ?? true,
        serving: e.serving ?? e.ready ?? true,
        terminating: e.terminating ?? false,
      },
      targetRef: { kind: 'Pod', name: e.pod },
    })),
  };
}

/** A StickyBackendPool manifest for Service `service` (port name `http`). */
export function poolManifest(name: string, spec: Record<string, unknown> = {}, service = 'shop') {
  return {
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name },
    spec: { backend: { service: { name: service, port: 'http' } }, ...spec },
  };
}
