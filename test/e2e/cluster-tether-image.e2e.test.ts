/**
 * A pod of the Tether image with `command: [tether-proxy]` runs this
 * checkout's tether-proxy on the pod IP,
 * with `$(POD_IP)` expanded from the downward API as Kubernetes does.
 */
import { describe, expect, it } from 'vitest';
import { apply, assertPodAddress, listPods, podEvents, TETHER_IMAGE } from './cluster-support.ts';
import { eventually, useNamespace } from './support.ts';

const ns = useNamespace('tether');

describe('a pod of the Tether image', () => {
  it('runs tether-proxy bound to the pod IP', async () => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'proxy', namespace: ns.name, labels: { app: 'proxy' } },
      spec: {
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'proxy',
            image: TETHER_IMAGE,
            // The image's ENTRYPOINT is the operator; a proxy container names its bin, as the chart's do.
            command: ['tether-proxy'],
            args: ['--listen=$(POD_IP):8080', '--admin-listen=$(POD_IP):9901'],
            env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
          },
        ],
      },
    });
    const ip = await eventually(async () => (await listPods(ns.name, 'app=proxy'))[0]?.status.podIP, {
      timeoutMs: 30_000,
      what: 'pod IP',
    });
    assertPodAddress(ip);
    const body = await eventually(
      async () => {
        const res = await fetch(`http://${ip}:9901/healthz`, { signal: AbortSignal.timeout(2_000) });
        return res.ok && res.text();
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'tether-proxy admin /healthz on the pod IP' },
    );
    expect(body).toBe('ok\n');
    expect(podEvents({ namespace: ns.name, name: 'proxy' })).toContain(`"--listen=${ip}:8080"`);
  });
});
