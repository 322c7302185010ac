/**
 * vitest globalSetup of the `e2e` project: builds (or reuses) the pinned
 * binaries, starts one etcd + kube-apiserver for the whole run, hands its
 * description to the test files (`inject('controlPlane')`), and stops it at
 * the end — also when tests fail; if the vitest process itself dies, an exit
 * hook in control-plane.ts kills the servers.
 *
 * Environment:
 * - `TETHER_E2E_KEEP=1` keeps the control plane's directory (logs, certs,
 *   kubeconfigs) after the run and prints where it is.
 * - `TETHER_E2E_SKIP_BUILD=1` does not run build.sh (binaries must exist).
 */
import type { TestProject } from 'vitest/node';
import { type ControlPlaneInfo, ensureBinaries, startControlPlane } from '../control-plane/control-plane.ts';

declare module 'vitest' {
  interface ProvidedContext {
    /** The control plane shared by all e2e test files. */
    controlPlane: ControlPlaneInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TETHER_E2E_SKIP_BUILD !== '1') await ensureBinaries();
  const keep = process.env.TETHER_E2E_KEEP === '1';
  const started = Date.now();
  const cp = await startControlPlane({ keepDir: keep });
  process.stderr.write(
    `[e2e] kube-apiserver ${cp.versions.kubernetes} + etcd ${cp.versions.etcd} ready at ${cp.server} ` +
      `in ${Date.now() - started} ms (dir ${cp.dir})\n`,
  );
  const { stop: _stop, ...info } = cp;
  project.provide('controlPlane', info);
  return async () => {
    await cp.stop();
    if (keep) process.stderr.write(`[e2e] control plane directory kept: ${cp.dir}\n`);
  };
}
