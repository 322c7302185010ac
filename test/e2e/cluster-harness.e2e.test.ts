/**
 * Bad input to the test-cluster harness fails fast with a message that says
 * what is wrong: an unknown image, a pod CIDR outside the namespace's local
 * range, a missing binary, no permission to create the network namespace,
 * and a start outside the private namespace.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startCluster } from '../cluster/cluster.ts';
import { REPO_ROOT } from '../cluster/images.ts';
import { apply, cluster, listPods, runnerDir } from './cluster-support.ts';
import { eventually, useNamespace } from './support.ts';

const ns = useNamespace('harness');

/** Runs a command, bounded to 20 s; resolves to its exit code and output. */
function sh(file: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr });
    });
  });
}

describe('the test-cluster harness', () => {
  it('leaves a pod of an unknown image to KWOK and says so', async () => {
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'stranger', namespace: ns.name, labels: { app: 'stranger' } },
      spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'c', image: 'nginx:1.27' }] },
    });
    await eventually(async () => (await listPods(ns.name, 'app=stranger'))[0]?.status.phase === 'Running', {
      timeoutMs: 30_000,
      what: 'KWOK runs the pod',
    });
    const log = await eventually(
      () => {
        const text = readFileSync(cluster().clusterLogs.podRunner, 'utf8');
        return text.includes(`${ns.name}/stranger`) && text;
      },
      { what: 'runner.log names the pod' },
    );
    expect(log).toMatch(
      new RegExp(
        `pod ${ns.name}/stranger: image nginx:1\\.27 unknown to the pod runner, left to KWOK \\(known: tether`,
      ),
    );
    expect(runnerDir({ namespace: ns.name, name: 'stranger' })).toBeUndefined();
  });

  it('refuses a node pod CIDR outside the local range, or not local, before starting anything', async () => {
    const t0 = Date.now();
    await expect(startCluster({ nodes: [{ name: 'far', podCIDR: '10.99.1.0/24' }] })).rejects.toThrow(
      /node far: pod CIDR 10\.99\.1\.0\/24 lies outside the namespace's local pod range 10\.244\.0\.0\/16/,
    );
    await expect(
      startCluster({ podRange: '10.99.0.0/16', nodes: [{ name: 'far', podCIDR: '10.99.1.0/24' }] }),
    ).rejects.toThrow(/pod address 10\.99\.1\.1 is not local in this network namespace/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('names a missing binary and how to build it', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'no-bin-'));
    try {
      await expect(startCluster({ binDir: empty })).rejects.toThrow(
        /kubeControllerManager binary missing: .*kube-controller-manager-v1\.\d+\.\d+ \(run test\/control-plane\/build\.sh or make tools\)/,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('says so when it may not create the network namespace', async () => {
    // A user namespace whose root has no capabilities and may create no
    // further user namespaces: neither `unshare -n` nor `unshare -rn` works.
    const script = join(REPO_ROOT, 'test', 'cluster', 'in-netns.sh');
    const r = await sh('unshare', [
      '-U',
      '-r',
      'sh',
      '-c',
      'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set=-all --inh-caps=-all -- "$0" true',
      script,
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      /no permission to create a network namespace \(unshare -n: .*Operation not permitted/,
    );
  });

  it('refuses to start in the host network namespace', async () => {
    const mod = join(REPO_ROOT, 'test', 'cluster', 'cluster.ts');
    const r = await sh('nsenter', [
      '-t',
      '1',
      '-n',
      process.execPath,
      '--input-type=module',
      '-e',
      `const { checkNetwork } = await import(${JSON.stringify(mod)}); await checkNetwork('10.244.0.0/16', []);`,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/must run in a private network namespace, not the host's/);
  });
});
