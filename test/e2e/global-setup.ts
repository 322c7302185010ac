/**
 * vitest globalSetup of the `e2e` project: starts one test cluster for the
 * whole run (test/cluster/cluster.ts: etcd, kube-apiserver,
 * kube-controller-manager, kube-scheduler, KWOK Nodes and the pod runner),
 * hands its description to the test files (`inject('cluster')`, and the
 * control-plane part as `inject('controlPlane')`), and stops it at the end —
 * also when tests fail; if the vitest process itself dies, exit hooks kill
 * every process it started.
 *
 * The run must be inside a private network namespace: `make test-e2e` runs
 * vitest through test/cluster/in-netns.sh. Binaries are built before that
 * (`make tools`): inside the namespace there is no network for Go modules.
 *
 * Environment:
 * - `TETHER_E2E_KEEP=1` keeps the cluster's directory (logs, pod logs,
 *   kubeconfigs) after the run and prints where it is.
 * - `TETHER_E2E_SKIP_BUILD=1` does not run build.sh (binaries must exist);
 *   inside the namespace (`TETHER_NETNS=1`) it is never run.
 */
import type { TestProject } from 'vitest/node';
import { type ClusterInfo, startCluster } from '../cluster/cluster.ts';
import { type ControlPlaneInfo, ensureBinaries } from '../control-plane/control-plane.ts';

declare module 'vitest' {
  interface ProvidedContext {
    /** The control plane shared by all e2e test files (part of the cluster). */
    controlPlane: ControlPlaneInfo;
    /** The whole test cluster shared by all e2e test files. */
    cluster: ClusterInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TETHER_E2E_SKIP_BUILD !== '1' && process.env.TETHER_NETNS !== '1') await ensureBinaries();
  const keep = process.env.TETHER_E2E_KEEP === '1';
  const cluster = await startCluster({ keepDir: keep });
  process.stderr.write(
    `[e2e] cluster ready in ${cluster.readyMs} ms: kube-apiserver ${cluster.versions.kubernetes} at ${cluster.server}, ` +
      `kwok ${cluster.versions.kwok}, nodes ${cluster.nodes.map((n) => `${n.name}=${n.podCIDR}`).join(' ')} ` +
      `(dir ${cluster.dir})\n`,
  );
  const { stop: _stop, ...info } = cluster;
  project.provide('cluster', info);
  project.provide('controlPlane', info);
  return async () => {
    await cluster.stop();
    if (keep) process.stderr.write(`[e2e] cluster directory kept: ${cluster.dir}\n`);
  };
}
