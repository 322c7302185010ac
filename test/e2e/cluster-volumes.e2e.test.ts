/**
 * Mounted Secrets reach the process as files, and change in place (the
 * kubelet's atomic `..data` swap) when the Secret changes.
 */
import { describe, expect, it } from 'vitest';
import { apply, getFromPod, listPods, podPids, runnerDir, TEST_BACKEND_IMAGE } from './cluster-support.ts';
import { eventually, useNamespace } from './support.ts';

const ns = useNamespace('vol');

const secret = (namespace: string, token: string): object => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'creds', namespace },
  stringData: { token },
});

describe('a Secret mounted into a pod', () => {
  it('appears as a file for the process and is updated in place', async () => {
    await apply(secret(ns.name, 'first'), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'reader', namespace: ns.name, labels: { app: 'reader' } },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'backend',
            image: TEST_BACKEND_IMAGE,
            args: ['--port=8080', '--serve-file=/etc/creds/token'],
            env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
            volumeMounts: [{ name: 'creds', mountPath: '/etc/creds', readOnly: true }],
          },
        ],
        volumes: [{ name: 'creds', secret: { secretName: 'creds' } }],
      },
    });
    const ip = await eventually(async () => (await listPods(ns.name, 'app=reader'))[0]?.status.podIP, {
      timeoutMs: 30_000,
      what: 'pod IP',
    });
    type Files = Array<{ path: string; content?: string }>;
    const first = await eventually(async () => ((await getFromPod(ip, 8080, '/files')) as Files)[0], {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: 'backend answering /files',
    });
    expect(first.content).toBe('first');
    // The process was told the file's real place: under its pod root, at the mount path.
    expect(first.path).toMatch(/\/root\/etc\/creds\/token$/);
    expect(first.path.startsWith(runnerDir({ namespace: ns.name, name: 'reader' })!)).toBe(true);

    await apply(secret(ns.name, 'second'));
    const second = await eventually(
      async () => {
        const f = ((await getFromPod(ip, 8080, '/files')) as Files)[0];
        return f?.content === 'second' && f;
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'updated secret file' },
    );
    // Same path, same process: updated in place, not by a restart.
    expect(second.path).toBe(first.path);
    expect(podPids({ namespace: ns.name, name: 'reader' })).toHaveLength(1);
  });
});
