// helm works against the control plane: lint and install of a minimal chart.
// No --wait: there is no kubelet, so the chart's Deployment never gets pods.
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { controlPlane, helm, kubeConfig, useNamespace } from './support.ts';

const chart = fileURLToPath(new URL('fixtures/smoke-chart', import.meta.url));

describe('helm', () => {
  const ns = useNamespace('helm');

  it('lints the smoke chart', async () => {
    const { stdout } = await helm(controlPlane(), ['lint', '--strict', chart]);
    expect(stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('installs, lists and uninstalls the smoke chart', async () => {
    const cp = controlPlane();
    await helm(cp, [
      'install',
      'smoke',
      chart,
      '--namespace',
      ns.name,
      '--set',
      'greeting=hi there',
      '--timeout=60s',
    ]);

    const core = kubeConfig().makeApiClient(CoreV1Api);
    const cm = await core.readNamespacedConfigMap({ name: 'smoke-config', namespace: ns.name });
    expect(cm.data).toEqual({ greeting: 'hi there' });
    const svc = await core.readNamespacedService({ name: 'smoke', namespace: ns.name });
    expect(svc.spec?.selector).toBeUndefined();
    const dep = await kubeConfig()
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: 'smoke', namespace: ns.name });
    expect(dep.spec?.replicas).toBe(1);

    const list = JSON.parse((await helm(cp, ['list', '--namespace', ns.name, '--output=json'])).stdout) as {
      name: string;
      status: string;
    }[];
    expect(list).toEqual([expect.objectContaining({ name: 'smoke', status: 'deployed' })]);

    await helm(cp, ['uninstall', 'smoke', '--namespace', ns.name, '--timeout=60s']);
    const left = await core.listNamespacedConfigMap({
      namespace: ns.name,
      labelSelector: 'app.kubernetes.io/instance=smoke',
    });
    expect(left.items).toEqual([]);
  });
});
