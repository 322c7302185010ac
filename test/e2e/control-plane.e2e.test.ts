// The control plane itself: the pinned versions are what the servers and
// clients report, and each test really gets its own namespace.
import { CoreV1Api, VersionApi } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { controlPlane, helm, kubeConfig, kubectl, useNamespace } from './support.ts';

describe('control plane', () => {
  const ns = useNamespace('cp');

  it('serves the pinned Kubernetes version', async () => {
    const cp = controlPlane();
    const v = await kubeConfig().makeApiClient(VersionApi).getCode();
    expect(v.gitVersion).toBe(cp.versions.kubernetes);
    expect(v.major).toBe('1');
    expect(`v1.${v.minor}`).toBe(cp.versions.kubernetes.split('.').slice(0, 2).join('.'));
  });

  it('has kubectl and helm of the pinned versions', async () => {
    const cp = controlPlane();
    const out = JSON.parse((await kubectl(cp, ['version', '--output=json'])).stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(out.clientVersion.gitVersion).toBe(cp.versions.kubernetes);
    expect(out.serverVersion.gitVersion).toBe(cp.versions.kubernetes);
    const h = (await helm(cp, ['version', '--template={{.Version}} {{.KubeClientVersion}}'])).stdout.trim();
    expect(h.split(' ')[0]).toBe(cp.versions.helm);
    // helm targets the Kubernetes minor of the client-go it was built with.
    expect(h.split(' ')[1]).toMatch(/^v1\.\d+$/);
  });

  it('is ready and listens on loopback only', async () => {
    const cp = controlPlane();
    expect(new URL(cp.server).hostname).toBe('127.0.0.1');
    expect(new URL(cp.etcdUrl).hostname).toBe('127.0.0.1');
    const { stdout } = await kubectl(cp, ['get', '--raw=/readyz']);
    expect(stdout.trim()).toBe('ok');
  });

  it('gives each test its own namespace', async () => {
    const got = await kubeConfig().makeApiClient(CoreV1Api).readNamespace({ name: ns.name });
    expect(got.metadata?.labels?.['tether.dev/e2e']).toBe('true');
    expect(ns.name).toMatch(/^cp-gives-each-test-its-own-name/);
  });
});
